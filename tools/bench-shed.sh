#!/usr/bin/env bash
# Load shedding under overload (issue 12, item 6): how featstore answers requests when
# offered more than it can serve, measured with the project's load generator
# (tools/loadgen): single-entity reads of 50 float32 features (SHED_MIX=get) or ranking
# requests of 1 user + 100 products x 50 features (SHED_MIX=rank).
#
# Steps: build featstore and loadgen; generate and load a data set (products and users
# x 50 float32 features, `featstore gen-matrix`; reused when present); then
#   1. capacity: a server with shedding off (--max-queue-time off), closed loop,
#      SHED_CONNECTIONS connections, RUNS times; the median is the capacity;
#   2. the server under test (defaults, plus SHED_SERVE_ARGS), open loop at
#      SHED_FACTOR x capacity, SHED_CONNECTIONS connections, RUNS times;
#   3. the same server, 512 connections, closed loop, RUNS times.
# While steps 2 and 3 run, /healthz is probed every 50 ms with curl, on the API address
# and on the health listener (--health-addr). Prints every run, then the medians.
# Everything started here is stopped on exit (trap EXIT).
#
# Open loop: each request's latency counts from when it was due, so a server (or
# connection pool) that falls behind shows it. Closed loop with shedding on is a retry
# storm: the generator sends the next request as soon as a 503 comes back (it does not
# honour Retry-After), which is why capacity is measured with shedding off. The
# generator itself tops out at about 50,000 requests/s on one core of a 2-core shared
# machine (even against the floor, which does nothing): beyond that it measures
# itself, not the server.
#
# With two or more CPUs and taskset, servers run on CPU 1 with one tokio worker and the
# load generator on CPU 0 with one, as in tools/bench-http.sh.
#
# Environment (defaults): SHED_MIX (get), SHED_FACTOR (2), SHED_CONNECTIONS (64),
# SHED_FEATSTORE (the featstore just built; give another binary to compare),
# SHED_SERVE_ARGS (extra `serve` flags of the server under test), SHED_CAPACITY_ARGS
# (`serve` flags of the capacity server: "--max-queue-time off"; empty for binaries
# without it), SHED_HEALTH (1: start a health listener; 0 for binaries without
# --health-addr), SHED_RATE (the overload
# rate; default SHED_FACTOR x the measured capacity), SHED_SECS (10), SHED_RUNS (3),
# SHED_PRODUCTS (50000), SHED_USERS (10000), SHED_DIR ($CARGO_TARGET_DIR/bench-shed),
# SHED_PORT (17170).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

MIX="${SHED_MIX:-get}"
FACTOR="${SHED_FACTOR:-2}"
CONNS="${SHED_CONNECTIONS:-64}"
HEALTH="${SHED_HEALTH:-1}"
SECS="${SHED_SECS:-10}"
RUNS="${SHED_RUNS:-3}"
PRODUCTS="${SHED_PRODUCTS:-50000}"
USERS="${SHED_USERS:-10000}"
WORK="${SHED_DIR:-$CARGO_TARGET_DIR/bench-shed}"
PORT="${SHED_PORT:-17170}"
HEALTH_PORT=$((PORT + 1))
read -r -a EXTRA_ARGS <<<"${SHED_SERVE_ARGS:-}"
read -r -a CAPACITY_ARGS <<<"${SHED_CAPACITY_ARGS---max-queue-time off}"

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

FS_PID=""
server_start() { # serve flags..
    log "starting $FS serve $*"
    RUST_LOG=warn TOKIO_WORKER_THREADS=1 "${SERVER_PIN[@]}" "$FS" serve --data "$WORK/store" \
        --addr "127.0.0.1:$PORT" "$@" 2>>"$WORK/featstore.log" &
    FS_PID=$!
    PIDS+=("$FS_PID")
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        if ! kill -0 "$FS_PID" 2>/dev/null; then log "featstore exited; see $WORK/featstore.log"; exit 1; fi
        sleep 0.1
    done
    log "featstore did not open port $PORT"
    exit 1
}
server_stop() {
    kill "$FS_PID" 2>/dev/null || true
    wait "$FS_PID" 2>/dev/null || true
}

RESULTS="$WORK/results-$(date +%s).jsonl"
DATA_ARGS=(--products "$PRODUCTS" --users "$USERS" --product-features 50 --user-features 50)

run() { # label connections [rate]
    local rate_args=()
    if [ -n "${3:-}" ]; then rate_args=(--rate "$3"); fi
    "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "http://127.0.0.1:$PORT" \
        --system "$1" --mix "$MIX" --connections "$2" "${rate_args[@]}" --duration "$SECS" \
        --warmup 1 --timeout-ms 5000 "${DATA_ARGS[@]}" --jsonl "$RESULTS"
}

# Probes http://127.0.0.1:PORT/healthz every 50 ms until stopped: "status seconds" or
# "failed" per line.
probe_one() { # port file
    while true; do
        curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' \
            "http://127.0.0.1:$1/healthz" >>"$2" || echo "failed" >>"$2"
        sleep 0.05
    done
}
# "N probes, F not 200, p50 X ms, p99 Y ms, max Z ms" of probe files.
probe_summary() { # files..
    cat "$@" | sort -k2 -n | awk '
        $1 == "200" { ok[n++] = $2 * 1000 } $1 != "200" { bad++ }
        END {
            if (n == 0) { printf "%d probes, all failed", bad; exit }
            printf "%d probes, %d not 200, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                n + bad, bad, ok[int(n * 0.5)], ok[int(n * 0.99)], ok[n - 1]
        }'
}
PROBE_PIDS=()
probe_start() { # name
    probe_one "$PORT" "$WORK/probe-$1-api.txt" &
    PROBE_PIDS=($!)
    if [ "$HEALTH" = 1 ]; then
        probe_one "$HEALTH_PORT" "$WORK/probe-$1-health.txt" &
        PROBE_PIDS+=($!)
    fi
    PIDS+=("${PROBE_PIDS[@]}")
}
probe_stop() { # name
    for pid in "${PROBE_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "  /healthz on the API address meanwhile: $(probe_summary "$WORK/probe-$1-api.txt")"
    if [ "$HEALTH" = 1 ]; then
        echo "  /healthz on the health listener meanwhile: $(probe_summary "$WORK/probe-$1-health.txt")"
    fi
}
rm -f "$WORK"/probe-*.txt

if [ -n "${SHED_RATE:-}" ]; then
    RATE="$SHED_RATE"
    CAPACITY="(not measured)"
else
    server_start "${CAPACITY_ARGS[@]}"
    for i in $(seq 1 "$RUNS"); do
        log "capacity run $i (shedding off)"
        run capacity "$CONNS"
    done
    server_stop
    CAPACITY=$("$LG" stat --results "$RESULTS" --system capacity --shape "$MIX" --median)
    RATE=$(awk -v c="$CAPACITY" -v f="$FACTOR" 'BEGIN { printf "%d", c * f }')
fi
log "capacity $CAPACITY requests/s; offering $RATE/s"

TEST_ARGS=("${EXTRA_ARGS[@]}")
if [ "$HEALTH" = 1 ]; then TEST_ARGS+=(--health-addr "127.0.0.1:$HEALTH_PORT"); fi
server_start "${TEST_ARGS[@]}"
for i in $(seq 1 "$RUNS"); do
    log "overload run $i"
    probe_start "overload-$i"
    run overload "$CONNS" "$RATE"
    probe_stop "overload-$i"
done
for i in $(seq 1 "$RUNS"); do
    log "512 connections run $i"
    probe_start "512-$i"
    run closed-512 512
    probe_stop "512-$i"
done
server_stop

median() { "$LG" stat --results "$RESULTS" --system "$1" --shape "$MIX" --median --mode any --field "$2"; }
echo
echo "$MIX: medians of $RUNS runs of ${SECS} s; server under test: $FS ${TEST_ARGS[*]}"
echo "| run | answered 200/s | ok | refused (503) | ok p50 | ok p99 | refused p99 |"
echo "|---|---|---|---|---|---|---|"
for label in capacity overload closed-512; do
    if ! "$LG" stat --results "$RESULTS" --system "$label" --shape "$MIX" --mode any >/dev/null 2>&1; then
        continue
    fi
    echo "| $label | $(median "$label" throughput) | $(median "$label" ok) | $(median "$label" refused) |" \
        "$(median "$label" p50_us) us | $(median "$label" p99_us) us | $(median "$label" refused_p99_us) us |"
done
echo "capacity (shedding off, closed loop, $CONNS connections): $CAPACITY requests/s; overload offered $RATE requests/s on $CONNS connections (open loop)"
echo "/healthz, all probes of steps 2 and 3: API address: $(probe_summary "$WORK"/probe-*-api.txt)"
if [ "$HEALTH" = 1 ]; then
    echo "/healthz, all probes of steps 2 and 3: health listener: $(probe_summary "$WORK"/probe-*-health.txt)"
fi
echo "raw results: $RESULTS"
