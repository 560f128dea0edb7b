// Thread count. Kernels ask get_num_threads() and pass it to every parallel region, so the count set
// here holds for calls made from any Python thread (omp_set_num_threads alone is per calling thread).
//
// NOTE: GNU OpenMP's thread pool does not survive fork(): a parallel region in the child of a process that
// had used it waits forever for threads that no longer exist. A child of fork therefore runs the kernels on
// one thread (a team of one needs no pool), which keeps multiprocessing's default start method working.
#include "cnnfast/runtime.h"

#include <atomic>

#include <omp.h>
#include <pthread.h>

namespace cnnfast {

namespace {
std::atomic<int> g_threads{0};  // 0: follow OpenMP's own setting
std::atomic<bool> g_forked{false};

void on_fork_child() { g_forked.store(true, std::memory_order_relaxed); }

const bool g_atfork_registered = [] { return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0; }();
}  // namespace

void set_num_threads(int n) {
    g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
    if (n > 0 && !g_forked.load(std::memory_order_relaxed)) omp_set_num_threads(n);
}

int get_num_threads() {
    (void)g_atfork_registered;
    if (g_forked.load(std::memory_order_relaxed)) return 1;
    const int n = g_threads.load(std::memory_order_relaxed);
    if (n > 0) return n;
    const int omp = omp_get_max_threads();
    return omp > 0 ? omp : 1;
}

bool in_forked_child() { return g_forked.load(std::memory_order_relaxed); }

}  // namespace cnnfast
