#!/usr/bin/env bash
# Builds featstore, generates the synthetic marketplace data set, loads it as batch
# versions and serves it on 127.0.0.1:7070 (Ctrl-C stops). Arguments are passed to
# `featstore demo` (e.g. --addr 127.0.0.1:8080 --exit-after 60).
#
# It builds the way ./tools/test.sh does: `cargo build --workspace --tests` resolves
# crate features exactly as `cargo test --workspace` (dev-dependencies and every
# workspace member included), so the demo and the tests share one build and whichever
# runs second compiles nothing new. (`cargo run --bin featstore` resolves features for
# the one package, and would compile about 3 minutes of crates a second time.)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
cargo build --locked --workspace --tests
exec "$CARGO_TARGET_DIR/debug/featstore" demo "$@"
