// Thread count. Kernels ask get_num_threads() and pass it to every parallel region, so the count set
// here holds for calls made from any Python thread (omp_set_num_threads alone is per calling thread).
#include "cnnfast/runtime.h"

#include <atomic>

#include <omp.h>
#if __has_include(<pthread.h>)
#include <pthread.h>
#define CNNFAST_HAVE_PTHREAD_ATFORK 1
#endif

namespace cnnfast {

namespace {
std::atomic<int> g_threads{0};  // 0: follow OpenMP's own setting
std::atomic<bool> g_forked_child{false};

#ifdef CNNFAST_HAVE_PTHREAD_ATFORK
void mark_forked_child() { g_forked_child.store(true, std::memory_order_relaxed); }
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, &mark_forked_child);
#endif
}  // namespace

void set_num_threads(int n) {
    g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
    if (n > 0) omp_set_num_threads(n);
}

int get_num_threads() {
    // NOTE: GNU OpenMP cannot start a new thread pool in the child of a fork() once the parent had one: the
    // child's first parallel region would wait forever. A forked child runs the kernels on one thread.
    if (g_forked_child.load(std::memory_order_relaxed)) return 1;
    const int n = g_threads.load(std::memory_order_relaxed);
    if (n > 0) return n;
    const int omp = omp_get_max_threads();
    return omp > 0 ? omp : 1;
}

}  // namespace cnnfast
