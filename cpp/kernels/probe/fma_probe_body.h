// Internal: a loop of independent fused multiply-adds with no memory traffic, compiled once per ISA. The
// runtime times it to measure the machine's FP32 FMA peak (see cpp/runtime/fma_peak.cpp), the yardstick
// the benchmarks quote GEMM-bound kernels against.
#pragma once

#include "../simd.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {

// NOTE: 12 independent accumulators cover the FMA latency (4 cycles) times the FMA ports (2) with room to
// spare; fewer would measure latency, not throughput. The values stay bounded (x -> 0.999999 x + 1e-7).
float fma_probe(std::int64_t iterations, std::int64_t* flops) {
    constexpr int kAcc = 12;
    vf acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = vbroadcast(1e-3f * static_cast<float>(i + 1));
    const vf m = vbroadcast(0.999999f), a = vbroadcast(1e-7f);
    for (std::int64_t it = 0; it < iterations; ++it) {
        for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * m + a;  // no fast-math: nothing can be folded
    }
    vf sum = acc[0];
    for (int i = 1; i < kAcc; ++i) sum += acc[i];
    *flops = iterations * kAcc * VL * 2;
    float out = 0.f;
    for (int l = 0; l < VL; ++l) out += sum[l];
    return out;
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
