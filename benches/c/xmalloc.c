/* xmalloc-test-shaped: producers allocate mixed-size blocks, consumers
 * free them (every free is of another thread's block), through
 * lock-protected batch queues. */
#include "common.h"

#define PAIRS 2
#define BATCH 256
#define QUEUE 64
static long PER = 2000000;

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void **batch[QUEUE];
    int head, tail, done;
};

static struct queue q[PAIRS];

static void *producer(void *arg) {
    struct queue *qq = arg;
    uint64_t s = (uintptr_t)arg | 1;
    for (long i = 0; i < PER / BATCH; i++) {
        void **b = malloc(BATCH * sizeof(void *));
        for (int j = 0; j < BATCH; j++) {
            uint64_t r = rng(&s);
            size_t n = (r % 16 == 0) ? 512 + r % 3500 : 8 + (r >> 8) % 248;
            char *p = malloc(n);
            p[0] = (char)r;
            b[j] = p;
        }
        pthread_mutex_lock(&qq->lock);
        while (qq->tail - qq->head == QUEUE) pthread_cond_wait(&qq->cond, &qq->lock);
        qq->batch[qq->tail++ % QUEUE] = b;
        pthread_cond_broadcast(&qq->cond);
        pthread_mutex_unlock(&qq->lock);
    }
    pthread_mutex_lock(&qq->lock);
    qq->done = 1;
    pthread_cond_broadcast(&qq->cond);
    pthread_mutex_unlock(&qq->lock);
    return NULL;
}

static void *consumer(void *arg) {
    struct queue *qq = arg;
    for (;;) {
        pthread_mutex_lock(&qq->lock);
        while (qq->tail == qq->head && !qq->done) pthread_cond_wait(&qq->cond, &qq->lock);
        if (qq->tail == qq->head) {
            pthread_mutex_unlock(&qq->lock);
            return NULL;
        }
        void **b = qq->batch[qq->head++ % QUEUE];
        pthread_cond_broadcast(&qq->cond);
        pthread_mutex_unlock(&qq->lock);
        for (int j = 0; j < BATCH; j++) free(b[j]);
        free(b);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) PER *= atoi(argv[1]);
    pthread_t p[PAIRS], c[PAIRS];
    double t0 = now();
    for (int i = 0; i < PAIRS; i++) {
        pthread_mutex_init(&q[i].lock, NULL);
        pthread_cond_init(&q[i].cond, NULL);
        pthread_create(&p[i], NULL, producer, &q[i]);
        pthread_create(&c[i], NULL, consumer, &q[i]);
    }
    for (int i = 0; i < PAIRS; i++) pthread_join(p[i], NULL), pthread_join(c[i], NULL);
    report("xmalloc", (double)PER * PAIRS, now() - t0);
    return 0;
}
