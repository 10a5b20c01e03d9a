#!/usr/bin/env bash
# Stages against plain conversion: `sluice convert` of 1M web-log events to Parquet zstd, plain
# and with a filter plus a 6-column select (one run of each, alternating, RUNS times). Two
# filters: one that keeps almost everything (the stages' cost on nearly all rows) and one that
# keeps the 4xx/5xx responses (a typical use). Prints a Markdown table.
#
# usage: benches/stages.sh [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench"
mkdir -p "$WORK"
INPUT="$WORK/events-1000000.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py 1000000 "$INPUT" >&2
cargo build --profile dist --features isal --quiet --bin sluice >&2
SLUICE="$CARGO_TARGET_DIR/dist/sluice"

SELECT=(--select "ts" --select "date_trunc('hour', ts) AS hour" --select "lower(method) AS method"
  --select "status" --select "coalesce(user_id, -1) AS user_id"
  --select "encode(sha256(client_ip), 'hex') AS client_hash")
# Every column, six of them computed: the stages' cost with the same amount of output.
ALL=(--select "ts" --select "date_trunc('hour', ts) AS hour" --select "lower(host) AS host"
  --select "lower(method) AS method" --select "path" --select "status" --select "bytes"
  --select "latency_ms" --select "encode(sha256(client_ip), 'hex') AS client_hash"
  --select "user_agent" --select "upper(region) AS region" --select "coalesce(user_id, -1) AS user_id"
  --select "cache_hit" --select "trace_id")
wall() { # wall ARGS... → seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$SLUICE" convert --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/stages-out/" \
    --overwrite --quiet "$@" >"$WORK/stages.out" 2>"$WORK/stages.err" || { cat "$WORK/stages.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
declare -a plain keep errors all
for _ in $(seq "$RUNS"); do
  plain+=("$(wall)")
  all+=("$(wall --filter "method <> 'OPTIONS'" "${ALL[@]}")")
  keep+=("$(wall --filter "method <> 'OPTIONS'" "${SELECT[@]}")")
  rows_keep=$(grep -o '[0-9]* rows' "$WORK/stages.out" | head -1)
  errors+=("$(wall --filter "status >= 400" "${SELECT[@]}")")
  rows_err=$(grep -o '[0-9]* rows' "$WORK/stages.out" | head -1)
done
fmt() { local out=() v; for v in "$@"; do out+=("$(printf '%.2f' "$v")"); done; local IFS=/; echo "${out[*]}" | sed 's#/# / #g'; }
min() { printf "%s\n" "$@" | sort -g | head -1; }
echo "| convert of 1M events → Parquet zstd | wall s (each run) | best | vs plain (best) |"
echo "|---|---|---|---|"
pb=$(min "${plain[@]}")
printf "| plain | %s | %.2f | 100 %% |\n" "$(fmt "${plain[@]}")" "$pb"
kb=$(min "${keep[@]}")
printf "| filter \`method <> 'OPTIONS'\` (%s) + 6-column select | %s | %.2f | %.0f %% |\n" "$rows_keep" "$(fmt "${keep[@]}")" "$kb" "$(echo "100 * $kb / $pb" | bc -l)"
ab=$(min "${all[@]}")
printf "| filter \`method <> 'OPTIONS'\` + select of all 14 columns, 6 computed | %s | %.2f | %.0f %% |\n" "$(fmt "${all[@]}")" "$ab" "$(echo "100 * $ab / $pb" | bc -l)"
eb=$(min "${errors[@]}")
printf "| filter \`status >= 400\` (%s) + 6-column select | %s | %.2f | %.0f %% |\n" "$rows_err" "$(fmt "${errors[@]}")" "$eb" "$(echo "100 * $eb / $pb" | bc -l)"
echo
echo "$(nproc) cores; select: ts, date_trunc('hour', ts), lower(method), status, coalesce(user_id, -1), encode(sha256(client_ip), 'hex')."
