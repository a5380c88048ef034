/* larson-shaped: threads keep live sets of mixed-size blocks and replace
 * random members; after a round each thread starts a successor that
 * takes its set over and exits (threads come and go, frees are of blocks
 * other threads allocated). */
#include "common.h"

#define THREADS 4
#define SLOTS 4000
#define PER_ROUND 50000
static int ROUNDS = 20;

struct set {
    void *slot[SLOTS];
    uint64_t seed;
    int round;
    long ops;
};

static size_t size_of_r(uint64_t r) {
    return (r % 10 < 8) ? 8 + (r >> 8) % 120 : 128 + (r >> 8) % 900;
}

static void *run(void *arg) {
    struct set *s = arg;
    for (int i = 0; i < PER_ROUND; i++) {
        uint64_t r = rng(&s->seed);
        int k = (r >> 20) % SLOTS;
        free(s->slot[k]);
        size_t n = size_of_r(r);
        char *p = malloc(n);
        p[0] = (char)r;
        p[n - 1] = (char)k;
        s->slot[k] = p;
    }
    s->ops += PER_ROUND;
    if (++s->round < ROUNDS) {
        pthread_t next;
        pthread_create(&next, NULL, run, s);
        pthread_detach(next);
        return NULL;
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc > 1) ROUNDS = atoi(argv[1]) * 20;
    struct set *sets[THREADS];
    for (int t = 0; t < THREADS; t++) {
        sets[t] = calloc(1, sizeof(struct set));
        sets[t]->seed = 0x9e3779b97f4a7c15ull * (t + 1);
        for (int k = 0; k < SLOTS; k++) sets[t]->slot[k] = malloc(size_of_r(rng(&sets[t]->seed)));
    }
    double t0 = now();
    pthread_t th[THREADS];
    /* Each chain of successors ends by setting round = ROUNDS; wait by
     * polling the shared counter (the successors are detached). */
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, run, sets[t]), pthread_detach(th[t]);
    for (;;) {
        int done = 1;
        for (int t = 0; t < THREADS; t++) done &= __atomic_load_n(&sets[t]->round, __ATOMIC_ACQUIRE) >= ROUNDS;
        if (done) break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    double secs = now() - t0;
    long ops = 0;
    for (int t = 0; t < THREADS; t++) ops += sets[t]->ops;
    report("larson", ops, secs);
    return 0;
}
