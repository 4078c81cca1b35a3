#!/usr/bin/env bash
# The HTTP benchmark suite: featstore (ranking answers in JSON and in the binary form),
# the floor (a do-nothing hyper endpoint answering featstore's response size) and Redis in
# two layouts (one hash per entity: HMGETs; one packed float32 row per entity: GET and one
# MGET per ranking read, Redis's strongest layout for this work), driven by the same load
# generator (tools/loadgen) with the same entities, features and connections, in one
# run. Writes docs/benchmarks.md, its charts (docs/benchmarks/*.png) and the raw results
# (docs/benchmarks/results.csv, results.jsonl).
#
# Steps: build; generate one data set (products and users x 50 float32 features, with
# `featstore gen-matrix`); load it into featstore (`apply` + `load`) and, from the same
# CSV files, into Redis (both layouts); install redis-server from Debian's packages if it is missing;
# start featstore, Redis (no persistence) and, per shape, the floor, on loopback ports;
# probe which shapes featstore serves (404/405 = not available, reported as such); run
# closed-loop runs at growing connection counts and open-loop runs at fractions of each
# system's maximum, the systems taking turns at each point; write the report. Everything started here is stopped on exit (trap EXIT).
#
# With two or more CPUs and taskset, servers run on CPU 1 and the load generator on
# CPU 0 (one tokio worker each), so they do not compete for the same core.
#
# Environment (defaults): BENCH_PRODUCTS (200000), BENCH_USERS (10000), BENCH_SECS (4,
# per measured run), BENCH_WARMUP (1), BENCH_KEYS (uniform; or zipf:0.99),
# BENCH_DIR ($CARGO_TARGET_DIR/bench-http), BENCH_PIN (1), BENCH_PORT_BASE (17070).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

PRODUCTS="${BENCH_PRODUCTS:-200000}"
USERS="${BENCH_USERS:-10000}"
FEATURES=50
SECS="${BENCH_SECS:-4}"
WARMUP="${BENCH_WARMUP:-1}"
KEYS="${BENCH_KEYS:-uniform}"
WORK="${BENCH_DIR:-$CARGO_TARGET_DIR/bench-http}"
PORT_BASE="${BENCH_PORT_BASE:-17070}"
FS_PORT=$PORT_BASE
FLOOR_PORT=$((PORT_BASE + 1))
REDIS_PORT=$((PORT_BASE + 9))
MIX="get=8,rank=1,push=1"
OUT_MD=docs/benchmarks.md
PLOTS=docs/benchmarks

log() { echo "bench-http: $*" >&2; }

# --- processes started here, stopped on exit; wait_port; bench_pin ----------------
source tools/bench-common.sh

# --- build -------------------------------------------------------------------------
log "building featstore and loadgen"
cargo build --locked -p featstore --bin featstore -p featstore-loadgen --bin loadgen
FS="$CARGO_TARGET_DIR/debug/featstore"
LG="$CARGO_TARGET_DIR/debug/loadgen"

# --- CPU placement -----------------------------------------------------------------
CPUS=$(nproc)
bench_pin
PIN_NOTE="No CPU pinning: the load generator and the server under test share all $CPUS CPUs and compete for them."
if [ "$BENCH_PINNED" = 1 ]; then
    PIN_NOTE="CPU pinning with taskset: the server under test (featstore, the floor or Redis; one at a time is loaded) runs on CPU 1 with one tokio worker thread (Redis is single-threaded anyway), the load generator on CPU 0 with one. So each server gets one of the two cores, and the figures are per core; the load generator can be the bottleneck of the cheapest target (the floor)."
fi

# --- Redis -------------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
    log "installing redis-server from Debian's packages"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# --- data --------------------------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK/data"
log "generating $PRODUCTS products and $USERS users x $FEATURES float32 features in $WORK"
"$FS" gen-matrix --out "$WORK/data" --group bench_product --entity-type product --id-prefix p \
    --feature-prefix pf --entities "$PRODUCTS" --features $FEATURES --seed 7 >/dev/null
"$FS" gen-matrix --out "$WORK/data" --group bench_user --entity-type user --id-prefix u \
    --feature-prefix uf --entities "$USERS" --features $FEATURES --seed 8 >/dev/null
for group in bench_product bench_user; do
    "$FS" apply "$WORK/data/$group.features.toml" --data "$WORK/store" >/dev/null
    "$FS" load --group "$group" --input "$WORK/data/$group.csv" --data "$WORK/store" >/dev/null 2>"$WORK/load-$group.log"
done

# Load shedding off: these runs measure capacity and latency against the floor and
# Redis, which shed nothing (tools/bench-shed.sh measures shedding).
SERVE_ARGS=(--max-queue-time off)
log "starting featstore on 127.0.0.1:$FS_PORT"
RUST_LOG=warn "${SERVER_PIN[@]}" "$FS" serve --data "$WORK/store" --addr "127.0.0.1:$FS_PORT" \
    "${SERVE_ARGS[@]}" 2>"$WORK/featstore.log" &
FS_PID=$!
PIDS+=("$FS_PID")
wait_port "$FS_PORT" "$FS_PID"

log "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
"${SERVER_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --protected-mode yes --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" "$REDIS_PID"
"$LG" redis-load --target "redis://127.0.0.1:$REDIS_PORT" --csv "$WORK/data/bench_product.csv" --entity-type product
"$LG" redis-load --target "redis://127.0.0.1:$REDIS_PORT" --csv "$WORK/data/bench_user.csv" --entity-type user
"$LG" redis-load --target "redis://127.0.0.1:$REDIS_PORT" --csv "$WORK/data/bench_product.csv" --entity-type product --layout packed
"$LG" redis-load --target "redis://127.0.0.1:$REDIS_PORT" --csv "$WORK/data/bench_user.csv" --entity-type user --layout packed

# --- runs --------------------------------------------------------------------------
DATA_ARGS=(--products "$PRODUCTS" --users "$USERS" --product-features $FEATURES --user-features $FEATURES --keys "$KEYS")
RESULTS="$WORK/results.jsonl"
AVAIL="$WORK/availability.jsonl"
CSV="$WORK/results.csv"

"$LG" probe --target "http://127.0.0.1:$FS_PORT" --system featstore --jsonl "$AVAIL" "${DATA_ARGS[@]}" \
    | tee "$WORK/probe.txt"
available() { grep -q "^featstore $1 available$" "$WORK/probe.txt"; }

url_of() {
    case $1 in
        featstore | featstore-binary | featstore-2core | featstore-2core-binary) echo "http://127.0.0.1:$FS_PORT" ;;
        floor) echo "http://127.0.0.1:$FLOOR_PORT" ;;
        redis | redis-packed) echo "redis://127.0.0.1:$REDIS_PORT" ;;
    esac
}

system_args() { # the encoding or layout a system label stands for
    case $1 in
        featstore-binary | featstore-2core-binary) echo "--accept binary" ;;
        redis-packed) echo "--redis-layout packed" ;;
    esac
}

run() { # system mix connections [rate]
    local rate_args=()
    if [ -n "${4:-}" ]; then rate_args=(--rate "$4"); fi
    local extra
    read -r -a extra <<<"$(system_args "$1")"
    "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "$(url_of "$1")" --system "$1" \
        --mix "$2" --connections "$3" "${rate_args[@]}" --duration "$SECS" --warmup "$WARMUP" \
        --timeout-ms 5000 "${DATA_ARGS[@]}" "${extra[@]}" --jsonl "$RESULTS" --csv "$CSV"
}

open_rate() { # system mix percent: that share of the system's best closed-loop throughput
    local max
    max=$("$LG" stat --results "$RESULTS" --system "$1" --shape "$2" --field throughput)
    echo $((max * $3 / 100 > 0 ? max * $3 / 100 : 1))
}

FLOOR_PID=""
floor_start() { # body bytes
    "${SERVER_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" floor --addr "127.0.0.1:$FLOOR_PORT" --body-bytes "$1" \
        --exit-after 3600 2>>"$WORK/floor.log" &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    wait_port "$FLOOR_PORT" "$FLOOR_PID"
}
floor_stop() {
    kill "$FLOOR_PID" 2>/dev/null || true
    wait "$FLOOR_PID" 2>/dev/null || true
}

# Systems take turns at each connection count and rate, so a noisy moment of the shared
# machine lands on all of them rather than on one system's whole sweep.
for shape in get rank push; do
    case $shape in
        get) conns="4 16 64"; percents="25 50 75" ;;
        rank) conns="4 16"; percents="50" ;;
        push) conns="8 32"; percents="50" ;;
    esac
    if available "$shape"; then
        systems="featstore floor redis redis-packed"
        if [ "$shape" = rank ]; then systems="featstore featstore-binary floor redis redis-packed"; fi
        log "== $shape: $systems"
        run featstore "$shape" 1
        bytes=$("$LG" stat --results "$RESULTS" --system featstore --shape "$shape" --field mean_response_bytes)
        log "   the floor answers $bytes bytes (featstore's mean answer)"
        floor_start "$bytes"
        run floor "$shape" 1
        if [ "$shape" = rank ]; then run featstore-binary "$shape" 1; fi
    else
        log "== $shape: redis (featstore does not serve it, see the probe; the floor needs its answer size, so it is skipped too)"
        systems="redis redis-packed"
    fi
    run redis "$shape" 1
    run redis-packed "$shape" 1
    for c in $conns; do
        for system in $systems; do run "$system" "$shape" "$c"; done
    done
    for pct in $percents; do
        for system in $systems; do run "$system" "$shape" 32 "$(open_rate "$system" "$shape" "$pct")"; done
    done
    if [ -n "$FLOOR_PID" ]; then floor_stop; FLOOR_PID=""; fi
done

if available get && available rank && available push; then
    log "== mix $MIX"
    run featstore "$MIX" 16
    run redis "$MIX" 16
    run redis-packed "$MIX" 16
else
    echo "{\"system\":\"featstore\",\"shape\":\"$MIX\",\"available\":false,\"detail\":\"the mix needs get, rank and push\"}" >>"$AVAIL"
    run redis "$MIX" 16
fi

# The two-core figure: featstore unpinned, with a worker per CPU, sharing both cores
# with the load generator (the issue's "100,000 entity reads/s on two cores").
TWO_CORE_NOTE=""
if [ ${#SERVER_PIN[@]} -gt 0 ]; then
    log "== featstore on both cores (unpinned)"
    kill "$FS_PID" 2>/dev/null || true
    wait "$FS_PID" 2>/dev/null || true
    RUST_LOG=warn TOKIO_WORKER_THREADS=$CPUS "$FS" serve --data "$WORK/store" --addr "127.0.0.1:$FS_PORT" \
        "${SERVE_ARGS[@]}" 2>>"$WORK/featstore.log" &
    FS_PID=$!
    PIDS+=("$FS_PID")
    wait_port "$FS_PORT" "$FS_PID"
    THREAD_ARGS=(--threads "$CPUS")
    CLIENT_PIN=()
    run featstore-2core get 64
    if available rank; then
        run featstore-2core rank 16
        run featstore-2core-binary rank 16
    fi
    TWO_CORE_NOTE=" The \`featstore-2core\` runs are the exception: featstore unpinned with $CPUS worker threads, the load generator unpinned too, all sharing both cores."
fi

# --- report ------------------------------------------------------------------------
mkdir -p "$PLOTS"
cp "$RESULTS" "$PLOTS/results.jsonl"
cp "$CSV" "$PLOTS/results.csv"
CPU_MODEL=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
MEM_GB=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
"$LG" report --results "$RESULTS" --availability "$AVAIL" --out "$OUT_MD" --plots "$PLOTS" \
    --command "tools/bench.sh" \
    --note "Machine: $CPUS CPUs ($CPU_MODEL), ${MEM_GB} GiB RAM, $(uname -sr); shared with other work (load average $(cut -d' ' -f1-3 /proc/loadavg) when the report was written), so figures are noisy: compare ratios within this run." \
    --note "$PIN_NOTE$TWO_CORE_NOTE" \
    --note "Data: $PRODUCTS products (\`p0\`..) and $USERS users (\`u0\`..), $FEATURES float32 features each (\`pf00\`.., \`uf00\`..), generated once by \`featstore gen-matrix\` as CSV and loaded from those files into featstore (\`apply\` + \`load\`, one batch version per group, hot segment holding every entity) and into Redis twice: one hash per entity (\`product:p42\`, fields named as in featstore, values as written in the file) and, as \`redis-packed\`, one string per entity (\`packed:product:p42\`) holding its 50 features as little-endian float32 (200 bytes), the layout Feast's \`precompute_online\` also uses." \
    --note "Requests: get = \`GET /v1/features/product/{id}?names=pf00..pf49\` vs \`HMGET product:{id} pf00..pf49\` (redis) or \`GET packed:product:{id}\` (redis-packed); rank = \`POST /v1/rank\` with 1 user + 100 products and their 50 features each, answered in JSON (featstore) or in the binary ranking form (featstore-binary, \`Accept: application/x-featstore-rank\`), vs a pipeline of 101 \`HMGET\`s on one connection (redis) or one \`MGET\` of 101 packed rows (redis-packed); push = \`POST /v1/push\` of 1 event with 10 features vs \`HSET\` (redis) or \`SETRANGE\` of the 40 bytes (redis-packed); ids $KEYS; keep-alive connections. featstore's answers carry per value a status and an event time and are checked against TTL and freshness SLO; Redis's carry the values only." \
    --note "Runs: ${SECS} s measured after ${WARMUP} s of warm-up each; closed loop at several connection counts, then open loop (32 connections) at fractions of each system's own best closed-loop throughput; the systems take turns at each point, so a noisy moment hits all of them. The floor answers every request with a body of featstore's mean answer size for that shape." \
    --note "Versions: featstore $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(redis-server --version | cut -d' ' -f1-3)."
log "wrote $OUT_MD"
