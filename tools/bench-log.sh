#!/usr/bin/env bash
# Serving-log overhead: ranking reads (1 user + 100 products x 50 float32 features) and
# single GETs (50 features) over HTTP with the serving log off, sampled at 10% and at
# 100%, driven by the load generator of tools/bench-http.sh (tools/loadgen) against the
# same data (`featstore gen-matrix`). Reports, per shape and setting, closed-loop
# throughput and its loss against logging off, and the server's CPU time per request
# (the steadier measure on a shared machine: a saturated core's throughput loss is
# 1 - CPU off / CPU on); at 100%, the log's bytes per logged value
# (from /metrics: bytes written / values written); and the export speed of
# `featstore log export` in values/s. Everything started here is stopped on exit.
#
# With two or more CPUs and taskset, the server runs on CPU 1 with one tokio worker and
# the load generator on CPU 0 (as in tools/bench-http.sh); the log's writer thread
# shares CPU 1 with the server, so its cost is counted.
#
# Environment (defaults): BENCH_PRODUCTS (100000), BENCH_USERS (10000), BENCH_SECS (5),
# BENCH_WARMUP (1), BENCH_CONNECTIONS (16), BENCH_REPEATS (2: settings take turns this
# many times, the best run of each counts), BENCH_DIR ($CARGO_TARGET_DIR/bench-log),
# BENCH_PORT (17170), BENCH_LOG_LEVEL (the log's zstd level; unset: its default),
# BENCH_FEATSTORE (the featstore just built; give another binary to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh

PRODUCTS="${BENCH_PRODUCTS:-100000}"
USERS="${BENCH_USERS:-10000}"
SECS="${BENCH_SECS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CONNS="${BENCH_CONNECTIONS:-16}"
REPEATS="${BENCH_REPEATS:-2}"
WORK="${BENCH_DIR:-$CARGO_TARGET_DIR/bench-log}"
PORT="${BENCH_PORT:-17170}"
LEVEL="${BENCH_LOG_LEVEL:-}" # the log's zstd level; empty: the default

log() { echo "bench-log: $*" >&2; }

source tools/bench-common.sh
FS_PID=""

log "building featstore and loadgen"
cargo build --locked -p featstore --bin featstore -p featstore-loadgen --bin loadgen
FS="${BENCH_FEATSTORE:-$CARGO_TARGET_DIR/debug/featstore}"
LG="$CARGO_TARGET_DIR/debug/loadgen"

bench_pin

rm -rf "$WORK"
mkdir -p "$WORK/data"
log "generating $PRODUCTS products and $USERS users x 50 float32 features"
"$FS" gen-matrix --out "$WORK/data" --group bench_product --entity-type product --id-prefix p \
    --feature-prefix pf --entities "$PRODUCTS" --features 50 --seed 7 >/dev/null
"$FS" gen-matrix --out "$WORK/data" --group bench_user --entity-type user --id-prefix u \
    --feature-prefix uf --entities "$USERS" --features 50 --seed 8 >/dev/null
for group in bench_product bench_user; do
    "$FS" apply "$WORK/data/$group.features.toml" --data "$WORK/store" >/dev/null
    "$FS" load --group "$group" --input "$WORK/data/$group.csv" --data "$WORK/store" >/dev/null 2>"$WORK/load-$group.log"
done

config_of() { # rate -> store config file
    local file="$WORK/log-$1.toml"
    if [ "$1" = off ]; then
        : >"$file"
    else
        printf '[serving_log]\nenabled = true\nsample_rate = %s\ndir = "%s"\n' "$1" "$WORK/log-$1" >"$file"
        if [ -n "$LEVEL" ]; then echo "compression_level = $LEVEL" >>"$file"; fi
    fi
    echo "$file"
}

start() { # rate
    RUST_LOG=warn "${SERVER_PIN[@]}" "$FS" serve --data "$WORK/store" --addr "127.0.0.1:$PORT" \
        --max-queue-time off --store-config "$(config_of "$1")" 2>>"$WORK/featstore-$1.log" &
    FS_PID=$!
    PIDS+=("$FS_PID")
    wait_port "$PORT" "$FS_PID"
}

stop() {
    kill "$FS_PID" 2>/dev/null || true
    wait "$FS_PID" 2>/dev/null || true
    FS_PID=""
}

DATA_ARGS=(--products "$PRODUCTS" --users "$USERS" --product-features 50 --user-features 50 --candidates 100)
RESULTS="$WORK/results.jsonl"
CPU="$WORK/cpu.txt" # shape, rate, server and log writer CPU µs per request; one line per run
: >"$CPU"
HZ=$(getconf CLK_TCK)
METRICS="$WORK/metrics.txt"
: >"$METRICS"

# Settings take turns, so a noisy moment of the shared machine lands on all of them.
for round in $(seq 1 "$REPEATS"); do
    for rate in off 0.1 1.0; do
        rm -rf "$WORK/log-$rate"
        start "$rate"
        for shape in get rank; do
            log "round $round: $shape, logging $rate"
            if [ "$WARMUP" != 0 ]; then
                "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "http://127.0.0.1:$PORT" \
                    --system warmup --mix "$shape" --connections "$CONNS" --duration "$WARMUP" \
                    --warmup 0 --timeout-ms 5000 "${DATA_ARGS[@]}" >/dev/null
            fi
            before=$(cpu_ticks "$FS_PID")
            writer_before=$(thread_ticks "$FS_PID" serving-log)
            "${CLIENT_PIN[@]}" "$LG" "${THREAD_ARGS[@]}" run --target "http://127.0.0.1:$PORT" \
                --system "log-$rate" --mix "$shape" --connections "$CONNS" --duration "$SECS" \
                --warmup 0 --timeout-ms 5000 "${DATA_ARGS[@]}" --jsonl "$RESULTS" >/dev/null
            after=$(cpu_ticks "$FS_PID")
            writer_after=$(thread_ticks "$FS_PID" serving-log)
            requests=$(tail -n 1 "$RESULTS" | sed 's/.*"ok":\([0-9]*\).*/\1/')
            awk -v s="$shape" -v r="$rate" -v t=$((after - before)) -v n="$requests" -v hz="$HZ" \
                -v w=$((writer_after - writer_before)) \
                'BEGIN { printf "%s %s %.1f %.2f\n", s, r, t * 1e6 / hz / n, w * 1e6 / hz / n }' >>"$CPU"
        done
        if [ "$rate" = 1.0 ]; then
            curl -s "http://127.0.0.1:$PORT/metrics" | grep '^featstore_serving_log' >"$METRICS"
        fi
        stop
    done
done

metric() { awk -v m="$1" '$1 == m { print $2 }' "$METRICS"; }
BYTES=$(metric featstore_serving_log_bytes_written_total)
VALUES=$(metric featstore_serving_log_values_written_total)
DROPPED=$(grep 'reason="queue_full"' "$METRICS" | awk '{ print $2 }')

log "exporting the 100% log"
EXPORT=$("$FS" log export --log-dir "$WORK/log-1.0" --out "$WORK/export")

# The median of a setting's runs of server CPU per request.
cpu_of() { # shape rate [field: 3 server (default), 4 log writer]
    awk -v s="$1" -v r="$2" -v f="${3:-3}" '$1 == s && $2 == r { print $f }' "$CPU" | sort -n |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "| shape | logging | throughput (req/s) | loss vs off | server CPU per request (median) | CPU-implied loss vs off | of it, the log writer thread |"
echo "|---|---|---|---|---|---|---|"
for shape in get rank; do
    off=$("$LG" stat --results "$RESULTS" --system log-off --shape "$shape" --field throughput)
    cpu_off=$(cpu_of "$shape" off)
    for rate in off 0.1 1.0; do
        t=$("$LG" stat --results "$RESULTS" --system "log-$rate" --shape "$shape" --field throughput)
        loss=$(awk -v a="$off" -v b="$t" 'BEGIN { printf "%.1f%%", (a - b) * 100 / a }')
        cpu=$(cpu_of "$shape" "$rate")
        implied=$(awk -v a="$cpu_off" -v b="$cpu" 'BEGIN { printf "%.1f%%", (1 - a / b) * 100 }')
        writer=$(cpu_of "$shape" "$rate" 4)
        share=$(awk -v w="$writer" -v b="$cpu" 'BEGIN { printf "%.1f%%", w * 100 / b }')
        echo "| $shape | $rate | $t | $loss | $cpu µs | $implied | $writer µs ($share) |"
    done
done
echo
echo "CPU-implied loss: 1 - (CPU per request, off) / (CPU per request, this setting), the"
echo "throughput a saturated server core loses; medians of $REPEATS runs per setting. The"
echo "writer thread's CPU per request is the log's cost off the request path; the rest of"
echo "the difference from logging off is on it (sampling, the queue hand-off), plus noise."
echo
awk -v b="$BYTES" -v v="$VALUES" -v d="$DROPPED" 'BEGIN {
    printf "log at 100%% (last round): %d values in %d bytes = %.2f bytes per logged value; %d records dropped (queue full)\n", v, b, b / v, d }'
echo "export: $EXPORT" | head -1
