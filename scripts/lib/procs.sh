# Starting, tracking and stopping processes. Part of scripts/lib/harness.sh.
#
# Every process a script starts through spawn/spawn_bounded (or hands to track) is stopped by the
# EXIT trap: TERM, a grace period, then KILL for it and its children (the program a `timeout`
# wrapper runs). Only processes that are still this shell's children are signalled, so a pid that
# ended and was reused by someone else's process is never touched.

HARNESS_PIDS=()        # tracked processes, stopped on exit
HARNESS_EXIT_HOOKS=()  # functions run on exit, after the processes are stopped
HARNESS_TEMP=()        # paths removed on exit
HARNESS_STOP_GRACE=${HARNESS_STOP_GRACE:-15}

track() { HARNESS_PIDS+=("$@"); }
on_exit() { HARNESS_EXIT_HOOKS+=("$1"); }
remove_on_exit() { HARNESS_TEMP+=("$@"); }

# forget PID...: no longer tracked (a process that ended and was waited for).
forget() {
    local keep=() p f
    for p in "${HARNESS_PIDS[@]}"; do
        for f in "$@"; do [ "$p" = "$f" ] && continue 2; done
        keep+=("$p")
    done
    HARNESS_PIDS=("${keep[@]}")
}

# spawn LOG CMD...: runs CMD in the background with stdout and stderr to LOG (append with
# HARNESS_APPEND=1), tracked; its pid is in SPAWNED. Environment assignments before `spawn`
# reach CMD.
spawn() {
    local out=$1
    shift
    if [ "${HARNESS_APPEND:-0}" = 1 ]; then "$@" >>"$out" 2>&1 & else "$@" >"$out" 2>&1 & fi
    SPAWNED=$!
    track "$SPAWNED"
}

# spawn_bounded SECONDS LOG CMD...: as spawn, under `timeout` so CMD dies by itself after SECONDS
# even if this script is killed with -9. SPAWNED is the wrapper; child_pid SPAWNED is CMD.
spawn_bounded() {
    local bound=$1
    shift
    spawn "$1" timeout -s TERM -k 10 "$bound" "${@:2}"
}

# child_pid WRAPPER: the process a `timeout` wrapper runs (empty when none).
child_pid() { [ -n "${1:-}" ] && pgrep -P "$1" 2>/dev/null | head -n1 || true; }

# is_child PID: true while PID is a child of this shell (running, or ended and not yet waited for).
is_child() { [ -r "/proc/$1/stat" ] && [ "$(awk '{sub(/^.*\) /, ""); print $2}' "/proc/$1/stat" 2>/dev/null)" = "$$" ]; }

# stop_processes PID...: TERM to each (a `timeout` wrapper forwards it), up to HARNESS_STOP_GRACE s
# for them to end, then KILL for each and its children; waits for them and forgets them.
stop_processes() {
    local pids=() pid deadline=$((SECONDS + HARNESS_STOP_GRACE))
    for pid in "$@"; do is_child "$pid" && pids+=("$pid"); done
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for pid in "${pids[@]}"; do
            while kill -0 "$pid" 2>/dev/null && is_child "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
            if is_child "$pid"; then
                pkill -KILL -P "$pid" 2>/dev/null || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    fi
    [ $# -eq 0 ] || forget "$@"
}
