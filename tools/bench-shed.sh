#!/usr/bin/env bash
# Load shedding under overload (issue 12, item 6): how featstore answers single-entity
# reads (50 float32 features) when offered more than it can serve, measured with the
# project's load generator (tools/loadgen).
#
# Steps: build featstore and loadgen; generate and load a data set (products and users
# x 50 float32 features, `featstore gen-matrix`); start `featstore serve` on loopback;
# then, RUNS times each:
#   1. capacity: closed loop, 64 connections;
#   2. 2x capacity: open loop at twice the median capacity of step 1, 64 connections;
#   3. 512 connections, closed loop;
# while steps 2 and 3 run, /healthz is probed every 50 ms with curl. Prints every run,
# then the medians. Everything started here is stopped on exit (trap EXIT).
#
# With two or more CPUs and taskset, the server runs on CPU 1 with one tokio worker and
# the load generator on CPU 0 with one, as in tools/bench-http.sh.
#
# Environment (defaults): SHED_FEATSTORE (the featstore just built; give another
# binary to compare), SHED_SERVE_ARGS (extra `serve` flags, e.g. "--max-queue-time
# off"), SHED_SECS (10), SHED_RUNS (3), SHED_PRODUCTS (50000), SHED_USERS (10000),
# SHED_RATE (the 2x rate; default twice the measured capacity), SHED_DIR
# ($CARGO_TARGET_DIR/bench-shed; the loaded store is reused when present),
# SHED_PORT (17170).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

SECS="${SHED_SECS:-10}"
RUNS="${SHED_RUNS:-3}"
PRODUCTS="${SHED_PRODUCTS:-50000}"
USERS="${SHED_USERS:-10000}"
WORK="${SHED_DIR:-$CARGO_TARGET_DIR/bench-shed}"
PORT="${SHED_PORT:-17170}"
read -r -a SERVE_ARGS <<<"${SHED_SERVE_ARGS:-}"

log() { echo "bench-shed: $*" >&2; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

log "building featstore and loadgen"
cargo build --locked -p featstore --bin featstore -p featstore-loadgen --bin loadgen
FS="${SHED_FEATSTORE:-$CARGO_TARGET_DIR/debug/featstore}"
LG="$CARGO_TARGET_DIR/debug/loadgen"

SERVER_PIN=()
CLIENT_PIN=()
THREAD_ARGS=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SERVER_PIN=(taskset -c 1)
    CLIENT_PIN=(taskset -c 0)
    THREAD_ARGS=(--threads 1)
fi

if [ ! -d "$WORK/store" ]; then
    rm -rf "$WORK"
    mkdir -p "$WORK/data"
    log "generating and loading $PRODUCTS products and $USERS users x 50 float32 features"
    "$FS" gen-matrix --out "$WORK/data" --group bench_product --entity-type product --id-prefix p \
        --feature-prefix pf --entities "$PRODUCTS" --features 50 --seed 7 >/dev/null
    "$FS" gen-matrix --out "$WORK/data" --group bench_user --entity-type user --id-prefix u \
        --feature-prefix uf --entities "$USERS" --features 50 --seed 8 >/dev/null
    for group in bench_product bench_user; do
        "$FS" apply "$WORK/data/$group.features.toml" --data "$WORK/store" >/dev/null
        "$FS" load --group "$group" --input "$WORK/data/$group.csv" --data "$WORK/store" \
            >/dev/null 2>"$WORK/load-$group.log"
    done
fi

log "starting $FS serve ${SERVE_ARGS[*]}"
RUST_LOG=warn TOKIO_WORKER_THREADS=1 "${SERVER_PIN[@]}" "$FS" serve --data "$WORK/store" \
    --addr "127.0.0.1:$PORT" "${SERVE_ARGS[@]}" 2>"$WORK/featstore.log" &
FS_PID=$!
PIDS+=("$FS_PID")
for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    if ! kill -0 "$FS_PID" 2>/dev/null; then log "featstore exited; see $WORK/featstore.log"; exit 1; fi
    sleep 0.1
done

RESULTS="$WORK/results-$(date +%s).jsonl"
DATA_ARGS=(--products "$PRODUCTS" --users "$USERS" --product-features 50 --user-features 50)

run() { # label connections [rate]
    local rate_args=()
    if [ -n "${3:-}" ]; then rate_args=(--rate "$3"); fi
    "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "http://127.0.0.1:$PORT" \
        --system "$1" --mix get --connections "$2" "${rate_args[@]}" --duration "$SECS" \
        --warmup 1 --timeout-ms 5000 "${DATA_ARGS[@]}" --jsonl "$RESULTS"
}

# Probes /healthz every 50 ms until stopped; one latency (ms) or "failed" per line.
probe_start() { # file
    (
        while true; do
            curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' \
                "http://127.0.0.1:$PORT/healthz" >>"$1" || echo "failed" >>"$1"
            sleep 0.05
        done
    ) &
    PROBE_PID=$!
    PIDS+=("$PROBE_PID")
}
probe_stop() {
    kill "$PROBE_PID" 2>/dev/null || true
    wait "$PROBE_PID" 2>/dev/null || true
}
# "N probes, F not 200, p50 X ms, max Y ms" of a probe file.
probe_summary() {
    sort -k2 -n "$1" | awk '
        $1 == "200" { ok[n++] = $2 * 1000 } $1 != "200" { bad++ }
        END {
            if (n == 0) { printf "%d probes, all failed", bad; exit }
            printf "%d probes, %d not 200, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                n + bad, bad, ok[int(n * 0.5)], ok[int(n * 0.99)], ok[n - 1]
        }'
}

for i in $(seq 1 "$RUNS"); do
    log "capacity run $i"
    run capacity 64
done
CAPACITY=$("$LG" stat --results "$RESULTS" --system capacity --shape get --median)
RATE="${SHED_RATE:-$((CAPACITY * 2))}"
log "median capacity $CAPACITY requests/s; offering $RATE/s"
for i in $(seq 1 "$RUNS"); do
    log "2x capacity run $i"
    probe_start "$WORK/probe-2x-$i.txt"
    run overload-2x 64 "$RATE"
    probe_stop
    echo "  /healthz meanwhile: $(probe_summary "$WORK/probe-2x-$i.txt")"
done
for i in $(seq 1 "$RUNS"); do
    log "512 connections run $i"
    probe_start "$WORK/probe-512-$i.txt"
    run closed-512 512
    probe_stop
    echo "  /healthz meanwhile: $(probe_summary "$WORK/probe-512-$i.txt")"
done

median() { "$LG" stat --results "$RESULTS" --system "$1" --shape get --median --mode any --field "$2"; }
echo
echo "medians of $RUNS runs of ${SECS} s ($FS ${SERVE_ARGS[*]}):"
echo "| run | answered 200/s | ok | refused (503) | ok p50 | ok p99 | refused p99 |"
echo "|---|---|---|---|---|---|---|"
for label in capacity overload-2x closed-512; do
    echo "| $label | $(median "$label" throughput) | $(median "$label" ok) | $(median "$label" refused) |" \
        "$(median "$label" p50_us) us | $(median "$label" p99_us) us | $(median "$label" refused_p99_us) us |"
done
echo "offered in overload-2x: $RATE requests/s (2x the median capacity $CAPACITY)"
echo "raw results: $RESULTS"
