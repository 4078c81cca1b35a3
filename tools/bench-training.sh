#!/usr/bin/env bash
# The point-in-time training-set benchmark, side by side in one run:
#   1. featstore-bench-training loads DAYS daily versions of ENTITIES x FEATURES float32
#      (CHANGE% of the entities changing a day) plus pushes, with the history on, and
#      times `featstore training-set` for a spine of SPINE rows, then exports the
#      history (docs/history-export.md);
#   2. tools/bench_training_duckdb.py times DuckDB's ASOF JOIN over that export for the
#      same spine and checks every value against featstore's output.
# Prints both reports (values/s, CPU seconds, peak RSS, the ratio). On demand only
# (the issue's full size, 1000000 50 30 5 1000000, takes tens of minutes here).
#
# Environment (defaults): BENCH_ENTITIES (100000), BENCH_FEATURES (50), BENCH_DAYS (30),
# BENCH_CHANGE (5), BENCH_SPINE (100000), BENCH_THREADS (0: featstore answers on one
# thread per core, as DuckDB does), BENCH_DIR ($CARGO_TARGET_DIR/bench-training).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
source tools/pyenv.sh
cargo build --locked --bin featstore-bench-training
dir="${BENCH_DIR:-$CARGO_TARGET_DIR/bench-training}"
report="$("$CARGO_TARGET_DIR/debug/featstore-bench-training" \
    "${BENCH_ENTITIES:-100000}" "${BENCH_FEATURES:-50}" "${BENCH_DAYS:-30}" \
    "${BENCH_CHANGE:-5}" "${BENCH_SPINE:-100000}" "$dir" "${BENCH_THREADS:-0}")"
echo "featstore: $report"
echo "$report" | "$FEATSTORE_PY" tools/bench_training_duckdb.py
