# Logging and argument errors. Part of scripts/lib/harness.sh.

HARNESS_NAME=${HARNESS_NAME:-script}
# Where log lines go: 1 (stdout, the default) or 2 (stderr, for scripts whose stdout is a report).
HARNESS_LOG_FD=${HARNESS_LOG_FD:-1}

# log MESSAGE...: one line "[name HH:MM:SS] message".
log() { printf '[%s %s] %s\n' "$HARNESS_NAME" "$(date +%T)" "$*" >&"$HARNESS_LOG_FD"; }

# die MESSAGE...: "name: message" on stderr, exit 1 (the EXIT trap still cleans up).
die() {
    echo "$HARNESS_NAME: $*" >&2
    exit 1
}

# usage_error MESSAGE...: as die, with exit status 2 (bad arguments).
usage_error() {
    echo "$HARNESS_NAME: $*" >&2
    exit 2
}

# require_whole_number FLAG VALUE: usage_error unless VALUE is a whole number.
require_whole_number() {
    [[ $2 =~ ^[0-9]+$ ]] || usage_error "$1 must be a whole number (got '$2')"
}
