#!/usr/bin/env python3
"""Checks that the docs stand on their own and that their examples are true (run by scripts/test.sh).

  python3 scripts/check-docs.py [--bin PATH]

1. Every ```json block in README.md, CONTRIBUTING.md and docs/**/*.md parses with Python's json
   module: one JSON text, or several separated by white space (one message a line). Elide nothing in
   such a block; a shape with elisions goes in a plain ``` block.
2. Every `$ pilegate decode ARGS` line in a code block is run with the built binary (--bin, else
   $PILEGATE_BIN, else .build/debug/pilegate or .build/release/pilegate); what it prints must be the
   lines that follow it in the block, up to the next `$ ` line or the end of the block. Without a
   binary this part is skipped with a note.
3. Every `PILEGATE_*` variable named in the docs (but the design brief) and scripts is a configuration key's environment
   name (GatewayConfiguration.settings in Sources/PileGate/Gateway/GatewayConfiguration.swift) or one of the
   few non-configuration variables listed below; every key in a table of docs/CONFIGURATION.md is a
   key. A key missing from docs/CONFIGURATION.md is reported as a warning.
4. No doc, source comment or script cites a file outside the repository (`/work/…`, `../shared/…`),
   and every relative Markdown link reaches a file of the repository.

Prints one line per problem (file:line: what) and exits 1 when there is any.
"""
import argparse, glob, json, os, re, shlex, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_SWIFT = "Sources/PileGate/Gateway/GatewayConfiguration.swift"

# PILEGATE_* names that are not configuration keys, and why they may appear.
NOT_SETTINGS = {
    "PILEGATE_API": "the admin CLI's default --api URL (Sources/PileGateCLI/Admin/AdminClient.swift)",
    "PILEGATE_CACERT": "the admin CLI's --cacert (Sources/PileGateCLI/Admin/AdminClient.swift); serve ignores it",
    "PILEGATE_CERT": "the admin CLI's --cert (Sources/PileGateCLI/Admin/AdminClient.swift); serve ignores it",
    "PILEGATE_KEY": "the admin CLI's --key (Sources/PileGateCLI/Admin/AdminClient.swift); serve ignores it",
    "PILEGATE_TOKEN": "the admin CLI's bearer token (Sources/PileGateCLI/Admin/AdminClient.swift); serve ignores it",
    "PILEGATE_WEBVIEW_OUT": "where OpsMetricsWebViewTests keeps its screenshot",
    "PILEGATE_BIN": "the binary this script runs",
    "PILEGATE_BENCH_LOCK": "the benchmark lock file (scripts/lib/lock.sh)",
    "PILEGATE_PILE_UTC_OFFSET_SECONDS": "docs/CONFIGURATION.md shows it as an example of a rejected name",
}

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.S | re.M)
PROBLEMS = []
WARNINGS = []


def problem(path, line, what):
    PROBLEMS.append(f"{path}:{line}: {what}")


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def doc_files():
    files = ["README.md", "CONTRIBUTING.md"] + sorted(glob.glob("docs/**/*.md", recursive=True))
    return [f for f in files if os.path.exists(os.path.join(ROOT, f))]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- 1. JSON blocks
def check_json_blocks(path, text):
    count = 0
    for m in FENCE.finditer(text):
        if m.group(1) != "json":
            continue
        count += 1
        body, start = m.group(2), line_of(text, m.start(2))
        decoder, i = json.JSONDecoder(), 0
        while True:
            while i < len(body) and body[i].isspace():
                i += 1
            if i >= len(body):
                break
            try:
                _, i = decoder.raw_decode(body, i)
            except json.JSONDecodeError as e:
                problem(path, start + body.count("\n", 0, e.pos), f"invalid JSON in a ```json block: {e.msg} (column {e.colno})")
                break
    return count


# ---------------------------------------------------------------- 2. pilegate decode examples
def find_binary(explicit):
    for candidate in (explicit, os.environ.get("PILEGATE_BIN"), ".build/debug/pilegate", ".build/release/pilegate"):
        if candidate and os.access(os.path.join(ROOT, candidate), os.X_OK):
            return os.path.join(ROOT, candidate)
    return None


def check_decode_examples(path, text, binary):
    ran = 0
    for m in FENCE.finditer(text):
        lines = m.group(2).split("\n")
        start = line_of(text, m.start(2))
        for i, line in enumerate(lines):
            if not line.startswith("$ pilegate decode"):
                continue
            expected = []
            for following in lines[i + 1:]:
                if following.startswith("$ "):
                    break
                expected.append(following)
            while expected and not expected[-1].strip():
                expected.pop()
            if binary is None:
                continue
            args = shlex.split(line[2:])[2:]
            run = subprocess.run([binary, "decode", *args], capture_output=True, text=True, timeout=30)
            got = run.stdout.rstrip("\n").split("\n") if run.stdout else []
            ran += 1
            if got != expected:
                problem(path, start + i, f"`{line[2:60]}…` prints\n    " + "\n    ".join(got) + "\n  not what the doc shows")
    return ran


# ---------------------------------------------------------------- 3. configuration keys
def settings():
    src = read(CONFIG_SWIFT)
    table = src[src.index("static let settings"):]
    table = table[:table.index("\n    ]\n")]
    # Groups of settings kept beside their feature (`GatewayConfiguration+Feature.swift`) join the table.
    for extra in sorted(glob.glob(os.path.join(ROOT, os.path.dirname(CONFIG_SWIFT), "GatewayConfiguration+*.swift"))):
        table += read(os.path.relpath(extra, ROOT))
    return re.findall(r'(?:string|int|double|bool)\("(\w+)"|Setting\(key: "(\w+)"', table)


def environment_name(key):
    """GatewayConfiguration.environmentName(for:): `pilePort` -> `PILEGATE_PILE_PORT`."""
    out, previous_lower = "PILEGATE_", False
    for c in key:
        if c.isupper() and previous_lower:
            out += "_"
        out += c.upper()
        previous_lower = c.islower() or c.isdigit()
    return out


def check_settings(files):
    keys = {a or b for a, b in settings()}
    names = {environment_name(k): k for k in keys}
    for path in files:
        text = read(path)
        for m in re.finditer(r"\bPILEGATE_[A-Z0-9_]*[A-Z0-9]\b", text):
            name = m.group(0)
            if name not in names and name not in NOT_SETTINGS:
                problem(path, line_of(text, m.start()), f"{name} is no setting of {CONFIG_SWIFT}")
    config_doc = "docs/CONFIGURATION.md"
    text = read(config_doc)
    documented = set()
    for m in re.finditer(r"^\|\s*`(\w+)`\s*\|", text, re.M):
        key = m.group(1)
        documented.add(key)
        if key not in keys and not key.startswith("PILEGATE_"):
            problem(config_doc, line_of(text, m.start()), f"`{key}` is no setting of {CONFIG_SWIFT}")
    for key in sorted(keys - documented):
        WARNINGS.append(f"{config_doc}: setting `{key}` is not in a table")
    return len(keys)


# ---------------------------------------------------------------- 4. citations outside the repo
OUTSIDE = re.compile(r"/work/[\w./-]*|\.\./shared[\w./-]*")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def check_citations():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout: every file below the root
        tracked = [os.path.relpath(os.path.join(d, n), ROOT) for d, _, ns in os.walk(ROOT) if "/." not in d for n in ns]
    tracked += [f for f in doc_files() if f not in tracked]
    for path in tracked:
        if not re.search(r"\.(md|swift|sh|py|json)$", path) or path == "scripts/check-docs.py":
            continue
        full = os.path.join(ROOT, path)
        if not os.path.exists(full):
            continue
        text = read(path)
        for m in OUTSIDE.finditer(text):
            problem(path, line_of(text, m.start()), f"cites a file outside the repository: '{m.group(0)}' (cite a copy in docs/)")
        if not path.endswith(".md"):
            continue
        for m in LINK.finditer(text):  # relative Markdown links must reach a file of the repository
            target = m.group(1).split("#", 1)[0]
            if not target or re.match(r"[a-z]+:", target):
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(full), target))
            if not resolved.startswith(ROOT + os.sep) or not os.path.exists(resolved):
                problem(path, line_of(text, m.start()), f"link to '{m.group(1)}', which is not a file of the repository")


def main():
    ap = argparse.ArgumentParser(description="Checks the docs' JSON, decode examples, settings and citations.")
    ap.add_argument("--bin", help="the pilegate binary for the decode examples")
    args = ap.parse_args()
    os.chdir(ROOT)
    files = doc_files()
    binary = find_binary(args.bin)
    blocks = sum(check_json_blocks(f, read(f)) for f in files)
    decodes = sum(check_decode_examples(f, read(f), binary) for f in files)
    scripts = sorted(glob.glob("scripts/**/*.sh", recursive=True))
    # docs/DESIGN.md is the brief as written (it names settings still to come); the rest must be true today.
    nkeys = check_settings([f for f in files if f != "docs/DESIGN.md"] + scripts)
    check_citations()
    for w in WARNINGS:
        print(f"check-docs: warning: {w}", file=sys.stderr)
    for p in PROBLEMS:
        print(f"check-docs: {p}", file=sys.stderr)
    note = f"{decodes} decode example(s) run" if binary else "decode examples skipped (no pilegate binary built)"
    print(f"check-docs: {len(files)} docs, {blocks} JSON blocks, {note}, {nkeys} settings; "
          f"{len(PROBLEMS)} problem(s)")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
