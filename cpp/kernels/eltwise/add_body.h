// Internal: the residual add (+ReLU) and the ReLU gradient, float32, compiled once per ISA.
#pragma once

#include <omp.h>

#include "../simd.h"
#include "../parallel.h"
#include "runtime/kernel_table.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {

void add(index_t count, const float* a, const float* b, float* y, Activation act) {
    if (count == 0) return;
    // NOTE: below ~64K elements a parallel region costs more than it saves.
    const int threads = count < (1 << 16) ? 1 : get_num_threads();
    const bool relu = act == Activation::relu;
    parallel(threads, [&] {
        const index_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const index_t chunk = ceil_div(ceil_div(count, nt), 16) * 16;
        const index_t lo = imin(count, id * chunk), hi = imin(count, lo + chunk);
        if (relu) {
#pragma omp simd
            for (index_t i = lo; i < hi; ++i) {
                const float v = a[i] + b[i];
                y[i] = v < 0.f ? 0.f : v;
            }
        } else {
#pragma omp simd
            for (index_t i = lo; i < hi; ++i) y[i] = a[i] + b[i];
        }
    });
}

// dx = dy where y > 0, else 0: the gradient through a ReLU from its output (an add+ReLU passes it to both terms).
void relu_backward(index_t count, const float* dy, const float* y, float* dx) {
    if (count == 0) return;
    const int threads = count < (1 << 16) ? 1 : get_num_threads();
    parallel_for(threads, count, [&](index_t i) { dx[i] = y[i] > 0.f ? dy[i] : 0.f; });
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
