#!/usr/bin/env bash
# Several repos in one process against one process per repo: `sluice run` of a file job over
# 1M web-log events to Parquet, (a) one repo, (b) two repos in one job file (`[[repos]]`, each
# reading the file into its own folder), (c) the same two repos as two processes at once.
# Prints a Markdown table of wall times (RUNS runs each, alternating).
#
# usage: benches/repos.sh [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
WORK="$CACHE/bench/repos"
mkdir -p "$WORK"
INPUT="$CACHE/bench/events-1000000.jsonl"
[ -s "$INPUT" ] || python3 benches/gen_events.py 1000000 "$INPUT" >&2
cargo build --profile dist --features isal --quiet --bin sluice >&2
SLUICE="$CARGO_TARGET_DIR/dist/sluice"
SCHEMA="$PWD/schemas/nginx_access.toml"

shared() { # shared NAME → the sections every job here has
  cat <<TOML
[job]
name = "$1"
state_dir = "state-$1"
[source]
kind = "file"
paths = ["$INPUT"]
[repo]
schema = "$SCHEMA"
[sink]
url = "out-$1/"
[sink.rotation]
max_rows = 1000000
TOML
}
shared one >"$WORK/one.toml"
shared a >"$WORK/a.toml"
shared b >"$WORK/b.toml"
{ shared both; printf '[[repos]]\nname = "a"\n[[repos]]\nname = "b"\nsink.url = "out-both-b/"\n'; } >"$WORK/both.toml"

now() { date +%s.%N; }
run() { # run JOB... → seconds for all of them to finish (started at once)
  rm -rf "$WORK"/out-* "$WORK"/state-*
  local t0 pids=()
  t0=$(now)
  for j in "$@"; do
    "$SLUICE" run "$WORK/$j.toml" >"$WORK/$j.out" 2>"$WORK/$j.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$WORK"/*.err >&2; exit 1; }; done
  echo "$(now) - $t0" | bc -l
}
declare -a one both two
for _ in $(seq "$RUNS"); do
  one+=("$(run one)")
  both+=("$(run both)")
  two+=("$(run a b)")
done
row() { local name=$1; shift; printf '| %s |' "$name"; for v in "$@"; do printf ' %.2f s |' "$v"; done; echo; }
echo "| 1M events → Parquet, file source | $(for i in $(seq "$RUNS"); do printf 'run %s | ' "$i"; done)"
echo "|---|$(for _ in $(seq "$RUNS"); do printf -- '---|'; done)"
row "one repo" "${one[@]}"
row "two repos, one process" "${both[@]}"
row "two repos, two processes" "${two[@]}"
