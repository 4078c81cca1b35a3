# Shared set-up for the project's scripts: sourced, never run.
# - Installs libclang (bindgen needs it to build RocksDB) when it is missing.
# - Keeps cargo's build cache outside the clone, at one fixed place, so RocksDB's C++
#   (20+ minutes) is compiled once per machine and every later build is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/featstore-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

have_libclang() {
    ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 ||
        ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 ||
        ls /usr/lib/aarch64-linux-gnu/libclang*.so* >/dev/null 2>&1
}

if ! have_libclang || ! command -v clang >/dev/null 2>&1; then
    echo "featstore: installing libclang and clang (needed to build RocksDB)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev clang >/dev/null
fi
