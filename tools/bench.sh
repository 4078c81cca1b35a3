#!/usr/bin/env bash
# Runs the criterion read benchmark (1M entities x 50 floats by default; set
# FEATSTORE_BENCH_ENTITIES to change) and the batch load benchmark, with the same
# optimised profile as everything else (so RocksDB is not rebuilt for benchmarks), then
# the durable push benchmark (unpaced, and at 100,000 values/s offered).
# Arguments are passed to criterion (e.g. `--measurement-time 10`).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
cargo bench --locked --profile dev --bench read_path -- "$@"
cargo run --locked --bin featstore-bench-load -- "${FEATSTORE_BENCH_ENTITIES:-1000000}" 50
cargo run --locked --bin featstore-bench-push -- 5 10 10 1,8,64
cargo run --locked --bin featstore-bench-push -- 5 10 10 8,64 100000
