/* homeslab's C malloc library (libhomeslab_malloc.so): its own entry
 * points, beyond malloc, free, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
 * malloc_usable_size. Linux only. See README.md, "In C and C++".
 *
 * A program that may run without the library preloaded can declare them
 * weak (define HOMESLAB_WEAK before including this header) and test a
 * function's address against NULL before calling it. */
#ifndef HOMESLAB_H
#define HOMESLAB_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef HOMESLAB_WEAK
#define HOMESLAB_API __attribute__((weak))
#else
#define HOMESLAB_API
#endif

/* The process-wide counters (homeslab::Stats). Summed from per-thread
 * counters when asked: exact when no other thread is allocating. */
struct homeslab_stats {
    uint64_t live_blocks;       /* allocated and not yet freed */
    uint64_t allocs;            /* allocations so far */
    uint64_t frees;             /* frees so far (local and remote) */
    uint64_t mapped_bytes;      /* slab memory in use or cached warm */
    uint64_t peak_mapped_bytes; /* the highest mapped_bytes seen */
    uint64_t reserved_bytes;    /* address space held from the OS */
    uint64_t released_bytes;    /* bytes given back to the OS so far */
    uint64_t thread_heaps;      /* threads owning a heap */
    uint64_t remote_frees;      /* frees by a thread other than the owner */
    uint64_t held_blocks;       /* freed blocks held in threads' magazines */
    uint64_t corruption_events; /* corrupted freelist links detected */
    uint64_t double_frees;      /* double frees refused */
    uint64_t foreign_frees;     /* frees of pointers not ours, refused */
    uint64_t overflow_allocs;   /* allocations served by the shared tier */
    uint64_t large_blocks;      /* live large blocks (also in live_blocks) */
    uint64_t large_bytes;       /* usable bytes of the live large blocks */
};

/* Fills *out with a snapshot of the counters: 0, or -1 if out is NULL. */
HOMESLAB_API int homeslab_stats(struct homeslab_stats *out);

/* Prints the counters to stderr, one "homeslab: name value" line each,
 * without allocating (what HOMESLAB_SHOW_STATS=1 prints at exit). */
HOMESLAB_API void homeslab_print_stats(void);

/* Gives free memory back to the OS; returns the bytes released. */
HOMESLAB_API uint64_t homeslab_trim(void);

/* Frees and reallocs refused so far because the pointer was not a block
 * of the library (allocated before it was loaded, or not from a heap). */
HOMESLAB_API uint64_t homeslab_foreign_frees(void);

#undef HOMESLAB_API

#ifdef __cplusplus
}
#endif

#endif /* HOMESLAB_H */
