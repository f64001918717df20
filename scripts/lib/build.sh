# The release build. Part of scripts/lib/harness.sh.

# release_build: unless BUILD=0 (--no-build, or --bin given), builds the release `pilegate`
# (SwiftPM waits for other SwiftPM runs on this checkout). Sets BIN (default .build/release/pilegate)
# and dies when it is not an executable.
release_build() {
    if [ "${BUILD:-1}" = 1 ]; then
        log "building release (swift build -c release --product pilegate; waits for other SwiftPM runs)"
        swift build -c release --product pilegate 2>&1 | tail -n 3 >&"$HARNESS_LOG_FD"
    fi
    BIN=${BIN:-$ROOT/.build/release/pilegate}
    [ -x "$BIN" ] || die "$BIN missing"
}
