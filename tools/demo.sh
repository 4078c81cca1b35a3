#!/usr/bin/env bash
# Builds featstore, generates the synthetic marketplace data set, loads it as batch
# versions and serves it on 127.0.0.1:7070 (Ctrl-C stops). Arguments are passed to
# `featstore demo` (e.g. --addr 127.0.0.1:8080 --exit-after 60).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
cargo run --locked --bin featstore -- demo "$@"
