# The shared harness of pilegate's benchmark and load scripts (bash; sourced, not run).
#
#   source "$(dirname "$0")/lib/harness.sh"
#   harness_init load-test     # name for log lines and errors; cd to the repo root; EXIT/INT/TERM traps
#
# After harness_init a script has, from the files beside this one:
#   log.sh     log, die, usage_error, require_whole_number
#   procs.sh   spawn (tracked background process), spawn_bounded (under `timeout`), track, forget,
#              stop_processes, child_pid, on_exit, remove_on_exit — everything tracked is stopped on exit
#   net.sh     require_free_ports, wait_http
#   lock.sh    bench_lock: one benchmark at a time on this shared machine (flock), and waiting for
#              pilegate runs that hold no lock
#   build.sh   release_build: the release `pilegate` (unless --no-build / --bin), sets BIN
#   sample.sh  cpu_seconds and rss_bytes from /proc/PID, machine_info (CPU, cores, memory, date, git)
# Each script keeps only its own flags, phases and report.

HARNESS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HARNESS_LIB/../.." && pwd)

# shellcheck source=/dev/null
for part in log procs net lock build sample; do source "$HARNESS_LIB/$part.sh"; done
unset part

# harness_init NAME [--stay]: names the script in log lines, moves to the repository root (unless
# --stay), puts the toolchain on PATH when it is missing, and installs the cleanup trap.
harness_init() {
    HARNESS_NAME=$1
    [ "${2:-}" = --stay ] || cd "$ROOT"
    # The toolchain lives in /opt/swift on the project's machines; use it when PATH lacks swift.
    command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
    trap harness_cleanup EXIT
    trap 'exit 130' INT TERM
}

# The EXIT trap: stops every tracked process, runs the on_exit hooks (HARNESS_RC holds the exit
# status), removes the remove_on_exit paths, and exits with the status the script had.
harness_cleanup() {
    HARNESS_RC=$?
    trap - EXIT INT TERM
    stop_processes "${HARNESS_PIDS[@]}"
    local hook
    for hook in "${HARNESS_EXIT_HOOKS[@]}"; do "$hook" || true; done
    [ ${#HARNESS_TEMP[@]} -eq 0 ] || rm -rf "${HARNESS_TEMP[@]}"
    exit "$HARNESS_RC"
}
