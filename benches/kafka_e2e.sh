#!/usr/bin/env bash
# Kafka → Parquet end to end, in one run on one broker: the bare rdkafka consumer (the ceiling),
# `sluice backfill` to Parquet on file:// and on SeaweedFS, and a Python baseline (confluent-kafka + pyarrow,
# batches of 100k). The broker is librdkafka's mock cluster served by examples/bench_broker.rs
# with many partitions (it keeps ~5 MiB per partition). Prints a Markdown table.
#
# usage: benches/kafka_e2e.sh [ROWS (default 1000000)] [PARTITIONS (default 128)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
PARTS="${2:-128}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench"
VENV="$CACHE/bench-venv"
mkdir -p "$WORK"
if ! "$VENV/bin/python" -c "import confluent_kafka, pyarrow" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check confluent-kafka==2.16.1 pyarrow==26.0.1
fi
INPUT="$WORK/events-$ROWS.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py "$ROWS" "$INPUT" >&2
# SLUICE_BENCH_BIN: a folder with already built `sluice` and `examples/{bench_broker,bare_consume}`
# to measure instead of building the `dist` profile.
if [ -n "${SLUICE_BENCH_BIN:-}" ]; then
  BIN="$SLUICE_BENCH_BIN"
else
  cargo build --profile dist --quiet --bin sluice --example bench_broker --example bare_consume >&2
  BIN="$CARGO_TARGET_DIR/dist"
fi

# Every run writes to a folder of its own, and the outputs are removed only after the last
# run: on ext4, creating files just after many were deleted costs the kernel a search past the
# recently deleted inodes (about 0.2 s of system time per run here), which a job writing into
# its destination does not pay.
RUNS=0
[ -d "$WORK/out" ] && mv "$WORK/out" "$WORK/out.old.$$"
mkdir -p "$WORK/out"
cleanup() { rm -rf "$WORK/out" "$WORK"/out.old.*; }
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

read -r bw bc brss <<<"$(timed bare "$BIN/examples/bare_consume" "$BOOT" events)"
# job NAME: a backfill job writing to $(url NAME) with $STORAGE, from scratch. It sets only
# what a user must (brokers, topic, schema, destination): the defaults are what is measured.
job() {
  RUN="$1-$$-$((RUNS += 1))"
  cat >"$WORK/$1.toml" <<TOML
[job]
name = "kbench"
state_dir = "$WORK/out/$RUN-state"
[source]
kind = "kafka"
brokers = "$BOOT"
topics = ["events"]
[repo]
schema = "$PWD/schemas/nginx_access.toml"
[sink]
url = "$(url "$RUN")"
$STORAGE
TOML
}
# sluice_run NAME: the timed run, then the same job from scratch with each stage's CPU sampled.
sluice_run() {
  job "$1"
  timed "$1" "$BIN/sluice" backfill "$WORK/$1.toml"
  job "$1-cpu"
  python3 benches/thread_cpu.py "$WORK/$1.cpu.json" -- "$BIN/sluice" backfill "$WORK/$1-cpu.toml" >/dev/null 2>&1
}
url() { echo "$WORK/out/$1/"; }
STORAGE=""
read -r sw sc srss <<<"$(sluice_run file)"

# The same into SeaweedFS (S3 API) on 127.0.0.1, started by scripts/services.sh.
eval "$(./scripts/services.sh start s3)"
trap 'kill $BROKER_PID 2>/dev/null || true; ./scripts/services.sh stop s3 >/dev/null 2>&1 || true; cleanup' EXIT
url() { echo "$SLUICE_TEST_S3_URL/kbench-$$-$1/"; }
STORAGE="[sink.storage]
endpoint = \"$SLUICE_TEST_S3_ENDPOINT\"
region = \"$SLUICE_TEST_S3_REGION\"
allow_http = true
access_key_id = \"$SLUICE_TEST_S3_ACCESS_KEY_ID\"
secret_access_key = \"$SLUICE_TEST_S3_SECRET_ACCESS_KEY\""
read -r s3w s3c s3rss <<<"$(sluice_run s3)"
rm -f "$WORK/py.parquet"
read -r pw pc prss <<<"$(timed python "$VENV/bin/python" benches/kafka_baseline.py "$BOOT" events "$WORK/py.parquet")"

rate() { printf "%.0f" "$(echo "$N / $1" | bc -l)"; }
echo "| reader | wall s | rows/s | CPU s | peak RSS MiB | vs bare consumer |"
echo "|---|---|---|---|---|---|"
printf "| bare rdkafka consumer (no decoding) | %.2f | %s | %.2f | %.0f | 100 %% |\n" "$bw" "$(rate "$bw")" "$bc" "$(echo "$brss/1024" | bc -l)"
printf "| sluice backfill → Parquet zstd, file:// | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$sw" "$(rate "$sw")" "$sc" "$(echo "$srss/1024" | bc -l)" "$(echo "100 * $bw / $sw" | bc -l)"
printf "| sluice backfill → Parquet zstd, SeaweedFS (S3) | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$s3w" "$(rate "$s3w")" "$s3c" "$(echo "$s3rss/1024" | bc -l)" "$(echo "100 * $bw / $s3w" | bc -l)"
printf "| confluent-kafka + pyarrow (batches of 100k) | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$pw" "$(rate "$pw")" "$pc" "$(echo "$prss/1024" | bc -l)" "$(echo "100 * $bw / $pw" | bc -l)"
echo
echo "CPU seconds by stage (sampled per thread, second run): file:// $(cat "$WORK/file.cpu.json"); S3 $(cat "$WORK/s3.cpu.json")"
