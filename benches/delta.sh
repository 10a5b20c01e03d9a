#!/usr/bin/env bash
# Delta tables, in one run on one broker: `sluice backfill` into plain Parquet files and into a
# Delta table (`[sink] table = "delta"`), alternated RUNS times (the ratio of the medians is what
# the table costs), then `sluice compact` of a table of about 1,000 small files against
# `sluice convert` of the same rows into one Parquet file. kafka-delta-ingest is not built
# here: its rate on this machine class (31k rows/s, 46 CPU-s per 1M events, measured earlier on
# the same broker) is the reference. Prints Markdown.
#
# usage: benches/delta.sh [ROWS (default 1000000)] [PARTITIONS (default 128)] [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
PARTS="${2:-128}"
RUNS="${3:-3}"
KDI_ROWS_PER_S=31000
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench/delta"
mkdir -p "$WORK"
INPUT="$CACHE/bench/events-$ROWS.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py "$ROWS" "$INPUT" >&2
# SLUICE_BENCH_BIN: a folder with already built `sluice` and `examples/bench_broker`.
if [ -n "${SLUICE_BENCH_BIN:-}" ]; then
  BIN="$SLUICE_BENCH_BIN"
else
  cargo build --profile dist --features isal --quiet --bin sluice --example bench_broker >&2
  BIN="$CARGO_TARGET_DIR/dist"
fi

# Every run writes to a folder of its own ($OUT), removed only after the last run: on ext4,
# files created just after many were deleted cost the kernel a search past the recently
# deleted inodes, a cost of the benchmark rather than of the job (see kafka_e2e.sh).
[ -d "$WORK/runs" ] && mv "$WORK/runs" "$WORK/runs.old.$$"
mkdir -p "$WORK/runs"
RUN=0
cleanup() { rm -rf "$WORK/runs" "$WORK"/runs.old.*; }
coproc BROKER { "$BIN/examples/bench_broker" "$INPUT" events "$PARTS"; }
read -r ready BOOT N <&"${BROKER[0]}"
[ "$ready" = ready ] || { echo "broker did not start" >&2; exit 1; }
trap 'kill $BROKER_PID 2>/dev/null || true; cleanup' EXIT
echo "broker $BOOT with $N messages on $PARTS partitions" >&2

timed() { # timed NAME CMD... → "wall cpu rss_kb"
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$WORK/$1.time" "${@:2}" >"$WORK/$1.out" 2>"$WORK/$1.err" || { cat "$WORK/$1.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  read -r u s m <"$WORK/$1.time"
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$u + $s" | bc -l) $m"
}
# job NAME EXTRA: a backfill job from scratch that sets what a user must, plus EXTRA sink keys.
job() {
  OUT="$WORK/runs/$1-$((RUN += 1))"
  cat >"$WORK/$1.toml" <<TOML
[job]
name = "dbench"
state_dir = "$OUT-state"
[source]
kind = "kafka"
brokers = "$BOOT"
topics = ["events"]
[repo]
schema = "$PWD/schemas/nginx_access.toml"
[sink]
url = "$OUT/"
$2
TOML
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$WORK/plain.walls"; : >"$WORK/delta.walls"; : >"$WORK/plain.cpus"; : >"$WORK/delta.cpus"
for i in $(seq "$RUNS"); do
  for kind in plain delta; do
    extra=""
    [ "$kind" = delta ] && extra='table = "delta"'
    job "$kind" "$extra"
    [ "$kind" = delta ] && DELTA_OUT="$OUT"
    read -r w c _ <<<"$(timed "$kind" "$BIN/sluice" backfill "$WORK/$kind.toml")"
    echo "$w" >>"$WORK/$kind.walls"
    echo "$c" >>"$WORK/$kind.cpus"
    echo "run $i $kind: $w s, $c CPU-s" >&2
  done
done
pw=$(median <"$WORK/plain.walls"); dw=$(median <"$WORK/delta.walls")
pc=$(median <"$WORK/plain.cpus"); dc=$(median <"$WORK/delta.cpus")
versions=$(find "$DELTA_OUT/_delta_log" -name '*.json' | wc -l)

# About 1,000 small files in one table, compacted; the same rows converted.
SMALL=$(( ROWS / 1000 > 0 ? ROWS / 1000 : 1 ))
job small "table = \"delta\"
[sink.rotation]
max_rows = $SMALL"
"$BIN/sluice" backfill "$WORK/small.toml" >/dev/null 2>&1
files=$(find "$OUT" -name '*.parquet' -not -path '*/_*' | wc -l)
read -r kw kc krss <<<"$(timed compact "$BIN/sluice" compact "$WORK/small.toml" --min-files 2)"
rm -f "$WORK/convert.parquet"
read -r cw cc crss <<<"$(timed convert "$BIN/sluice" convert --quiet --overwrite --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/convert.parquet")"

rate() { printf "%.0f" "$(echo "$N / $1" | bc -l)"; }
echo "Kafka → file://, $N events on $PARTS partitions, median of $RUNS alternated runs:"
echo
echo "| run | wall s | rows/s | CPU s | vs plain Parquet | vs kafka-delta-ingest ($KDI_ROWS_PER_S rows/s) |"
echo "|---|---|---|---|---|---|"
printf "| backfill → Parquet files | %.2f | %s | %.2f | 100 %% | %.0f× |\n" "$pw" "$(rate "$pw")" "$pc" "$(echo "$N / $pw / $KDI_ROWS_PER_S" | bc -l)"
printf "| backfill → Delta table ($versions log versions) | %.2f | %s | %.2f | %.0f %% | %.0f× |\n" "$dw" "$(rate "$dw")" "$dc" "$(echo "100 * $pw / $dw" | bc -l)" "$(echo "$N / $dw / $KDI_ROWS_PER_S" | bc -l)"
echo
echo "| maintenance | wall s | CPU s | peak RSS MiB | speed vs convert |"
echo "|---|---|---|---|---|"
printf "| compact $files files → %s | %.2f | %.2f | %.0f | %.2f× |\n" "$(tail -1 "$WORK/compact.out" | sed 's/ in .*//')" "$kw" "$kc" "$(echo "$krss/1024" | bc -l)" "$(echo "$cw / $kw" | bc -l)"
printf "| convert of the same rows (JSON lines → Parquet) | %.2f | %.2f | %.0f | 1.00× |\n" "$cw" "$cc" "$(echo "$crss/1024" | bc -l)"
