# Ports and HTTP readiness. Part of scripts/lib/harness.sh.

# require_free_ports PORT...: dies when something already listens on 127.0.0.1:PORT.
require_free_ports() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is already in use"; fi
    done
}

# wait_http URL SECONDS [PID LOG]: polls URL every 0.1 s until it answers 2xx; dies after SECONDS,
# or as soon as PID (the server, or its `timeout` wrapper) has exited, showing the end of LOG.
# WAITED_MS is how long it took.
wait_http() {
    local url=$1 limit=$2 pid=${3:-} logf=${4:-} i
    for ((i = 0; i < limit * 10; i++)); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            WAITED_MS=$((i * 100))
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            [ -z "$logf" ] || tail -n 20 "$logf" >&2
            die "the server exited before $url answered"
        fi
        sleep 0.1
    done
    [ -z "$logf" ] || tail -n 20 "$logf" >&2
    die "$url did not answer in $limit s"
}
