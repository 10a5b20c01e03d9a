#!/usr/bin/env bash
# The whole test suite, with its set-up: a Python venv holding the independent readers
# (pyarrow, duckdb) and a JSON Schema validator, then formatting, lints, and unit and integration tests, with local S3 and
# Azure Blob servers (scripts/services.sh) running for the object store tests.
# Idempotent: what is already installed is reused. Caches live outside the checkout
# (SLUICE_CACHE, default ~/.cache/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$CACHE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"

VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb, jsonschema, deltalake, polars" >/dev/null 2>&1; then
  echo "== creating the interop venv in $VENV"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
export SLUICE_TEST_PYTHON="$VENV/bin/python"

# The real-broker tier: tansu, a Kafka-compatible broker (its sqlite engine). The cold build
# takes about 11 minutes, so the binary is cached; the tests start and stop their own brokers.
TANSU_VERSION=0.6.0
TANSU="$CACHE/tansu/bin/tansu"
if ! "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "== installing tansu $TANSU_VERSION into $CACHE/tansu (cached after the first run)"
  CARGO_TARGET_DIR="$CACHE/tansu-build" cargo install --locked --quiet --root "$CACHE/tansu" --version "$TANSU_VERSION" tansu \
    --features dynostore,libsql
fi
export SLUICE_TEST_TANSU="$TANSU"

# Debian packages: Prometheus and promtool (a test scrapes a job with a real server and checks
# the shipped alert rules) and Chromium (a test loads the status page in a real browser).
apt_install() {
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "== installing $* (apt)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  apt_install prometheus
fi
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi
# The suite builds with the `isal` feature (gzip through ISA-L), whose bundled source needs an
# assembler and the autotools.
for tool in nasm autoreconf automake libtoolize make; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt_install nasm autoconf automake libtool make
    break
  fi
done

# In CI the cache outlives the checkout: drop this project's own builds of earlier commits
# (a new commit rebuilds them anyway; left alone, their test binaries pile up by the gigabyte),
# and build without incremental data, which only grows there.
if [ "${CI:-}" = true ]; then
  cargo clean --quiet -p sluice
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
  export CARGO_INCREMENTAL=0
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --features isal --quiet -- -D warnings
# The default build (zlib-rs for every gzip level) must stay clean too.
cargo clippy --lib --quiet -- -D warnings
# Object store test servers: SeaweedFS (S3) and Azurite (Azure Blob), stopped on exit.
started=()
stop_services() {
  for s in "${started[@]}"; do ./scripts/services.sh stop "$s" || true; done
}
trap stop_services EXIT
for s in s3 azure; do
  echo "== starting the $s test server"
  started+=("$s")
  lines="$(./scripts/services.sh start "$s")"
  eval "$lines"
done

echo "== cargo test"
cargo test --all-targets --features isal 2>&1 | tee "$CACHE/test.log"
status=${PIPESTATUS[0]}
stop_services
started=()
# One closing line for the whole suite (cargo prints one per test binary).
passed=$(grep -o 'test result: [A-Za-z]*\. [0-9]* passed' "$CACHE/test.log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -o '[0-9]* failed;' "$CACHE/test.log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
