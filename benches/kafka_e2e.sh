#!/usr/bin/env bash
# Kafka → Parquet end to end, in one run on one broker: the bare rdkafka consumer (the ceiling),
# `sluice backfill` to Parquet on file:// and on SeaweedFS, and a Python baseline (confluent-kafka + pyarrow,
# batches of 100k). The broker is librdkafka's mock cluster served by examples/bench_broker.rs
# with many partitions (it keeps ~5 MiB per partition). The four readers take turns, ROUNDS
# times (bare, file://, S3, Python; then again), so a drift of the machine's speed touches them
# alike. Prints a Markdown table of the medians, with every round's wall time.
#
# usage: benches/kafka_e2e.sh [ROWS (default 1000000)] [PARTITIONS (default 128)] [ROUNDS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
PARTS="${2:-128}"
ROUNDS="${3:-3}"
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
  cargo build --profile dist --features isal --quiet --bin sluice --example bench_broker --example bare_consume >&2
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

# job NAME: a backfill job of reader NAME (file, s3, or either with -cpu), from scratch. It sets only
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
url = "$(url "$1" "$RUN")"
$(storage "$1")
TOML
}
# url NAME RUN and storage NAME: where a run of reader NAME (file or s3) writes.
url() {
  if [ "$1" = file ] || [ "$1" = file-cpu ]; then echo "$WORK/out/$2/"
  else echo "$SLUICE_TEST_S3_URL/kbench-$2/"; fi
}
storage() {
  if [ "$1" = file ] || [ "$1" = file-cpu ]; then return; fi
  echo "[sink.storage]
endpoint = \"$SLUICE_TEST_S3_ENDPOINT\"
region = \"$SLUICE_TEST_S3_REGION\"
allow_http = true
access_key_id = \"$SLUICE_TEST_S3_ACCESS_KEY_ID\"
secret_access_key = \"$SLUICE_TEST_S3_SECRET_ACCESS_KEY\""
}

# SeaweedFS (S3 API) on 127.0.0.1, started by scripts/services.sh; stopped at the end only
# when this script started it (a server someone else runs is left running).
S3_SAID="$(mktemp)"
eval "$(./scripts/services.sh start s3 2>"$S3_SAID")"
cat "$S3_SAID" >&2
STOP_S3=1
if grep -q "already running" "$S3_SAID"; then STOP_S3=""; fi
rm -f "$S3_SAID"
trap 'kill $BROKER_PID 2>/dev/null || true; if [ -n "$STOP_S3" ]; then ./scripts/services.sh stop s3 >/dev/null 2>&1 || true; fi; cleanup' EXIT

# Each round: every reader once, timed. A reader's results are lines "wall cpu rss_kb".
declare -A RES
for r in $(seq "$ROUNDS"); do
  echo "round $r of $ROUNDS" >&2
  RES[bare]+="$(timed bare "$BIN/examples/bare_consume" "$BOOT" events)"$'\n'
  for s in file s3; do
    job "$s"
    RES[$s]+="$(timed "$s" "$BIN/sluice" backfill "$WORK/$s.toml")"$'\n'
  done
  rm -f "$WORK/py.parquet"
  RES[python]+="$(timed python "$VENV/bin/python" benches/kafka_baseline.py "$BOOT" events "$WORK/py.parquet")"$'\n'
done
# median NAME → "wall cpu rss_kb" of the round with the median wall time; walls NAME → all.
median() { grep . <<<"${RES[$1]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
walls() { grep . <<<"${RES[$1]}" | awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1}'; }
read -r bw bc brss <<<"$(median bare)"
read -r sw sc srss <<<"$(median file)"
read -r s3w s3c s3rss <<<"$(median s3)"
read -r pw pc prss <<<"$(median python)"
# Then the same jobs from scratch once more, each stage's CPU sampled per thread.
for s in file s3; do
  job "$s-cpu"
  python3 benches/thread_cpu.py "$WORK/$s.cpu.json" -- "$BIN/sluice" backfill "$WORK/$s-cpu.toml" >/dev/null 2>&1
done

rate() { printf "%.0f" "$(echo "$N / $1" | bc -l)"; }
echo "Medians of $ROUNDS rounds (wall s of every round: bare $(walls bare); file:// $(walls file); S3 $(walls s3); Python $(walls python))."
echo
echo "| reader | wall s | rows/s | CPU s | peak RSS MiB | vs bare consumer |"
echo "|---|---|---|---|---|---|"
printf "| bare rdkafka consumer (no decoding) | %.2f | %s | %.2f | %.0f | 100 %% |\n" "$bw" "$(rate "$bw")" "$bc" "$(echo "$brss/1024" | bc -l)"
printf "| sluice backfill → Parquet zstd, file:// | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$sw" "$(rate "$sw")" "$sc" "$(echo "$srss/1024" | bc -l)" "$(echo "100 * $bw / $sw" | bc -l)"
printf "| sluice backfill → Parquet zstd, SeaweedFS (S3) | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$s3w" "$(rate "$s3w")" "$s3c" "$(echo "$s3rss/1024" | bc -l)" "$(echo "100 * $bw / $s3w" | bc -l)"
printf "| confluent-kafka + pyarrow (batches of 100k) | %.2f | %s | %.2f | %.0f | %.0f %% |\n" "$pw" "$(rate "$pw")" "$pc" "$(echo "$prss/1024" | bc -l)" "$(echo "100 * $bw / $pw" | bc -l)"
echo
printf "sluice file:// against Python: %.1fx. CPU-s per 1M records: bare %.2f, sluice file:// %.2f.\n" \
  "$(echo "$pw / $sw" | bc -l)" "$(echo "$bc * 1000000 / $N" | bc -l)" "$(echo "$sc * 1000000 / $N" | bc -l)"
echo
echo "CPU seconds by stage (sampled per thread, one more run): file:// $(cat "$WORK/file.cpu.json"); S3 $(cat "$WORK/s3.cpu.json")"
