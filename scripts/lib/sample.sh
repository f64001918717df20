# CPU and memory samples, machine facts. Part of scripts/lib/harness.sh.

# cpu_seconds PID...: user + system CPU seconds of the live PIDs, summed (/proc/PID/stat fields
# 14 and 15, in clock ticks); 0.00 when none is alive.
cpu_seconds() {
    local total=0 pid hz
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        total=$(awk -v t="$total" -v hz="$hz" '{sub(/^.*\) /, ""); printf "%.2f", t + ($12 + $13) / hz}' "/proc/$pid/stat" 2>/dev/null || echo "$total")
    done
    printf '%.2f\n' "$total"
}

# rss_bytes PID: resident set size in bytes (/proc/PID/statm, resident pages x page size); 0 when gone.
rss_bytes() {
    local pages
    pages=$(awk '{print $2}' "/proc/$1/statm" 2>/dev/null || echo 0)
    echo $((${pages:-0} * $(getconf PAGESIZE)))
}

# machine_info: sets CPU_MODEL, CORES, MEM, DATE (UTC) and GIT (short commit, noting uncommitted
# changes in Sources or Package.swift) for a report header.
machine_info() {
    CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
    CORES=$(nproc)
    MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
    DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
    GIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain --untracked-files=no -- Sources Package.swift 2>/dev/null)" ]; then
        GIT="$GIT + uncommitted changes in Sources"
    fi
}
