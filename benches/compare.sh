#!/usr/bin/env bash
# JSON lines → Parquet zstd: sluice vs DuckDB vs polars vs pyarrow on the same generated file, in
# the same run, each tool pinned to N cores (`taskset`) for each N given. Prints a Markdown table
# per core count (best of RUNS wall seconds, CPU seconds, peak RSS, output size, ratios), a
# scaling table, and sluice's other formats (ORC zstd, JSON lines gzip) against its Parquet at
# each core count, to stdout.
#
# usage: benches/compare.sh [ROWS (default 1000000)] [RUNS (default 3)] [CORES (default "1 2")]
#   e.g. benches/compare.sh 4000000 2 "1 2 4 8 16" on a bigger machine.
# Needs python3; creates a benchmark venv (pyarrow, duckdb, polars) if missing. Work files go
# to $SLUICE_CACHE/bench (default ~/.cache/sluice/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
RUNS="${2:-3}"
CORES="${3:-1 2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
VENV="$CACHE/bench-venv"
WORK="$CACHE/bench"
mkdir -p "$WORK"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb, polars" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pyarrow==26.0.1 duckdb==2.0.1 polars==2.1.0
fi
PY="$VENV/bin/python"
INPUT="$WORK/events-$ROWS.jsonl"
[ -s "$INPUT" ] || "$PY" benches/gen_events.py "$ROWS" "$INPUT" >&2
# SLUICE_BIN: an already built binary to measure instead of building the `dist` profile.
if [ -n "${SLUICE_BIN:-}" ]; then
  SLUICE="$SLUICE_BIN"
else
  cargo build --profile dist --features isal --quiet >&2
  SLUICE="$CARGO_TARGET_DIR/dist/sluice"
fi

cat > "$WORK/duckdb_convert.py" <<'PY'
import os, sys, duckdb
inp, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"SET threads = {len(os.sched_getaffinity(0))}")
cols = ("{ts: 'TIMESTAMPTZ', host: 'VARCHAR', method: 'VARCHAR', path: 'VARCHAR', "
        "status: 'INTEGER', bytes: 'BIGINT', latency_ms: 'DOUBLE', client_ip: 'VARCHAR', "
        "user_agent: 'VARCHAR', region: 'VARCHAR', user_id: 'BIGINT', cache_hit: 'BOOLEAN', "
        "trace_id: 'VARCHAR'}")
con.execute(f"COPY (SELECT * FROM read_json('{inp}', format='newline_delimited', columns={cols})) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
PY
cat > "$WORK/polars_convert.py" <<'PY'
import sys
import polars as pl
inp, out = sys.argv[1], sys.argv[2]
schema = {
    "ts": pl.Datetime("ms", "UTC"), "host": pl.String, "method": pl.String, "path": pl.String,
    "status": pl.Int32, "bytes": pl.Int64, "latency_ms": pl.Float64, "client_ip": pl.String,
    "user_agent": pl.String, "region": pl.String, "user_id": pl.Int64, "cache_hit": pl.Boolean,
    "trace_id": pl.String}
# The timestamps are RFC 3339 strings: read as strings, parsed in the plan.
raw = {k: (pl.String if k == "ts" else v) for k, v in schema.items()}
(pl.scan_ndjson(inp, schema=raw)
   .with_columns(pl.col("ts").str.to_datetime(time_unit="ms", time_zone="UTC"))
   .sink_parquet(out, compression="zstd"))
PY
cat > "$WORK/pyarrow_convert.py" <<'PY'
import os, sys
import pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq
pa.set_cpu_count(len(os.sched_getaffinity(0)))
inp, out = sys.argv[1], sys.argv[2]
schema = pa.schema([
    ("ts", pa.timestamp("ms", tz="UTC")), ("host", pa.string()), ("method", pa.string()),
    ("path", pa.string()), ("status", pa.int32()), ("bytes", pa.int64()),
    ("latency_ms", pa.float64()), ("client_ip", pa.string()), ("user_agent", pa.string()),
    ("region", pa.string()), ("user_id", pa.int64()), ("cache_hit", pa.bool_()),
    ("trace_id", pa.string())])
t = pj.read_json(inp, parse_options=pj.ParseOptions(explicit_schema=schema))
pq.write_table(t, out, compression="zstd")
PY

# run NAME OUTPUT CMD... → "best_seconds cpu_seconds_of_that_run max_rss_kb output_bytes"
run() {
  local name="$1" out="$2"; shift 2
  local best="" cpu="" rss=0
  for _ in $(seq "$RUNS"); do
    rm -f "$out"
    local t0 t1 secs kb u s
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$WORK/rss" taskset -c "$PIN" "$@" >/dev/null 2>"$WORK/$name.err" || {
      cat "$WORK/$name.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc -l)
    read -r u s kb <<<"$(tail -1 "$WORK/rss")"
    if [ -z "$best" ] || [ "$(echo "$secs < $best" | bc -l)" = 1 ]; then
      best=$secs; cpu=$(echo "$u + $s" | bc -l); fi
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  echo "$best $cpu $rss $(stat -c %s "$out")"
}

in_size=$(stat -c %s "$INPUT")
fmt() { printf "%.2f" "$1"; }
mb() { echo "scale=1; $1 / 1048576" | bc -l; }
echo "Input: $ROWS events, $(mb "$in_size") MiB of JSON lines; best of $RUNS runs; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)."
SCALING=""
FORMATS=""
mkdir -p "$WORK/out"
for N in $CORES; do
  PIN="0-$((N - 1))"
  S=$(run sluice "$WORK/out/sluice.parquet" "$SLUICE" convert --quiet --overwrite \
      --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/out/sluice.parquet")
  D=$(run duckdb "$WORK/out/duckdb.parquet" "$PY" "$WORK/duckdb_convert.py" "$INPUT" "$WORK/out/duckdb.parquet")
  L=$(run polars "$WORK/out/polars.parquet" env POLARS_MAX_THREADS="$N" "$PY" "$WORK/polars_convert.py" "$INPUT" "$WORK/out/polars.parquet")
  P=$(run pyarrow "$WORK/out/pyarrow.parquet" "$PY" "$WORK/pyarrow_convert.py" "$INPUT" "$WORK/out/pyarrow.parquet")
  read -r s_t s_c s_rss s_size <<<"$S"
  read -r d_t d_c d_rss d_size <<<"$D"
  read -r l_t l_c l_rss l_size <<<"$L"
  read -r p_t p_c p_rss p_size <<<"$P"
  echo
  echo "### $N core(s) (taskset -c $PIN)"
  echo
  echo "| tool | wall s | rows/s | CPU-s per 1M rows | peak RSS MiB | output MiB | sluice speed-up | size vs sluice |"
  echo "|---|---|---|---|---|---|---|---|"
  line() {
    local name=$1 t=$2 c=$3 rss=$4 size=$5
    printf "| %s | %s | %.0f | %s | %s | %s | %sx | %s |\n" "$name" "$(fmt "$t")" \
      "$(echo "$ROWS / $t" | bc -l)" "$(fmt "$(echo "$c * 1000000 / $ROWS" | bc -l)")" \
      "$(mb $((rss * 1024)))" "$(mb "$size")" \
      "$(fmt "$(echo "$t / $s_t" | bc -l)")" "$(fmt "$(echo "$size / $s_size" | bc -l)")"
  }
  line "sluice convert (parquet zstd)" "$s_t" "$s_c" "$s_rss" "$s_size"
  line "DuckDB COPY (zstd)" "$d_t" "$d_c" "$d_rss" "$d_size"
  line "polars scan_ndjson + sink_parquet (zstd)" "$l_t" "$l_c" "$l_rss" "$l_size"
  line "pyarrow read_json + write_table (zstd)" "$p_t" "$p_c" "$p_rss" "$p_size"
  O=$(run orc "$WORK/out/sluice.orc" "$SLUICE" convert --quiet --overwrite --format orc \
      --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/out/sluice.orc")
  J=$(run json "$WORK/out/sluice.jsonl.gz" "$SLUICE" convert --quiet --overwrite --format json \
      --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/out/sluice.jsonl.gz")
  read -r o_t o_c o_rss o_size <<<"$O"
  read -r j_t j_c j_rss j_size <<<"$J"
  FORMATS+="| $N | $(fmt "$s_t") | $(fmt "$o_t") ($(fmt "$(echo "$o_t / $s_t" | bc -l)")x) | $(fmt "$j_t") ($(fmt "$(echo "$j_t / $s_t" | bc -l)")x) | $(mb "$s_size") / $(mb "$o_size") / $(mb "$j_size") |"$'\n'
  SCALING+="| $N | $(fmt "$s_t") | $(fmt "$d_t") | $(fmt "$l_t") | $(fmt "$(echo "$d_t / $s_t" | bc -l)")x | $(fmt "$(echo "$l_t / $s_t" | bc -l)")x |"$'\n'
done
echo
echo "### Scaling (wall s; ratio = peer time / sluice time)"
echo
echo "| cores | sluice | DuckDB | polars | vs DuckDB | vs polars |"
echo "|---|---|---|---|---|---|"
printf "%s" "$SCALING"
echo
echo "### sluice's formats (wall s, best of $RUNS; ratio = format time / Parquet time)"
echo
echo "| cores | Parquet zstd:1 | ORC zstd:1 | JSON lines gzip:1 | output MiB (Parquet / ORC / JSON) |"
echo "|---|---|---|---|---|"
printf "%s" "$FORMATS"
