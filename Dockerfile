# syntax=docker/dockerfile:1
#
# pilegate container image: the release binary with the Swift runtime linked in statically, on a
# slim Debian with only the system libraries that binary loads (docs/DEPLOYMENT.md, "Docker").
#
#   docker build -t pilegate .
#   docker run -d --name pilegate --stop-timeout 30 --ulimit nofile=1048576:1048576 \
#       -p 8767:8767 -p 127.0.0.1:8780:8780 -v pilegate-data:/var/lib/pilegate pilegate
#
# `docker stop` waits only 10 s by default before SIGKILL; the drain takes drainWindow (10 s in
# deploy/docker/pilegate.json) plus a final flush, hence --stop-timeout.

# The toolchain this repository is built and tested with is Swift 6.3; override with
# --build-arg SWIFT_IMAGE=... for another 6.x image on Debian bookworm (the runtime stage is bookworm too).
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build -------------------------------------------------------------------------------------
FROM ${SWIFT_IMAGE} AS build
# Headers and link libraries: SQLite (GRDB), OpenSSL libcrypto (Sources/CLibCrypto, found with
# pkg-config), libcurl (the static Foundation's URLSession). Versions are not pinned (hadolint
# DL3008): the bookworm base image fixes the release, and pinned versions disappear from the
# archive with security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsqlite3-dev libssl-dev libcurl4-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Manifest first: the dependency checkout is cached until Package.swift changes.
COPY Package.swift ./
RUN swift package resolve
COPY . .
# --static-swift-stdlib: the Swift runtime and Foundation go into the binary, so the runtime
# stage needs no toolchain.
# Debug sections are dropped (166 -> 109 MB), symbols kept for crash backtraces.
RUN swift build -c release --static-swift-stdlib --product pilegate \
    && install -D -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/pilegate" /out/pilegate \
    && strip --strip-debug /out/pilegate

# ---- runtime -----------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# The packages of the libraries the binary loads directly (readelf NEEDED): SQLite (GRDB),
# libcurl (Foundation's URLSession, used by the CLI's admin verbs), OpenSSL libcrypto (3DES frame
# encryption), the C++ runtime; apt brings their dependencies. Nothing else: the Swift runtime is
# inside the binary. scripts/check-runtime-libs.sh checks this list against `ldd` of a real
# build (docs/DEPLOYMENT.md). Not pinned, as above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsqlite3-0 libcurl4 libssl3 libstdc++6 libgcc-s1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pilegate \
    && useradd --system --uid 10001 --gid pilegate --home-dir /var/lib/pilegate --no-create-home \
        --shell /usr/sbin/nologin pilegate \
    && install -d -o pilegate -g pilegate -m 0750 /var/lib/pilegate

COPY --from=build /out/pilegate /usr/local/bin/pilegate
# API on all interfaces inside the container (publish it to loopback or a private network only),
# data on the volume. Mount your own file over it, or set PILEGATE_* variables (they win).
COPY deploy/docker/pilegate.json /etc/pilegate/pilegate.json

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/pilegate
VOLUME ["/var/lib/pilegate"]
# 8767: piles (TCP, YKC). 8780: admin/backend API (HTTP, WebSocket, /metrics).
EXPOSE 8767/tcp 8780/tcp

# pilegate drains on SIGTERM (stop accepting, close piles over drainWindow, flush) and exits 0.
STOPSIGNAL SIGTERM
# Liveness from /healthz, with bash's /dev/tcp (no curl in the image). /readyz is for load
# balancers: it turns 503 as soon as a drain starts.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PILEGATE_API_PORT:-8780} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200'"]

ENTRYPOINT ["/usr/local/bin/pilegate"]
CMD ["serve", "--config", "/etc/pilegate/pilegate.json"]
