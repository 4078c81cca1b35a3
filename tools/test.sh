#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the test suite (unit, integration,
# crash-recovery and concurrency tests), the API docs' links, and a compile of the
# benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --workspace --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --workspace -- --test-threads 2
echo "== Python tests (tests/python, against the binary just built)"
# The page's browser test drives Debian's headless Chromium; install it when missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
    else
        echo "featstore: tests/python/test_ui.py needs chromium and chromium-driver (apt-get install as root)" >&2
    fi
fi
source tools/pyenv.sh
cargo build --locked --workspace --tests
FEATSTORE_BIN="$CARGO_TARGET_DIR/debug/featstore" "$FEATSTORE_PY" -m pytest -q -p no:cacheprovider tests/python
echo "== cargo doc -D warnings (broken or private intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p featstore -p featstore-format -p featstore-swap
echo "== loom model check of the version swap protocol"
# Its own target dir: `--cfg loom` must not invalidate the main build (RocksDB).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$CARGO_TARGET_DIR-loom" \
    cargo test --locked -p featstore-swap --release --test loom_swap
