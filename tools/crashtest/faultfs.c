/*
 * faultfs: an LD_PRELOAD shim that makes file writes, syncs and preallocations of one
 * process fail, for paths under one directory, while a shared control page says so.
 * The crash test (tools/crashtest) compiles it with the machine's C compiler and
 * preloads it into the `featstore serve` it runs; nothing else uses it.
 *
 * Environment (read once, at load):
 *   FEATSTORE_FAULT_CTL   a file of at least 4096 bytes, mapped shared: the control page
 *   FEATSTORE_FAULT_ROOT  only files whose path starts with this directory can fail
 * Without both (or if the page cannot be mapped) the shim only forwards calls.
 *
 * Control page (little-endian 64-bit integers, then a string):
 *   0 magic "FSFAULT1"   8 armed (0/1)        16 ops mask (1 write, 2 sync, 4 allocate)
 *  24 errno to return   32 skip: matching calls let through before the first failure
 *  40 budget: failures left (< 0: unlimited)  48 injected: failures so far (the shim adds)
 *  56 matched: matching calls seen while armed (the shim adds)
 *  64 filter: NUL-terminated substring the path must also contain ("" matches all), 256 bytes
 * The controller writes every field before it sets `armed` to 1, and clears `armed`
 * first when it disarms.
 *
 * Intercepted: write, pwrite, pwrite64, writev, pwritev, pwritev64 (the write op);
 * fsync, fdatasync, sync_file_range (the sync op); fallocate, fallocate64,
 * posix_fallocate, posix_fallocate64 (the allocate op). A failed call does nothing and
 * returns -1 with errno set (posix_fallocate returns the error), as a full or failing
 * disk would for a call that writes nothing.
 *
 * The path of a descriptor is read from /proc/self/fd only while armed, so an idle shim
 * costs one load of `armed` per call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FAULT_MAGIC 0x31544c5541465346ULL /* "FSFAULT1" little-endian */
#define OP_WRITE 1
#define OP_SYNC 2
#define OP_ALLOCATE 4

struct control {
    uint64_t magic;
    _Atomic int64_t armed;
    _Atomic int64_t ops;
    _Atomic int64_t err;
    _Atomic int64_t skip;
    _Atomic int64_t budget;
    _Atomic int64_t injected;
    _Atomic int64_t matched;
    char filter[256];
};

_Static_assert(sizeof(struct control) == 320, "control page layout");

static struct control *ctl;
static char root[PATH_MAX];
static size_t root_len;

__attribute__((constructor)) static void faultfs_init(void) {
    const char *path = getenv("FEATSTORE_FAULT_CTL");
    const char *dir = getenv("FEATSTORE_FAULT_ROOT");
    if (path == NULL || dir == NULL || realpath(dir, root) == NULL) {
        return;
    }
    root_len = strlen(root);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED) {
        return;
    }
    if (((struct control *)page)->magic != FAULT_MAGIC) {
        munmap(page, 4096);
        return;
    }
    ctl = page;
}

/* Takes one unit from a positive counter; false when it is zero or below. */
static int take(_Atomic int64_t *counter) {
    int64_t v = atomic_load(counter);
    while (v > 0) {
        if (atomic_compare_exchange_weak(counter, &v, v - 1)) {
            return 1;
        }
    }
    return 0;
}

/* The errno to fail this call with, or 0 to let it through. */
static int fault_for(int fd, int op) {
    struct control *c = ctl;
    if (c == NULL || atomic_load_explicit(&c->armed, memory_order_acquire) == 0 ||
        (atomic_load(&c->ops) & op) == 0) {
        return 0;
    }
    char link[64];
    char target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) {
        return 0;
    }
    target[n] = '\0';
    if ((size_t)n < root_len || memcmp(target, root, root_len) != 0 ||
        (target[root_len] != '/' && target[root_len] != '\0')) {
        return 0;
    }
    char filter[sizeof c->filter];
    memcpy(filter, c->filter, sizeof filter);
    filter[sizeof filter - 1] = '\0';
    if (filter[0] != '\0' && strstr(target + root_len, filter) == NULL) {
        return 0;
    }
    atomic_fetch_add(&c->matched, 1);
    if (take(&c->skip)) {
        return 0;
    }
    if (atomic_load(&c->budget) >= 0 && !take(&c->budget)) {
        return 0;
    }
    atomic_fetch_add(&c->injected, 1);
    return (int)atomic_load(&c->err);
}

/* The next definition of `name` (libc's), resolved on first use; racing threads store
 * the same pointer. */
#define REAL(name, ret, ...)                                                         \
    static ret (*real_##name)(__VA_ARGS__);                                          \
    ret (*next_##name)(__VA_ARGS__) = __atomic_load_n(&real_##name, __ATOMIC_ACQUIRE); \
    if (next_##name == NULL) {                                                       \
        *(void **)&next_##name = dlsym(RTLD_NEXT, #name);                            \
        __atomic_store_n(&real_##name, next_##name, __ATOMIC_RELEASE);               \
    }

#define FAIL_IF(fd, op)                                                              \
    do {                                                                             \
        int e_ = fault_for((fd), (op));                                              \
        if (e_ != 0) {                                                               \
            errno = e_;                                                              \
            return -1;                                                               \
        }                                                                            \
    } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write, ssize_t, int, const void *, size_t);
    FAIL_IF(fd, OP_WRITE);
    return next_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
    FAIL_IF(fd, OP_WRITE);
    return next_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off64_t);
    FAIL_IF(fd, OP_WRITE);
    return next_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev, ssize_t, int, const struct iovec *, int);
    FAIL_IF(fd, OP_WRITE);
    return next_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t);
    FAIL_IF(fd, OP_WRITE);
    return next_pwritev(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset) {
    REAL(pwritev64, ssize_t, int, const struct iovec *, int, off64_t);
    FAIL_IF(fd, OP_WRITE);
    return next_pwritev64(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    REAL(fsync, int, int);
    FAIL_IF(fd, OP_SYNC);
    return next_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, int, int);
    FAIL_IF(fd, OP_SYNC);
    return next_fdatasync(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    REAL(sync_file_range, int, int, off64_t, off64_t, unsigned int);
    FAIL_IF(fd, OP_SYNC);
    return next_sync_file_range(fd, offset, nbytes, flags);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    REAL(fallocate, int, int, int, off_t, off_t);
    FAIL_IF(fd, OP_ALLOCATE);
    return next_fallocate(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len) {
    REAL(fallocate64, int, int, int, off64_t, off64_t);
    FAIL_IF(fd, OP_ALLOCATE);
    return next_fallocate64(fd, mode, offset, len);
}

int posix_fallocate(int fd, off_t offset, off_t len) {
    REAL(posix_fallocate, int, int, off_t, off_t);
    int e = fault_for(fd, OP_ALLOCATE);
    if (e != 0) {
        return e;
    }
    return next_posix_fallocate(fd, offset, len);
}

int posix_fallocate64(int fd, off64_t offset, off64_t len) {
    REAL(posix_fallocate64, int, int, off64_t, off64_t);
    int e = fault_for(fd, OP_ALLOCATE);
    if (e != 0) {
        return e;
    }
    return next_posix_fallocate64(fd, offset, len);
}
