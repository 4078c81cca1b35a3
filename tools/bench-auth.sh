#!/usr/bin/env bash
# The cost of access control on single GETs: the same store served twice on loopback,
# open and with a token file (one principal allowed every feature of the read), driven
# by the load generator (tools/loadgen) with closed-loop GETs of 50 float32 features,
# the two servers taking turns. Prints each run and the throughput ratio; writes
# nothing into the repository. Bounded: BENCH_ROUNDS x 2 runs of BENCH_SECS seconds.
#
# With two or more CPUs and taskset, the server runs on CPU 1 and the load generator on
# CPU 0 (one tokio worker each), as in tools/bench-http.sh.
#
# Environment (defaults): BENCH_PRODUCTS (20000), BENCH_SECS (4), BENCH_WARMUP (1),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (8), BENCH_DIR ($CARGO_TARGET_DIR/bench-auth),
# BENCH_PORT (17170).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

PRODUCTS="${BENCH_PRODUCTS:-20000}"
SECS="${BENCH_SECS:-4}"
WARMUP="${BENCH_WARMUP:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-8}"
WORK="${BENCH_DIR:-$CARGO_TARGET_DIR/bench-auth}"
PORT="${BENCH_PORT:-17170}"

log() { echo "bench-auth: $*" >&2; }
source tools/bench-common.sh

log "building featstore and loadgen"
cargo build --locked -p featstore --bin featstore -p featstore-loadgen --bin loadgen
FS="$CARGO_TARGET_DIR/debug/featstore"
LG="$CARGO_TARGET_DIR/debug/loadgen"
bench_pin

rm -rf "$WORK"
mkdir -p "$WORK/data"
"$FS" gen-matrix --out "$WORK/data" --group bench_product --entity-type product --id-prefix p \
    --feature-prefix pf --entities "$PRODUCTS" --features 50 --seed 7 >/dev/null
"$FS" apply "$WORK/data/bench_product.features.toml" --data "$WORK/store" >/dev/null
"$FS" load --group bench_product --input "$WORK/data/bench_product.csv" --data "$WORK/store" \
    >/dev/null 2>"$WORK/load.log"

"$FS" token new --id bench --team bench --scope read --read 'pf*' >"$WORK/tokens.toml" 2>"$WORK/token.txt"
TOKEN=$(tail -n 1 "$WORK/token.txt")

DATA_ARGS=(--products "$PRODUCTS" --users 1 --product-features 50 --user-features 1 --get-features 50
    --rank-user-features 1 --push-features 1)

serve_and_run() { # label [token-file]
    local label=$1 extra=()
    if [ -n "${2:-}" ]; then extra=(--token-file "$2"); fi
    RUST_LOG=warn "${SERVER_PIN[@]}" "$FS" serve --data "$WORK/store" --addr "127.0.0.1:$PORT" \
        --max-queue-time off "${extra[@]}" 2>"$WORK/featstore-$label.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$PORT" "$pid"
    local token_env=()
    if [ -n "${2:-}" ]; then token_env=(env "LOADGEN_BEARER_TOKEN=$TOKEN"); fi
    "${token_env[@]}" "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "http://127.0.0.1:$PORT" \
        --system "featstore-$label" --mix get --connections "$CONNECTIONS" --duration "$SECS" \
        --warmup "$WARMUP" --timeout-ms 5000 "${DATA_ARGS[@]}" --csv "$WORK/results.csv" \
        --jsonl "$WORK/results.jsonl"
    kill "$pid" && wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    serve_and_run open
    serve_and_run token "$WORK/tokens.toml"
done

python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in runs:
    by.setdefault(r["system"], []).append(r)
for system, rs in sorted(by.items()):
    t = [r["throughput"] for r in rs]
    failed = sum(r["requests"] - r["ok"] for r in rs)
    print(f"{system}: {', '.join(f'{x:.0f}' for x in t)} req/s (mean {sum(t) / len(t):.0f}); not ok: {failed}")
o = sum(r["throughput"] for r in by["featstore-open"])
k = sum(r["throughput"] for r in by["featstore-token"])
print(f"token/open throughput ratio: {k / o:.3f}")
PY
