#!/usr/bin/env bash
# Builds the YKC libFuzzer target (nested package Fuzz/) and runs it for SECONDS seconds on one core.
#
#   scripts/fuzz.sh SECONDS [extra libFuzzer flags]    e.g. scripts/fuzz.sh 1800
#   scripts/fuzz.sh --seeds                            only (re)write Fuzz/seeds from the vectors file
#
# Corpus: Fuzz/corpus (gitignored, grows), past crashes: Fuzz/regressions (committed, replayed first), read-only seeds: Fuzz/seeds (committed, generated from
# $YKC_VECTORS, default Tests/YKCTests/Fixtures/vectors.tsv, a copy of the research vectors). Crashes go to Fuzz/artifacts/. Log: Fuzz/artifacts/last-run.log.
set -euo pipefail
source "$(dirname "$0")/lib/harness.sh"
harness_init fuzz

VECTORS="${YKC_VECTORS:-Tests/YKCTests/Fixtures/vectors.tsv}"

write_seeds() {
    # Each vector frame becomes two seeds: the raw stream (mode byte 0x00 + frame bytes) and a
    # synthesized record (mode byte 0x01 + flags, seq, code, n, body) that the harness re-frames with a valid CRC.
    # Plus a few multi-frame streams: coalesced frames, garbage in front, a frame cut short.
    python3 - "$VECTORS" Fuzz/seeds <<'PY'
import hashlib, os, sys
vectors, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
frames = []
for line in open(vectors, encoding="utf-8"):
    if line.startswith("#") or line.startswith("source_tag"):
        continue
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 10:
        continue
    try:
        b = bytes.fromhex(cols[9])
    except ValueError:
        continue
    if len(b) >= 8 and b[0] == 0x68:
        frames.append(b)
seeds = []
for f in frames:
    seeds.append(b"\x00" + f)
    seq1, seq2, enc, code, body = f[2], f[3], f[4], f[5], f[6:-2]
    seeds.append(b"\x01" + bytes([0, seq1, seq2, code, min(len(body), 251)]) + body[:251])
if frames:
    seeds.append(b"\x00" + b"".join(frames[:8]))
    seeds.append(b"\x00" + b"\x00\x68\x02\xff" + frames[0] + frames[-1][:-3])
    seeds.append(b"\x01" + b"".join(bytes([i & 1, 0, i, f[5], len(f) - 8]) + f[6:-2] for i, f in enumerate(frames[:6])))
for s in seeds:
    name = hashlib.sha1(s).hexdigest()
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(s)
print(f"fuzz: {len(seeds)} seeds from {len(frames)} vector frames in {out}", file=sys.stderr)
PY
}

if [ "${1:-}" = "--seeds" ]; then
    write_seeds
    exit 0
fi

SECONDS_TO_RUN="${1:?usage: scripts/fuzz.sh SECONDS [libFuzzer flags]}"
shift

if [ -f "$VECTORS" ]; then write_seeds; fi
mkdir -p Fuzz/corpus Fuzz/seeds Fuzz/artifacts

swift build -c release --package-path Fuzz -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -v '^\[' \
    | grep -v "Cannot export local symbol '__asan_extra_spill_area'" || true
BIN=Fuzz/.build/release/YKCFuzz
[ -x "$BIN" ] || die "build failed"

# Let libFuzzer and ASan report crashes; Swift's own backtracer would race them for the signal.
export SWIFT_BACKTRACE=enable=no

# Regression inputs (past crashes) must pass before fuzzing.
if ls Fuzz/regressions/* >/dev/null 2>&1; then
    "$BIN" Fuzz/regressions/* >Fuzz/artifacts/regressions.log 2>&1 \
        || { echo "fuzz: a regression input fails, see Fuzz/artifacts/regressions.log" >&2; tail -20 Fuzz/artifacts/regressions.log >&2; exit 1; }
    echo "fuzz: $(ls Fuzz/regressions | wc -l) regression input(s) pass" >&2
fi

LOG=Fuzz/artifacts/last-run.log
echo "fuzz: $BIN -max_total_time=$SECONDS_TO_RUN -max_len=1024 -print_final_stats=1 $* Fuzz/corpus Fuzz/seeds" >&2
set +e
"$BIN" -max_total_time="$SECONDS_TO_RUN" -max_len=1024 -print_final_stats=1 -timeout=10 \
    -artifact_prefix=Fuzz/artifacts/ "$@" Fuzz/corpus Fuzz/seeds >"$LOG" 2>&1
rc=$?
set -e
echo "---- last status lines ----"
grep -E '^#[0-9]+' "$LOG" | tail -3
echo "---- final stats ----"
grep -E '^(stat::|Done|INFO: -max_total_time)' "$LOG" || true
if grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|Fatal error|YKC fuzz' "$LOG"; then
    echo "---- failure ----"
    grep -E -A12 'ERROR: (libFuzzer|AddressSanitizer)|Fatal error|YKC fuzz' "$LOG" | head -60
    ls -la Fuzz/artifacts/ | grep -E 'crash-|leak-|timeout-|oom-' || true
fi
echo "corpus: $(ls Fuzz/corpus | wc -l) inputs; exit code $rc; log $LOG"
exit $rc
