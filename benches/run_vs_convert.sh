#!/usr/bin/env bash
# The transactional path against the plain converter: `sluice run` (file source → channel →
# sink workers → Parquet zstd on file://, checkpoints) vs `sluice convert` on the same input,
# and peak RSS of `run` at 1M and 10M rows. Prints a Markdown table.
#
# usage: benches/run_vs_convert.sh [RUNS (default 3)]
# Uses the 1M-event file of benches/compare.sh (generated if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench"
mkdir -p "$WORK"
INPUT="$WORK/events-1000000.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py 1000000 "$INPUT" >&2
BIG="$WORK/events-10m.jsonl"
[ -s "$BIG" ] || for _ in $(seq 10); do cat "$INPUT"; done >"$BIG"
cargo build --profile dist --features isal --quiet >&2
SLUICE="$CARGO_TARGET_DIR/dist/sluice"

job() { # job FILE INPUT OUT
  cat >"$1" <<TOML
[job]
name = "bench"
state_dir = "$WORK/run-state"
[source]
kind = "file"
paths = ["$2"]
[repo]
schema = "$PWD/schemas/nginx_access.toml"
[channel]
max_bytes = "64MiB"
[sink]
url = "$3"
workers = 2
[sink.rotation]
max_rows = 1000000
max_bytes = "1GiB"
TOML
}

best() { # best CMD... → "seconds rss_kb"
  local b="" rss=0
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/run-out" "$WORK/run-state" "$WORK/conv-out"
    local t0 t1 s kb
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/run.err" || { cat "$WORK/run.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    s=$(echo "$t1 - $t0" | bc -l)
    kb=$(tail -1 "$WORK/rss")
    if [ -z "$b" ] || [ "$(echo "$s < $b" | bc -l)" = 1 ]; then b=$s; fi
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  echo "$b $rss"
}

job "$WORK/job-1m.toml" "$INPUT" "$WORK/run-out/"
job "$WORK/job-10m.toml" "$BIG" "$WORK/run-out/"
read -r c_t c_rss <<<"$(best "$SLUICE" convert --quiet --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/conv-out/")"
read -r r_t r_rss <<<"$(best "$SLUICE" run "$WORK/job-1m.toml")"
RUNS=1
read -r b_t b_rss <<<"$(best "$SLUICE" run "$WORK/job-10m.toml")"
echo "| command | rows | wall s | peak RSS MiB | time vs convert |"
echo "|---|---|---|---|---|"
printf "| convert | 1M | %.2f | %.0f | 1.00× |\n" "$c_t" "$(echo "$c_rss/1024" | bc -l)"
printf "| run (file source, 2 workers, checkpoints) | 1M | %.2f | %.0f | %.2f× |\n" "$r_t" "$(echo "$r_rss/1024" | bc -l)" "$(echo "$r_t/$c_t" | bc -l)"
printf "| run | 10M | %.2f | %.0f | — |\n" "$b_t" "$(echo "$b_rss/1024" | bc -l)"
