#!/usr/bin/env bash
# The Python client benchmark: one ranking read of 1 user (10 float32 features) + 500
# products x 50 float32 features, end to end into numpy, through
#   1. featstore_client.Client.rank (binary answer, statuses and event times included);
#   2. redis-py MGET of 501 packed rows (200 bytes per product: 50 float32), decoded
#      with numpy.frombuffer (values only: no statuses, no event times);
#   3. the Feast SDK reading featstore (online_store: remote);
#   4. the Feast SDK reading the same data from Redis (Feast's redis online store,
#      in process: a lower bound of Feast's Python feature server, which adds HTTP).
# Writes docs/benchmarks-python.md (p50, p99 per path). Redis comes from Debian's
# redis-server, installed with apt-get when missing. Loopback only; everything started
# here is stopped on exit.
#
# Environment (defaults): BENCH_PRODUCTS (5000), BENCH_ITERS (2000; a hundredth, at least 20, for the
# Feast paths), BENCH_DIR ($CARGO_TARGET_DIR/bench-python), BENCH_PORT_BASE (18070).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
source tools/pyenv.sh
"$FEATSTORE_PY" -m pip install -q --disable-pip-version-check redis==8.1.0
if ! command -v redis-server >/dev/null; then
    echo "installing redis-server (Debian package)" >&2
    apt-get install -y -q redis-server >/dev/null
fi
cargo build --locked --bin featstore
export FEATSTORE_BIN="$CARGO_TARGET_DIR/debug/featstore"
export BENCH_DIR="${BENCH_DIR:-$CARGO_TARGET_DIR/bench-python}"
exec "$FEATSTORE_PY" tools/bench_python_client.py
