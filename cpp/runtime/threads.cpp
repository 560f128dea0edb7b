// Thread count. Kernels ask get_num_threads() and pass it to every parallel region, so the count set
// here holds for calls made from any Python thread (omp_set_num_threads alone is per calling thread).
#include "cnnfast/runtime.h"

#include <atomic>

#include <omp.h>

namespace cnnfast {

namespace {
std::atomic<int> g_threads{0};  // 0: follow OpenMP's own setting
}

void set_num_threads(int n) {
    g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
    if (n > 0) omp_set_num_threads(n);
}

int get_num_threads() {
    const int n = g_threads.load(std::memory_order_relaxed);
    if (n > 0) return n;
    const int omp = omp_get_max_threads();
    return omp > 0 ? omp : 1;
}

}  // namespace cnnfast
