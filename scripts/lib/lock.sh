# One benchmark at a time. Part of scripts/lib/harness.sh.
#
# The machine is shared by several engineers and has two cores: two load runs at once make both
# sets of figures worthless. bench_lock takes an exclusive flock on one file for the whole run
# (children inherit it, so a gateway that outlives a killed script still holds it until its
# `timeout` ends it), and then waits for pilegate load processes that hold no lock (started by
# hand or by an older copy of these scripts).

HARNESS_LOCK_FILE=${PILEGATE_BENCH_LOCK:-/tmp/pilegate-bench.lock}

# bench_lock SECONDS: waits up to SECONDS for the lock (dies when it stays taken), then up to what
# is left of SECONDS for unlocked pilegate runs; proceeds after that and names them in OTHERS.
bench_lock() {
    local limit=${1:-600} start=$SECONDS
    exec {HARNESS_LOCK_FD}>>"$HARNESS_LOCK_FILE"
    if ! flock -n "$HARNESS_LOCK_FD"; then
        log "waiting (at most $limit s) for another benchmark: $(cat "$HARNESS_LOCK_FILE.holder" 2>/dev/null || echo unknown)"
        flock -w "$limit" "$HARNESS_LOCK_FD" || die "another benchmark still holds $HARNESS_LOCK_FILE after $limit s"
    fi
    echo "$HARNESS_NAME (pid $$, $(whoami), $PWD) since $(date +%T)" >"$HARNESS_LOCK_FILE.holder" 2>/dev/null || true
    while [ -n "$(unlocked_runs)" ] && [ $((SECONDS - start)) -lt "$limit" ]; do
        log "waiting for pilegate runs outside the lock: $(unlocked_runs | cut -c1-120 | head -n 3 | tr '\n' ';')"
        sleep 10
    done
    OTHERS=$(unlocked_runs | cut -c1-160 | tr '\n' ';')
    [ -z "$OTHERS" ] || log "proceeding while these run: $OTHERS"
}

# unlocked_runs: pilegate load processes outside this script's process group, one per line.
unlocked_runs() {
    local group
    group=$(ps -o pgid= -p $$ | tr -d ' ')
    ps -eo pid=,pgid=,args= | awk -v g="$group" \
        '$2 != g && /(load-test|bench-hub|bench-bills|chaos-outbox)\.sh|pilegate (serve|simulate|tail)/ { $2 = ""; print }'
}
