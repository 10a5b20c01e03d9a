#!/usr/bin/env bash
# The whole test suite, with its set-up: a Python venv holding the independent readers
# (pyarrow, duckdb), then formatting, lints, unit and integration tests.
# Idempotent: what is already installed is reused. Caches live outside the checkout
# (SLUICE_CACHE, default ~/.cache/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$CACHE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"

VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb" >/dev/null 2>&1; then
  echo "== creating the interop venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
export SLUICE_TEST_PYTHON="$VENV/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets 2>&1 | tee "$CACHE/test.log"
status=${PIPESTATUS[0]}
exit "$status"
