#!/usr/bin/env python3
"""Checks that the deployment files fit together and fit this build of pilegate.

Run by scripts/check-manifests.sh (with PyYAML from its tool virtualenv). Schema validity is
checked there; this checks what a schema cannot:

- every config file (Kubernetes ConfigMap source, systemd, Docker) and every PILEGATE_* variable
  a manifest sets is accepted by `pilegate serve --config FILE --print-config` of THIS build
  (a renamed or misspelled setting fails here, not in production at exit status 2);
- Kubernetes: terminationGracePeriodSeconds >= preStop sleep + drainWindow + margin, and so is
  the liveness probe's failure budget; readiness
  on /readyz and liveness on /healthz on the API port; the API listens beyond loopback so the
  kubelet reaches it; enableServiceLinks is off (the kubelet would inject PILEGATE_* variables
  for the Services); dataDirectory is on a volume (the root file system is read-only); Service
  target ports exist; a PodDisruptionBudget selects the pods;
- systemd: TimeoutStopSec >= drainWindow + margin, LimitNOFILE above maxConnections;
- Docker: STOPSIGNAL SIGTERM, the HEALTHCHECK's port and EXPOSE match the image's config.

Settings that are planned but not in this build (PLANNED) may appear only as optional secret
references, which Kubernetes leaves unset while the Secret lacks the key.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

# Seconds between the end of the drain window and the process exit: closing connections that
# never logged in (waits up to 2 s), the registry flush, the outbox's last commit, API stop.
MARGIN = 10
# Settings the deployment files already name but this build may not have yet (cluster mode).
PLANNED = {"PILEGATE_NATS_URL"}
# Optional secret variables that are alternatives (one kind of NATS credentials at most): each is
# checked with the other optional variables but without its alternatives.
ALTERNATIVES = [
    {"PILEGATE_NATS_TOKEN"},
    {"PILEGATE_NATS_USER", "PILEGATE_NATS_PASSWORD"},
    {"PILEGATE_NATS_CREDENTIALS"},
]

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def print_config(binary, config_file, env):
    """The effective settings as pilegate computes them, or None (and a problem) if refused."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    clean.update(env)
    result = subprocess.run(
        [binary, "serve", "--config", str(config_file), "--print-config"],
        env=clean, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return None, (result.stderr.strip() or f"exit status {result.returncode}")
    return json.loads(result.stdout), None


def load_yaml_documents(folder):
    docs = []
    for path in sorted(folder.glob("*.y*ml")):
        if path.name.startswith("kustomization."):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def seconds(value):
    """systemd time span (90, 90s, 1min 30s) to seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        if unit not in units:
            raise ValueError(f"unknown time unit {unit!r} in {value!r}")
        total += float(number) * units[unit]
    return total


def check_kubernetes(folder, binary):
    docs = load_yaml_documents(folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text()) \
        if (folder / "kustomization.yaml").exists() else {}
    generated = {g["name"]: g.get("files", []) for g in kustomization.get("configMapGenerator", [])}
    configmaps = {d["metadata"]["name"]: (p, d) for p, d in docs if d.get("kind") == "ConfigMap"}
    workloads = [(p, d) for p, d in docs if d.get("kind") in ("StatefulSet", "Deployment")]
    if not workloads:
        problem(folder, "no StatefulSet or Deployment")
    for path, workload in workloads:
        where = f"{path.name} {workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels", {})
        if spec.get("enableServiceLinks", True):
            problem(where, "enableServiceLinks must be false: the kubelet would inject PILEGATE_* "
                           "variables for Services named pilegate-*, and pilegate refuses unknown ones")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        container_ports = {}
        for container in spec["containers"]:
            cwhere = f"{where} container {container['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            container_ports.update({k: v for k, v in ports.items() if k})
            args = list(container.get("command", [])) + list(container.get("args", []))
            if "--config" not in args:
                problem(cwhere, "no --config FILE argument")
                continue
            config_path = args[args.index("--config") + 1]
            mounts = container.get("volumeMounts", [])
            # The config file: a mounted ConfigMap, from the generator's file or a ConfigMap manifest.
            source = None
            for mount in mounts:
                if os.path.dirname(config_path) == mount["mountPath"].rstrip("/"):
                    volume = volumes.get(mount["name"], {})
                    cm = volume.get("configMap", {}).get("name")
                    name = os.path.basename(config_path)
                    if cm in generated:
                        for f in generated[cm]:
                            key, _, file = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
                            if key == name:
                                source = folder / file
                    elif cm in configmaps:
                        text = configmaps[cm][1].get("data", {}).get(name)
                        if text is not None:
                            source = Path(os.environ.get("TMPDIR", "/tmp")) / f"pilegate-check-{cm}.json"
                            source.write_text(text)
            if source is None or not source.exists():
                problem(cwhere, f"{config_path} is not a mounted ConfigMap key this folder defines")
                continue
            env, optional = {}, {}
            for var in container.get("env", []):
                name = var["name"]
                if not name.startswith("PILEGATE_"):
                    continue
                if "value" in var:
                    env[name] = var["value"]
                elif "fieldRef" in var.get("valueFrom", {}):
                    env[name] = workload["metadata"]["name"] + "-0"
                elif "secretKeyRef" in var.get("valueFrom", {}) and var["valueFrom"]["secretKeyRef"].get("optional"):
                    optional[name] = "placeholder"
                else:
                    env[name] = "placeholder"
            config, error = print_config(binary, source, env)
            if config is None:
                problem(cwhere, f"pilegate refuses {source.name} with the pod's variables: {error}")
                continue
            present = [g for g in ALTERNATIVES if g & optional.keys()]
            variants = [{n: v for n, v in optional.items() if not any(n in o for o in present if o is not g)}
                        for g in present] or [optional]
            for variant in (variants if optional else []):
                _, error = print_config(binary, source, {**env, **variant})
                if error:
                    unknown = [n for n in optional if f"'{n}'" in error and "unknown setting" in error]
                    if unknown and set(unknown) <= PLANNED:
                        print(f"check-deploy-consistency: note: {', '.join(unknown)} is not a setting of this "
                              f"build yet (planned); the pod starts because the Secret key is optional and absent")
                    else:
                        problem(cwhere, f"pilegate refuses the optional secret variables: {error}")
            drain = float(config["drainWindow"])
            # Probes on the API port, which must listen beyond loopback for the kubelet.
            if config["apiHost"] in ("127.0.0.1", "localhost", "::1"):
                problem(cwhere, f"apiHost {config['apiHost']} is loopback: probes and Services cannot reach it")
            elif not config.get("apiInsecure") and not config.get("apiClientCA"):
                problem(cwhere, "the API on a non-loopback address needs apiInsecure: true or apiClientCA, "
                                "else a fresh pod (no token yet) refuses to start")
            for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = container.get(probe, {}).get("httpGet")
                if not get or get.get("path") != path_:
                    problem(cwhere, f"{probe} must be an httpGet of {path_}")
                    continue
                port = ports.get(get["port"], get["port"])
                if port != config["apiPort"]:
                    problem(cwhere, f"{probe} port {get['port']} is not apiPort {config['apiPort']}")
            if ports.get("piles") != config["pilePort"]:
                problem(cwhere, f"container port 'piles' {ports.get('piles')} is not pilePort {config['pilePort']}")
            if ports.get("api") != config["apiPort"]:
                problem(cwhere, f"container port 'api' {ports.get('api')} is not apiPort {config['apiPort']}")
            # Drain: preStop sleep, then SIGTERM and drainWindow, then the final flush.
            pre_stop = container.get("lifecycle", {}).get("preStop", {})
            sleep = 0.0
            if "sleep" in pre_stop:
                sleep = float(pre_stop["sleep"]["seconds"])
            elif "exec" in pre_stop:
                command = pre_stop["exec"]["command"]
                if command[:1] == ["sleep"] and len(command) == 2:
                    sleep = float(command[1])
                else:
                    problem(cwhere, f"preStop {command} is not a plain sleep; cannot check the grace period")
            else:
                problem(cwhere, "no preStop: the load balancer would still send piles while the drain starts")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < sleep + drain + MARGIN:
                problem(where, f"terminationGracePeriodSeconds {grace} < preStop {sleep:g} + drainWindow "
                               f"{drain:g} + {MARGIN}: the kubelet would SIGKILL the drain")
            # Liveness must not kill a drain: its failure budget covers drainWindow + margin.
            live = container.get("livenessProbe", {})
            budget = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
            if live and budget < drain + MARGIN:
                problem(cwhere, f"livenessProbe periodSeconds x failureThreshold = {budget}s < drainWindow "
                                f"{drain:g} + {MARGIN}: a drain whose probes fail would be killed half-way")
            # Read-only root: the data directory must be a volume.
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem"):
                problem(cwhere, "readOnlyRootFilesystem should be true")
            if security.get("allowPrivilegeEscalation", True):
                problem(cwhere, "allowPrivilegeEscalation should be false")
            data = config["dataDirectory"].rstrip("/")
            mount = next((m for m in mounts if data == m["mountPath"].rstrip("/")
                          or data.startswith(m["mountPath"].rstrip("/") + "/")), None)
            if mount is None:
                problem(cwhere, f"dataDirectory {data} is not on a volume (the root file system is read-only)")
            elif workload["kind"] == "StatefulSet" and mount["name"] not in templates:
                problem(cwhere, f"dataDirectory {data} is on volume {mount['name']}, not a volumeClaimTemplate: "
                                "the outbox would not survive the pod")
            print(f"check-deploy-consistency: {cwhere}: config and variables accepted; grace {grace}s >= "
                  f"preStop {sleep:g}s + drainWindow {drain:g}s + {MARGIN}s")
        if not (spec.get("securityContext", {}).get("runAsNonRoot")):
            problem(where, "securityContext.runAsNonRoot should be true")
        # Services and the disruption budget must find these pods and ports.
        for spath, service in ((p, d) for p, d in docs if d.get("kind") == "Service"):
            selector = service["spec"].get("selector", {})
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                problem(f"{spath.name} Service/{service['metadata']['name']}", "selector does not match the pods")
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if target not in container_ports and target not in container_ports.values():
                    problem(f"{spath.name} Service/{service['metadata']['name']}", f"targetPort {target} is no container port")
        pdbs = [d for _, d in docs if d.get("kind") == "PodDisruptionBudget"
                and all(labels.get(k) == v for k, v in d["spec"]["selector"].get("matchLabels", {}).items())]
        if not pdbs:
            problem(where, "no PodDisruptionBudget selects these pods")


def check_systemd(folder, binary):
    for unit in sorted(folder.glob("*.service")):
        keys = {}
        for line in unit.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                key, _, value = line.partition("=")
                keys.setdefault(key.strip(), []).append(value.strip())
        exec_start = shlex.split(keys.get("ExecStart", [""])[-1])
        if "--config" not in exec_start:
            problem(unit.name, "ExecStart has no --config FILE")
            continue
        source = folder / os.path.basename(exec_start[exec_start.index("--config") + 1])
        if not source.exists():
            problem(unit.name, f"no {source.name} beside the unit for its --config")
            continue
        config, error = print_config(binary, source, {})
        if config is None:
            problem(unit.name, f"pilegate refuses {source.name}: {error}")
            continue
        drain = float(config["drainWindow"])
        stop = seconds(keys.get("TimeoutStopSec", ["90"])[-1])
        if stop < drain + MARGIN:
            problem(unit.name, f"TimeoutStopSec {stop:g} < drainWindow {drain:g} + {MARGIN}: systemd would SIGKILL the drain")
        if keys.get("KillSignal", ["SIGTERM"])[-1] not in ("SIGTERM", "SIGINT"):
            problem(unit.name, "KillSignal must be SIGTERM or SIGINT (the signals that drain)")
        nofile = keys.get("LimitNOFILE", [""])[-1].split(":")[-1]
        if not nofile.isdigit() or int(nofile) <= int(config["maxConnections"]):
            problem(unit.name, f"LimitNOFILE {nofile or 'unset'} must exceed maxConnections {config['maxConnections']}")
        print(f"check-deploy-consistency: {unit.name}: {source.name} accepted; TimeoutStopSec {stop:g}s >= "
              f"drainWindow {drain:g}s + {MARGIN}s; LimitNOFILE {nofile} > maxConnections {config['maxConnections']}")


def check_docker(dockerfile, binary):
    if not dockerfile.exists():
        return
    text = dockerfile.read_text()
    copied = re.search(r"^COPY\s+(\S+)\s+(/etc/pilegate/\S+)\s*$", text, re.M)
    if not copied:
        problem(dockerfile.name, "does not COPY a config file to /etc/pilegate/")
        return
    source = Path(copied.group(1))
    if not source.is_absolute():
        source = dockerfile.parent / source
    config, error = print_config(binary, source, {})
    if config is None:
        problem(dockerfile.name, f"pilegate refuses {copied.group(1)}: {error}")
        return
    if not re.search(r"^STOPSIGNAL\s+SIGTERM\s*$", text, re.M):
        problem(dockerfile.name, "STOPSIGNAL SIGTERM missing")
    if config["apiHost"] in ("127.0.0.1", "localhost", "::1"):
        problem(dockerfile.name, "the image's apiHost is loopback: -p cannot publish the API")
    elif not config.get("apiInsecure") and not config.get("apiClientCA"):
        problem(dockerfile.name, "the image's API is not on loopback: it needs apiInsecure: true or apiClientCA, "
                                 "else a fresh container (no token yet) refuses to start")
    health = re.search(r"/dev/tcp/127\.0\.0\.1/\$\{PILEGATE_API_PORT:-(\d+)\}", text)
    if not health or int(health.group(1)) != config["apiPort"]:
        problem(dockerfile.name, f"HEALTHCHECK does not probe apiPort {config['apiPort']}")
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.*)$", text, re.M) for p in re.findall(r"(\d+)", line)}
    for key in ("pilePort", "apiPort"):
        if config[key] not in exposed:
            problem(dockerfile.name, f"EXPOSE lacks {key} {config[key]}")
    print(f"check-deploy-consistency: Dockerfile: {copied.group(1)} accepted; STOPSIGNAL, HEALTHCHECK and EXPOSE match")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--deploy", default="deploy")
    parser.add_argument("--dockerfile", default="Dockerfile")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    deploy = Path(args.deploy)
    check_kubernetes(deploy / "kubernetes", binary)
    if (deploy / "systemd").is_dir():
        check_systemd(deploy / "systemd", binary)
    check_docker(Path(args.dockerfile), binary)
    for p in problems:
        print(f"check-deploy-consistency: FAIL: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
