// Internal: parallel regions that cost nothing on one thread, compiled once per ISA (as the kernels that use
// them).
#pragma once

#include <omp.h>

#include "simd.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// f() run by each thread of a team of `threads`, as `#pragma omp parallel num_threads(threads)` runs its
// block; on one thread, outside any parallel region, f() called directly. f may hold orphaned `omp for` and
// `omp barrier` constructs: called directly, they run as on a team of one (thread 0 of 1). Inside an active
// region, one thread still gets a team of its own, so that they bind to it rather than to the outer team.
// NOTE: GNU OpenMP starts a team for num_threads(1) as for more threads, and ends it with a futex wake (a
// system call): 0.80 us per empty region against 4 ns for the direct call (AMD EPYC, Zen 3, KVM guest). Every
// call on one thread paid it once per region; so did the small calls that choose one thread whatever the
// setting (an add, a global pooling or an IoU matrix under their thresholds).
template <class F>
inline void parallel(int threads, F&& f) {
    if (threads <= 1 && !omp_in_parallel()) {
        f();
        return;
    }
#pragma omp parallel num_threads(threads)
    f();
}

// f(i) for each i in [0, n), the iterations split among the team in equal runs (`omp for schedule(static)`):
// the parallel region of a single loop.
template <class F>
inline void parallel_for(int threads, index_t n, F&& f) {
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t i = 0; i < n; ++i) f(i);
    });
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
