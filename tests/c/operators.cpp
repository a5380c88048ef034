// Every replaceable operator new and delete under the library: each is the
// library's own definition (dladdr names the object that defines it), each
// allocates through homeslab (the library's allocation count grows, blocks
// are usable and aligned as asked), each delete frees (live blocks come
// back to where they were), and a request no allocator can serve throws
// std::bad_alloc (nothrow: returns null) through the C++ runtime.
// Prints "ALL OK" at the end; any failed check exits 1 with a line.

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#define HOMESLAB_WEAK
#include "homeslab.h"

static int failures = 0;

#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond)) {                                               \
            printf("FAILED line %d: %s\n", __LINE__, #cond);         \
            failures++;                                              \
        }                                                            \
    } while (0)

static struct homeslab_stats stats() {
    struct homeslab_stats s;
    if (!homeslab_stats || homeslab_stats(&s) != 0) {
        printf("FAILED: homeslab_stats\n");
        exit(1);
    }
    return s;
}

// The object that defines `name` is the library (its path names it).
static void defined_here(const char *name) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!sym || !dladdr(sym, &info) || !info.dli_fname ||
        !strstr(info.dli_fname, "homeslab_malloc")) {
        printf("FAILED: %s is not the library's (%s)\n", name,
               sym && dladdr(sym, &info) ? info.dli_fname : "not found");
        failures++;
    }
}

// Fills `n` bytes at `p` with a pattern of `seed` and checks it back.
static void stamp_and_check(void *p, size_t n, unsigned seed) {
    unsigned char *b = (unsigned char *)p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed * 31 + i);
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed * 31 + i)) {
            printf("FAILED: block %u byte %zu\n", seed, i);
            failures++;
            return;
        }
}

struct alignas(256) Wide {
    unsigned char bytes[256];
};

int main() {
    static const char *const names[] = {
        "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "_ZnamSt11align_val_tRKSt9nothrow_t", "_ZdlPv", "_ZdaPv", "_ZdlPvm",
        "_ZdaPvm", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
        "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t",
        "_ZdaPvSt11align_val_tRKSt9nothrow_t"};
    for (const char *n : names) defined_here(n);

    struct homeslab_stats before = stats();
    const std::align_val_t a256 = std::align_val_t(256);
    const std::align_val_t a4096 = std::align_val_t(4096);
    void *p[12];
    p[0] = ::operator new(24);
    p[1] = ::operator new[](1000);
    p[2] = ::operator new(0);
    p[3] = ::operator new(40, std::nothrow);
    p[4] = ::operator new[](3000, std::nothrow);
    p[5] = ::operator new(100, a256);
    p[6] = ::operator new[](5000, a4096);
    p[7] = ::operator new(64, a256, std::nothrow);
    p[8] = ::operator new[](70000, a4096, std::nothrow);
    p[9] = new Wide;
    p[10] = new Wide[3];
    p[11] = ::operator new(1 << 20);
    const size_t sizes[12] = {24, 1000, 0, 40, 3000, 100, 5000, 64, 70000, 256, 768, 1 << 20};
    for (int i = 0; i < 12; i++) {
        CHECK(p[i] != nullptr);
        stamp_and_check(p[i], sizes[i], (unsigned)i);
    }
    CHECK(p[2] != p[0] && p[2] != p[1]);
    CHECK((uintptr_t)p[5] % 256 == 0 && (uintptr_t)p[7] % 256 == 0);
    CHECK((uintptr_t)p[6] % 4096 == 0 && (uintptr_t)p[8] % 4096 == 0);
    CHECK((uintptr_t)p[9] % 256 == 0 && (uintptr_t)p[10] % 256 == 0);
    struct homeslab_stats mid = stats();
    CHECK(mid.allocs - before.allocs >= 12);
    CHECK(mid.live_blocks - before.live_blocks == 12);

    ::operator delete(p[0]);
    ::operator delete[](p[1]);
    ::operator delete(p[2], (size_t)0);
    ::operator delete(p[3], std::nothrow);
    ::operator delete[](p[4], std::nothrow);
    ::operator delete(p[5], (size_t)100, a256);
    ::operator delete[](p[6], a4096);
    ::operator delete(p[7], a256, std::nothrow);
    ::operator delete[](p[8], (size_t)70000, a4096);
    delete (Wide *)p[9];
    delete[] (Wide *)p[10];
    ::operator delete[](::operator new[](8, a256), a256, std::nothrow);
    ::operator delete(p[11], (size_t)(1 << 20));
    struct homeslab_stats after = stats();
    CHECK(after.live_blocks == before.live_blocks);
    CHECK(after.foreign_frees == before.foreign_frees);
    CHECK(after.double_frees == before.double_frees);

    // No allocator serves this: the C++ runtime's handling takes over.
    const size_t huge = SIZE_MAX / 2;
    bool threw = false;
    try {
        void *q = ::operator new(huge);
        ::operator delete(q);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
    threw = false;
    try {
        void *q = ::operator new[](huge, a4096);
        ::operator delete[](q, a4096);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, a256, std::nothrow) == nullptr);

    if (failures) return 1;
    printf("ALL OK\n");
    return 0;
}
