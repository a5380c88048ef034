/* include/homeslab.h: each entry point called and checked, and the
 * environment options' effects (run under LD_PRELOAD by tests/c_malloc.rs).
 *   header          the entry points; prints "ALL OK"
 *   refuse N        N frees of a foreign pointer, one double free, one
 *                   realloc of the foreign pointer
 *   purge           prints the bytes released by a freed 1 MiB block left
 *                   idle for 300 ms (released_bytes before and after)
 *   flags           prints the flags of the mapping that holds a 1 MiB
 *                   block (its VmFlags line in /proc/self/smaps) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Weak: the program links without the library; run without it, it fails
 * the first check. */
#define HOMESLAB_WEAK
#include "homeslab.h"

#define CHECK(c)                                                        \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #c);      \
            exit(1);                                                    \
        }                                                               \
    } while (0)

static char not_ours_buf[256];
/* Through volatile pointers, so that the compiler neither sees the bad
 * frees nor warns of them. */
static char *volatile not_ours = not_ours_buf + 16;

static void free_twice(void *p) {
    void *volatile again = p;
    free(p);
    free(again);
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int header(void) {
    struct homeslab_stats a, b, c;
    CHECK(homeslab_stats && homeslab_print_stats && homeslab_trim && homeslab_foreign_frees);
    CHECK(homeslab_stats(NULL) == -1);
    CHECK(homeslab_stats(&a) == 0);
    enum { N = 1000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(24 + i % 200);
        CHECK(blocks[i] != NULL);
    }
    void *big = malloc(4 << 20);
    CHECK(big != NULL);
    memset(big, 1, 4 << 20);
    CHECK(homeslab_stats(&b) == 0);
    CHECK(b.allocs >= a.allocs + N + 1);
    CHECK(b.live_blocks >= a.live_blocks + N + 1);
    CHECK(b.large_blocks >= a.large_blocks + 1);
    CHECK(b.large_bytes >= a.large_bytes + (4 << 20));
    CHECK(b.mapped_bytes > 0 && b.reserved_bytes >= b.mapped_bytes);
    CHECK(b.peak_mapped_bytes >= b.mapped_bytes);
    CHECK(b.thread_heaps >= 1);
    for (int i = 0; i < N; i++) free(blocks[i]);
    free(big);
    CHECK(homeslab_stats(&c) == 0);
    CHECK(c.frees >= b.frees + N + 1);
    CHECK(c.live_blocks + N + 1 <= b.live_blocks);

    /* A foreign pointer: refused, counted by both entry points. */
    uint64_t f0 = homeslab_foreign_frees();
    free(not_ours);
    CHECK(homeslab_foreign_frees() == f0 + 1);
    CHECK(homeslab_stats(&c) == 0 && c.foreign_frees == f0 + 1);

    /* A double free: refused and counted. */
    free_twice(malloc(40));
    CHECK(homeslab_stats(&a) == 0 && a.double_frees == c.double_frees + 1);

    /* Trim gives the freed memory back: released_bytes grows by what it
     * says. */
    uint64_t before = a.released_bytes;
    uint64_t got = homeslab_trim();
    CHECK(homeslab_stats(&a) == 0 && a.released_bytes >= before + got);
    CHECK(homeslab_trim() == 0 || 1); /* a second one is fine */
    homeslab_print_stats();
    printf("ALL OK\n");
    return 0;
}

static int refuse(int n) {
    for (int i = 0; i < n; i++) free(not_ours);
    free_twice(malloc(40));
    CHECK(realloc(not_ours, 100) == NULL);
    printf("refused %d\n", n + 2);
    return 0;
}

static int purge(void) {
    struct homeslab_stats a, b;
    void *big = malloc(1 << 20);
    CHECK(big != NULL);
    memset(big, 1, 1 << 20);
    free(big);
    CHECK(homeslab_stats(&a) == 0);
    sleep_ms(300);
    /* The idle release is checked on the next large operation. */
    void *again = malloc(2 << 20);
    CHECK(again != NULL);
    free(again);
    CHECK(homeslab_stats(&b) == 0);
    printf("released %llu\n", (unsigned long long)(b.released_bytes - a.released_bytes));
    return 0;
}

static int flags(void) {
    char *big = malloc(1 << 20);
    CHECK(big != NULL);
    uintptr_t at = (uintptr_t)big;
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL);
    char line[512];
    int inside = 0, found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            inside = lo <= at && at < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            printf("%s", line);
            found = 1;
        }
    }
    fclose(f);
    free(big);
    CHECK(found);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "refuse") == 0) return refuse(atoi(argv[2]));
    if (argc > 1 && strcmp(argv[1], "purge") == 0) return purge();
    if (argc > 1 && strcmp(argv[1], "flags") == 0) return flags();
    return header();
}
