#!/usr/bin/env bash
# Benchmarks.
#
#   tools/bench.sh            the HTTP suite (tools/bench-http.sh): featstore vs the floor vs
#                             Redis under load; writes docs/benchmarks.md (a few minutes)
#   tools/bench.sh --micro    the criterion read and ranking benchmarks (1M entities x 50
#                             floats by default; set FEATSTORE_BENCH_ENTITIES to change), the
#                             batch load benchmark and the durable push benchmark (unpaced,
#                             and at 100,000 values/s offered); further arguments go to
#                             criterion
#   tools/bench.sh --all      both
#
# All use the one optimised `dev` profile, so RocksDB is never rebuilt for benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

micro() {
    cargo bench --locked --profile dev --bench read_path -- "$@"
    cargo bench --locked --profile dev --bench ranking -- "$@"
    cargo run --locked --bin featstore-bench-load -- "${FEATSTORE_BENCH_ENTITIES:-1000000}" 50
    cargo run --locked --bin featstore-bench-push -- 5 10 10 1,8,64
    cargo run --locked --bin featstore-bench-push -- 5 10 10 8,64 100000
}

case "${1:-}" in
    --micro) shift; micro "$@" ;;
    --all) shift; ./tools/bench-http.sh; micro "$@" ;;
    --http | "") ./tools/bench-http.sh ;;
    *) echo "usage: tools/bench.sh [--micro [criterion args] | --all | --http]" >&2; exit 2 ;;
esac
