// Measures the FP32 FMA peak: times the ISA's register-only FMA loop (kernels/probe) on one or more threads.
#include <omp.h>

#include <chrono>
#include <cstdint>

#include "kernel_table.h"

namespace cnnfast {

double measure_fma_peak_gflops(int threads) {
    const auto& k = kernels();
    if (threads < 1) threads = 1;
    std::int64_t flops = 0;
    volatile float sink = k.fma_probe(1 << 16, &flops);  // warm up: clocks ramp, code paged in
    std::int64_t iterations = 1 << 18;
    double best = 0.0;
    for (int run = 0; run < 7; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        // NOTE: every thread runs the same loop; the time is that of the last to finish, so a thread that
        // waits for a busy core shows as a lower total.
#pragma omp parallel num_threads(threads)
        {
            std::int64_t f = 0;
            const float r = k.fma_probe(iterations, &f);
#pragma omp master
            {
                sink = r;
                flops = f;
            }
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rate = double(flops) * threads / seconds;
        if (seconds > 0.0 && rate > best) best = rate;
        if (seconds < 5e-3) iterations *= 2;  // runs of at least a few ms, so the clock's grain is negligible
    }
    (void)sink;
    return best / 1e9;
}

}  // namespace cnnfast
