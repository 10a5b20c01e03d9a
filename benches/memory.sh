#!/usr/bin/env bash
# Peak RSS against the documented memory bound (docs/OPERATIONS.md, "Sizing memory"), scenario by scenario:
#
#   - a file job into 211 partitions (`{path}`) in each format (Parquet, ORC, JSON gzip, CSV),
#     with 24 records of 4 MiB among 300,000 events, on a local folder;
#   - the same in Parquet to S3 (SeaweedFS, started by scripts/services.sh), where each open
#     upload holds its part being filled and up to two parts in flight;
#   - 48 concurrent pushes of 4 MiB bodies (plain and gzip) against max_in_flight;
#   - a file job over 40 MiB of 2-byte bad lines (each a dead letter of about 220 B), and on
#     S3 100 files of them (each partition's dead-letter upload held until it commits);
#   - a file job over 20 MiB of records of 1,000 empty items of a `list<struct>` with 50
#     integer fields (3 bytes of text an item, about 1.8 KB decoded).
#
# Each run gets small bounds (channel 32 MiB, sink.max_buffered_bytes 64 MiB, push
# max_in_flight 96 MiB, max_pending 32 MiB) so that they bind, and the bound is computed as the
# docs/OPERATIONS.md states it. Prints a Markdown table: bound, peak RSS, RSS − bound (the target is at most
# 64 MiB over).
#
# usage: benches/memory.sh            (needs python3 and curl; S3 is skipped if it cannot start)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench/memory"
mkdir -p "$WORK"
EVENTS="$CACHE/bench/events-1000000.jsonl"
[ -s "$EVENTS" ] || python3 benches/gen_events.py 1000000 "$EVENTS" >&2
cargo build --profile dist --features isal --quiet --bin sluice >&2
SLUICE="$CARGO_TARGET_DIR/dist/sluice"
MIB=$((1024 * 1024))
CHANNEL=$((32 * MIB))
BUFFERED=$((64 * MIB))
LONG=$((4 * MIB))
THREADS=$(nproc)

# 300,000 events with a 4 MiB user agent every 12,500 rows.
INPUT="$WORK/events-long.jsonl"
[ -s "$INPUT" ] || python3 - "$EVENTS" "$INPUT" "$LONG" <<'PY'
import json, sys
src, dst, long = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src) as f, open(dst, "w") as out:
    for i, line in enumerate(f):
        if i == 300_000:
            break
        if i % 12_500 == 6_000:
            d = json.loads(line)
            d["user_agent"] = "L" * (long - 400)
            line = json.dumps(d) + "\n"
        out.write(line)
PY

# 20,971,520 lines of `}` (40 MiB): every one a dead letter.
TINY="$WORK/tiny-bad.jsonl"
[ -s "$TINY" ] || python3 -c 'import sys; open(sys.argv[1], "w").write("}\n" * (20 << 20))' "$TINY"

# 7,000 records of 1,000 `{}` items of a list<struct> with 50 integer fields (20 MiB).
WIDE_SCHEMA="$WORK/wide.toml"
python3 - "$WIDE_SCHEMA" <<'PY'
import sys
kids = ", ".join('{ name = "c%d", type = "int64" }' % i for i in range(50))
open(sys.argv[1], "w").write('name = "wide"\n[[fields]]\nname = "l"\ntype = "list<struct>"\nfields = [ %s ]\n' % kids)
PY
WIDE="$WORK/wide-items.jsonl"
[ -s "$WIDE" ] || python3 -c 'import sys; open(sys.argv[1], "w").write(("{\"l\":[" + ",".join(["{}"] * 1000) + "]}\n") * 7000)' "$WIDE"

# The documented bound for a file job: channel + sink buffers + decode in flight, where each of
# the (2 × decode threads + 2) chunks in flight holds up to 4 × its size (text, decoder
# working data, batches) plus a fixed cost per record (256 B; a chunk holds at most 16,384
# lines), and a chunk is the larger of chunk_bytes and the longest record; plus the idle zstd
# contexts each of the 2 sink workers may keep (under 3 MiB).
# With a list or a map in the schema, a chunk's items add at most 32 MiB as measured.
file_bound() { # file_bound LONGEST_RECORD [ITEMS_PER_CHUNK]
  local chunk=$((MIB > $1 ? MIB : $1))
  echo $((CHANNEL + BUFFERED + (2 * THREADS + 2) * (4 * chunk + 16384 * 256 + ${2:-0}) + 2 * 3 * MIB))
}

row() { # row NAME BOUND RSS_KB
  local rss=$(($3 * 1024))
  printf "| %s | %.0f | %.0f | %+.0f |\n" "$1" "$(echo "$2/$MIB" | bc -l)" \
    "$(echo "$rss/$MIB" | bc -l)" "$(echo "($rss-$2)/$MIB" | bc -l)"
}

file_job() { # file_job FORMAT URL [STORAGE]
  cat >"$WORK/job.toml" <<TOML
[job]
name = "mem"
state_dir = "$WORK/state"
[source]
kind = "file"
paths = ["${4:-$INPUT}"]
[repo]
schema = "${5:-$PWD/schemas/nginx_access.toml}"
[channel]
max_bytes = "32MiB"
[sink]
url = "$2"
format = "$1"
workers = 2
max_open_files = 256
max_buffered_bytes = "64MiB"
[sink.rotation]
max_rows = 10000000
max_bytes = "1GiB"
[sink.partition]
template = "{path}/"
${3:-}
TOML
}

measure() { # measure NAME BOUND CMD... (runs CMD, prints the row)
  local name=$1 bound=$2
  shift 2
  /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/run.err" ||
    { tail -20 "$WORK/run.err" >&2; exit 1; }
  row "$name" "$bound" "$(tail -1 "$WORK/rss")"
}

echo "| scenario | bound MiB | peak RSS MiB | RSS − bound MiB |"
echo "|---|---|---|---|"
for fmt in parquet orc json csv; do
  rm -rf "$WORK/state" "$WORK/out"
  file_job "$fmt" "file://$WORK/out/"
  measure "file job, 211 partitions, $fmt, local" "$(file_bound $LONG)" "$SLUICE" run "$WORK/job.toml"
done

rm -rf "$WORK/state" "$WORK/out"
file_job parquet "file://$WORK/out/" "" "$TINY"
measure "file job, 40 MiB of 2-byte bad lines, local" "$(file_bound 3)" "$SLUICE" run "$WORK/job.toml"

rm -rf "$WORK/state" "$WORK/out"
file_job parquet "file://$WORK/out/" "" "$WIDE" "$WIDE_SCHEMA"
sed -i '/^\[sink.partition\]/,+1d' "$WORK/job.toml" # the schema has no `path`
measure "file job, 20 MiB of empty items of 50 integers, local" "$(file_bound 3 $((32 * MIB)))" "$SLUICE" run "$WORK/job.toml"

if S3_ENV="$(scripts/services.sh start s3 2>"$WORK/services.err")"; then
  eval "$S3_ENV"
  rm -rf "$WORK/state"
  prefix="mem-$(date +%s)"
  file_job parquet "$SLUICE_TEST_S3_URL/$prefix/" "[sink.storage]
endpoint = \"$SLUICE_TEST_S3_ENDPOINT\"
allow_http = true
access_key_id = \"$SLUICE_TEST_S3_ACCESS_KEY_ID\"
secret_access_key = \"$SLUICE_TEST_S3_SECRET_ACCESS_KEY\""
  measure "file job, 211 partitions, parquet, S3" "$(file_bound $LONG)" "$SLUICE" run "$WORK/job.toml"
  # 100 source partitions (files) of bad lines: every record a dead letter, each partition's
  # dead-letter upload held until it commits, against the sink's share.
  BAD="$WORK/bad-parts"
  mkdir -p "$BAD"
  [ -s "$BAD/in099.jsonl" ] || python3 -c 'import sys
for i in range(100):
    open("%s/in%03d.jsonl" % (sys.argv[1], i), "w").write("}\n" * 50000)' "$BAD"
  rm -rf "$WORK/state"
  file_job parquet "$SLUICE_TEST_S3_URL/$prefix-dead/" "[sink.storage]
endpoint = \"$SLUICE_TEST_S3_ENDPOINT\"
allow_http = true
access_key_id = \"$SLUICE_TEST_S3_ACCESS_KEY_ID\"
secret_access_key = \"$SLUICE_TEST_S3_SECRET_ACCESS_KEY\"" "$(ls "$BAD"/*.jsonl | paste -sd '|' | sed 's/|/", "/g')"
  measure "file job, 100 partitions of bad lines (dead letters), S3" "$(file_bound 3)" "$SLUICE" run "$WORK/job.toml"
else
  echo "S3 skipped: $(tail -1 "$WORK/services.err")" >&2
fi

# Push: 48 clients at once, bodies of 4 MiB (12,000 events) plain and gzip.
head -12000 "$EVENTS" >"$WORK/body.jsonl"
gzip -1 -c "$WORK/body.jsonl" >"$WORK/body.jsonl.gz"
for durability in memory wal; do
  rm -rf "$WORK/state" "$WORK/out"
  cat >"$WORK/push.toml" <<TOML
[job]
name = "mem-push"
state_dir = "$WORK/state"
[source]
kind = "push"
durability = "$durability"
max_body = "8MiB"
max_in_flight = "96MiB"
max_pending = "32MiB"
max_retained = "128MiB"
[repo]
schema = "${5:-$PWD/schemas/nginx_access.toml}"
[channel]
max_bytes = "32MiB"
[sink]
url = "file://$WORK/out/"
workers = 2
max_buffered_bytes = "64MiB"
[sink.rotation]
idle = "1s"
[admin]
listen = "127.0.0.1:0"
TOML
  /usr/bin/time -f "%M" -o "$WORK/rss" "$SLUICE" run "$WORK/push.toml" 2>"$WORK/push.log" &
  TPID=$!
  for _ in $(seq 100); do grep -q "to=Running" "$WORK/push.log" && break; sleep 0.1; done
  ADDR=$(grep -o 'addr=[0-9.:]*' "$WORK/push.log" | head -1 | cut -d= -f2)
  for round in 1 2 3; do
    seq 48 | xargs -P 48 -I{} sh -c '
      if [ $(({} % 2)) = 0 ]; then
        curl -s -o /dev/null -w "%{http_code}\n" --data-binary @"$1/body.jsonl" "http://$2/v1/repos/nginx_access/data"
      else
        curl -s -o /dev/null -w "%{http_code}\n" -H "Content-Encoding: gzip" --data-binary @"$1/body.jsonl.gz" "http://$2/v1/repos/nginx_access/data"
      fi; true' _ "$WORK" "$ADDR" >>"$WORK/codes"
  done
  curl -s -X POST "http://$ADDR/v1/tasks/nginx_access/stop" >/dev/null || kill -TERM "$(pgrep -f "sluice run $WORK/push.toml" | head -1)"
  wait $TPID || true
  # Push bound: max_in_flight + max_pending + channel + sink buffers + decode in flight (the
  # push source's chunks are chunk_bytes, 1 MiB) + with memory durability the log itself
  # (max_retained) + the 2 sink workers' idle zstd contexts (under 3 MiB each).
  bound=$((96 * MIB + 32 * MIB + CHANNEL + BUFFERED + (2 * THREADS + 1) * (4 * MIB + 16384 * 256) + 2 * 3 * MIB))
  [ "$durability" = memory ] && bound=$((bound + 128 * MIB))
  row "push, 48 × 4 MiB bodies at once, $durability" "$bound" "$(tail -1 "$WORK/rss")"
  echo "answers ($durability): $(sort "$WORK/codes" | uniq -c | tr '\n' ' ')" >&2
  rm -f "$WORK/codes"
done
