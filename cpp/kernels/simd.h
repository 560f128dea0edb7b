// Internal: the vector type a kernel body is written in. A per-ISA translation unit defines
// CNNFAST_ISA_NS (the namespace its kernels live in) and CNNFAST_VEC_BYTES (16, 32 or 64), is compiled
// with that ISA's flags, and includes a *_body.h header, which includes this file.
//
// NOTE: bodies use GCC/Clang vector extensions rather than intrinsics, so one source serves every width.
// They must not instantiate standard-library templates shared with other translation units (vector,
// min, max...): the linker keeps one copy of such code, and an AVX-512 copy would then run on CPUs
// without AVX-512. Helpers here are static, so each ISA gets its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cnnfast/cnnfast.h"
#include "cnnfast/runtime.h"

#ifndef CNNFAST_ISA_NS
#error "define CNNFAST_ISA_NS before including a kernel body"
#endif
#ifndef CNNFAST_VEC_BYTES
#error "define CNNFAST_VEC_BYTES before including a kernel body"
#endif

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

constexpr int kVecBytes = CNNFAST_VEC_BYTES;
constexpr int VL = kVecBytes / 4;  // floats per vector

typedef float vf __attribute__((vector_size(kVecBytes)));
typedef float vf_u __attribute__((vector_size(kVecBytes), aligned(4), may_alias));

inline vf vload(const float* p) { return *reinterpret_cast<const vf_u*>(p); }
inline void vstore(float* p, vf v) { *reinterpret_cast<vf_u*>(p) = v; }
// NOTE: not `vf{} + s` (0 + s is not s for s = -0, so an add stays) nor a lane loop (compiled as two halves).
inline vf vbroadcast(float s) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    return (vf)_mm512_set1_ps(s);
#elif defined(__AVX__) && CNNFAST_VEC_BYTES == 32
    return (vf)_mm256_set1_ps(s);
#elif defined(__SSE__) && CNNFAST_VEC_BYTES == 16
    return (vf)_mm_set1_ps(s);
#else
    vf v;
    for (int i = 0; i < VL; ++i) v[i] = s;
    return v;
#endif
}
inline vf vrelu(vf v) { return v < vf{} ? vf{} : v; }  // keeps NaN, as PyTorch does

inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }
inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }
inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline float relu1(float v) { return v < 0.f ? 0.f : v; }

// Scratch memory owned by one scope.
struct Scratch {
    explicit Scratch(std::size_t floats) : bytes(floats * sizeof(float)), p(static_cast<float*>(workspace_alloc(bytes))) {}
    ~Scratch() { workspace_free(p, bytes); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    std::size_t bytes;
    float* p;
};

// Scratch for each thread of a parallel region, allocated before it by the calling thread: an allocation
// failure inside a parallel region could not reach the caller as an exception.
template <class T>
struct PerThread {
    PerThread(int threads, std::size_t count_each)
        : each((count_each * sizeof(T) + 63) / 64 * 64),
          bytes(each * static_cast<std::size_t>(threads)),
          base(static_cast<char*>(workspace_alloc(bytes))) {}
    ~PerThread() { workspace_free(base, bytes); }
    PerThread(const PerThread&) = delete;
    PerThread& operator=(const PerThread&) = delete;
    T* get() const { return reinterpret_cast<T*>(base + each * static_cast<std::size_t>(omp_get_thread_num())); }
    std::size_t each, bytes;
    char* base;
};

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
