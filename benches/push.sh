#!/usr/bin/env bash
# Push ingest end to end: `sluice run` with a push source (memory, then wal durability) to
# Parquet on file://, loaded by examples/push_load.rs (keep-alive HTTP/1.1 clients on this
# machine, requests of ROWS_PER_REQUEST JSON lines taken in turn from generated events).
# Reports acknowledged rows/s, request latency percentiles, 503s, the time until every row is
# committed, and peak RSS. Prints a Markdown table.
#
# Then the same at an offered load of RATE rows/s (paced clients), for request latency.
#
# usage: benches/push.sh [ROWS (default 1000000)] [CLIENTS (default 16)] [ROWS_PER_REQUEST (default 1000)] [RATE (default 200000)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
CLIENTS="${2:-16}"
PER="${3:-1000}"
RATE="${4:-200000}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench"
mkdir -p "$WORK"
INPUT="$WORK/events-$ROWS.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py "$ROWS" "$INPUT" >&2
cargo build --profile dist --features isal --quiet --bin sluice --example push_load >&2
BIN="$CARGO_TARGET_DIR/dist"

metric() { # metric ADDR NAME → sum of the samples
  curl -s "http://$1/metrics" | awk -v n="$2" 'index($0, n"{")==1 {s+=$NF} END {print s+0}'
}

echo "| durability | offered load | acknowledged rows/s | p50 | p99 | max | 503s | all committed after | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for run in memory:max wal:max memory:$RATE wal:$RATE; do
  durability=${run%%:*}
  load=${run#*:}
  rm -rf "$WORK/push-$durability-out" "$WORK/push-$durability-state"
  cat >"$WORK/push-$durability.toml" <<TOML
[job]
name = "pbench"
state_dir = "$WORK/push-$durability-state"
[source]
kind = "push"
durability = "$durability"
[repo]
schema = "$PWD/schemas/nginx_access.toml"
[sink]
url = "file://$WORK/push-$durability-out"
workers = 2
[sink.rotation]
idle = "1s"
[admin]
listen = "127.0.0.1:0"
TOML
  "$BIN/sluice" run "$WORK/push-$durability.toml" 2>"$WORK/push-$durability.log" &
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  for _ in $(seq 100); do grep -q "to=Running" "$WORK/push-$durability.log" && break; sleep 0.1; done
  ADDR=$(grep -o 'addr=[0-9.:]*' "$WORK/push-$durability.log" | head -1 | cut -d= -f2)
  t0=$(date +%s.%N)
  pace=""; [ "$load" = max ] || pace="$load"
  read -r line < <("$BIN/examples/push_load" "$ADDR" nginx_access "$INPUT" "$CLIENTS" "$PER" $pace)
  echo "$durability: $line" >&2
  while [ "$(metric "$ADDR" sluice_rows_out_total)" != "$ROWS" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$PID/status")
  curl -s -X POST "http://$ADDR/v1/tasks/nginx_access/stop" >/dev/null
  wait $PID
  declare -A v
  for kv in $line; do v[${kv%%=*}]=${kv#*=}; done
  printf "| %s | %s | %s | %s ms | %s ms | %s ms | %s | %.2f s | %s MiB |\n" "$durability" "$load" "${v[rows_per_s]}" \
    "${v[p50_ms]}" "${v[p99_ms]}" "${v[max_ms]}" "${v[refused_503]}" "$(echo "$t1 - $t0" | bc -l)" "$rss"
done
echo
echo "$ROWS rows, $CLIENTS clients, $PER rows per request; $(nproc) cores."
