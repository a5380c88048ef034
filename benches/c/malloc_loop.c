/* The C library's per-call cost, for an A/B of two builds under
 * LD_PRELOAD (docs/BENCHMARKS.md, "The global allocator"):
 *   malloc_loop [iterations]
 * Each iteration: one malloc/free pair of 32 bytes, then 64 blocks of
 * 16-1024 bytes allocated and freed in allocation order. Prints the
 * nanoseconds per call (malloc or free). Under
 * `valgrind --tool=cachegrind --cache-sim=no`, the instructions per call
 * are the total over the calls (2 + 128 per iteration). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    void *volatile keep;
    void *blocks[64];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iters; i++) {
        keep = malloc(32);
        free(keep);
        for (int k = 0; k < 64; k++) blocks[k] = malloc(16 + (size_t)((i + k * 37) % 1009));
        for (int k = 0; k < 64; k++) free(blocks[k]);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.2f ns per call\n", ns / ((double)iters * 130));
    return 0;
}
