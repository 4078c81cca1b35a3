# Shared pieces of the HTTP benchmark scripts (tools/bench-http.sh, tools/bench-log.sh):
# sourced, never run. The sourcing script defines `log` first.
# - PIDS and an EXIT trap: every process a script starts (added to PIDS) is stopped when
#   it exits.
# - wait_port PORT PID: waits until PORT accepts connections, failing if PID exits first.
# - bench_pin: with two or more CPUs and taskset, SERVER_PIN runs a server on CPU 1 and
#   CLIENT_PIN the load generator on CPU 0, each with one tokio worker (THREAD_ARGS,
#   TOKIO_WORKER_THREADS); otherwise all three are empty and BENCH_PINNED is 0.

PIDS=()
bench_cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap bench_cleanup EXIT

wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then log "process $pid exited before opening port $port"; return 1; fi
        sleep 0.1
    done
    log "port $port did not open"
    return 1
}

bench_pin() {
    SERVER_PIN=()
    CLIENT_PIN=()
    THREAD_ARGS=()
    BENCH_PINNED=0
    if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
        SERVER_PIN=(taskset -c 1)
        CLIENT_PIN=(taskset -c 0)
        THREAD_ARGS=(--threads 1)
        export TOKIO_WORKER_THREADS=1
        BENCH_PINNED=1
    fi
}

# cpu_ticks PID: CPU time (user + system, all threads) PID has used, in clock ticks
# (getconf CLK_TCK per second). Differences over a run, divided by its requests, give
# the server's CPU per request, which a noisy shared machine disturbs far less than
# throughput.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# thread_ticks PID NAME: CPU time (user + system) of PID's threads named NAME, in clock
# ticks (0 when it has none).
thread_ticks() {
    local t sum=0
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
            sum=$((sum + $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)))
        fi
    done
    echo "$sum"
}
