// Measures the FP32 FMA peak of one core: times the ISA's register-only FMA loop (kernels/probe).
#include <chrono>
#include <cstdint>

#include "kernel_table.h"

namespace cnnfast {

double measure_fma_peak_gflops() {
    const auto& k = kernels();
    std::int64_t flops = 0;
    volatile float sink = k.fma_probe(1 << 16, &flops);  // warm up: clocks ramp, code paged in
    std::int64_t iterations = 1 << 18;
    double best = 0.0;
    for (int run = 0; run < 7; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        sink = k.fma_probe(iterations, &flops);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (seconds > 0.0 && flops / seconds > best) best = flops / seconds;
        if (seconds < 5e-3) iterations *= 2;  // runs of at least a few ms, so the clock's grain is negligible
    }
    (void)sink;
    return best / 1e9;
}

}  // namespace cnnfast
