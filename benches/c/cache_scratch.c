/* cache-scratch-shaped: the main thread allocates one small object per
 * worker and hands it over; each worker frees it, then repeatedly
 * allocates an object of the same size and writes it hard. An allocator
 * that hands two threads pieces of one cache line (false sharing) is
 * slow here. */
#include "common.h"

#define THREADS 2
#define OBJ 8
static long ITER = 2000, REPS = 20000;

static void *work(void *arg) {
    char *obj = arg;
    free(obj);
    for (long i = 0; i < ITER; i++) {
        volatile char *p = malloc(OBJ);
        for (long r = 0; r < REPS; r++)
            for (int j = 0; j < OBJ; j++) p[j] = (char)(p[j] + 1);
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) ITER *= atoi(argv[1]);
    char *objs[THREADS];
    for (int t = 0; t < THREADS; t++) objs[t] = malloc(OBJ);
    double t0 = now();
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, work, objs[t]);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    /* ops: bytes written, summed over the threads */
    report("cache-scratch", (double)ITER * REPS * OBJ * THREADS, now() - t0);
    return 0;
}
