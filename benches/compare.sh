#!/usr/bin/env bash
# JSON lines → Parquet zstd: sluice vs DuckDB vs pyarrow on the same generated file, in the same
# run. Prints a Markdown table (best of N wall seconds, peak RSS, output size, ratios) to stdout.
#
# usage: benches/compare.sh [ROWS (default 1000000)] [RUNS (default 3)]
# Needs python3; creates the venv of scripts/test.sh if missing. Work files go to
# $SLUICE_CACHE/bench (default ~/.cache/sluice/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
RUNS="${2:-3}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
VENV="$CACHE/venv"
WORK="$CACHE/bench"
mkdir -p "$WORK"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
PY="$VENV/bin/python"
INPUT="$WORK/events-$ROWS.jsonl"
[ -s "$INPUT" ] || "$PY" benches/gen_events.py "$ROWS" "$INPUT" >&2
cargo build --profile dist --quiet >&2
SLUICE="$CARGO_TARGET_DIR/dist/sluice"

cat > "$WORK/duckdb_convert.py" <<'PY'
import sys, duckdb
inp, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2")
cols = ("{ts: 'TIMESTAMPTZ', host: 'VARCHAR', method: 'VARCHAR', path: 'VARCHAR', "
        "status: 'INTEGER', bytes: 'BIGINT', latency_ms: 'DOUBLE', client_ip: 'VARCHAR', "
        "user_agent: 'VARCHAR', region: 'VARCHAR', user_id: 'BIGINT', cache_hit: 'BOOLEAN', "
        "trace_id: 'VARCHAR'}")
con.execute(f"COPY (SELECT * FROM read_json('{inp}', format='newline_delimited', columns={cols})) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
PY
cat > "$WORK/pyarrow_convert.py" <<'PY'
import sys
import pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq
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

# run NAME OUTPUT CMD... → "best_seconds max_rss_kb output_bytes"
run() {
  local name="$1" out="$2"; shift 2
  local best="" rss=0
  for _ in $(seq "$RUNS"); do
    rm -f "$out"
    local t0 t1 secs kb
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/$name.err" || {
      cat "$WORK/$name.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc -l)
    kb=$(tail -1 "$WORK/rss")
    if [ -z "$best" ] || [ "$(echo "$secs < $best" | bc -l)" = 1 ]; then best=$secs; fi
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  echo "$best $rss $(stat -c %s "$out")"
}

S=$(run sluice "$WORK/out/sluice.parquet" "$SLUICE" convert --quiet --overwrite \
    --schema schemas/nginx_access.toml --input "$INPUT" --output "$WORK/out/sluice.parquet")
D=$(run duckdb "$WORK/out/duckdb.parquet" "$PY" "$WORK/duckdb_convert.py" "$INPUT" "$WORK/out/duckdb.parquet")
P=$(run pyarrow "$WORK/out/pyarrow.parquet" "$PY" "$WORK/pyarrow_convert.py" "$INPUT" "$WORK/out/pyarrow.parquet")

read -r s_t s_rss s_size <<<"$S"
read -r d_t d_rss d_size <<<"$D"
read -r p_t p_rss p_size <<<"$P"
in_size=$(stat -c %s "$INPUT")
fmt() { printf "%.2f" "$1"; }
mb() { echo "scale=1; $1 / 1048576" | bc -l; }
echo "Input: $ROWS events, $(mb "$in_size") MiB of JSON lines; best of $RUNS runs; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)."
echo
echo "| tool | wall s | rows/s | peak RSS MiB | output MiB | sluice speed-up | size vs sluice |"
echo "|---|---|---|---|---|---|---|"
line() {
  local name=$1 t=$2 rss=$3 size=$4
  printf "| %s | %s | %.0f | %s | %s | %sx | %s |\n" "$name" "$(fmt "$t")" \
    "$(echo "$ROWS / $t" | bc -l)" "$(mb $((rss * 1024)))" "$(mb "$size")" \
    "$(fmt "$(echo "$t / $s_t" | bc -l)")" "$(fmt "$(echo "$size / $s_size" | bc -l)")"
}
line "sluice convert (parquet zstd)" "$s_t" "$s_rss" "$s_size"
line "DuckDB COPY (2 threads, zstd)" "$d_t" "$d_rss" "$d_size"
line "pyarrow read_json + write_table (zstd)" "$p_t" "$p_rss" "$p_size"
