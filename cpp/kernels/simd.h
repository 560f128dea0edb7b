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
constexpr index_t kLineFloats = 64 / sizeof(float);  // a cache line

// Asks for the line `floats` past p into the caches; the address may lie past the array (a prefetch does not
// fault), so it is formed as an integer.
inline std::uintptr_t address_past(const float* p, index_t floats) {
    return reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(floats) * sizeof(float);
}
inline void prefetch_ahead(const float* p, index_t floats) {
    __builtin_prefetch(reinterpret_cast<const void*>(address_past(p, floats)), 0, 3);
}

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
inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }
inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }
inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
#if defined(__AVX2__) && !defined(__AVX512F__) && CNNFAST_VEC_BYTES == 32
// Lanes i with lo <= i < hi set (all bits), for the AVX2 masked loads and stores (which never touch the others).
inline __m256i lanes_between(index_t lo, index_t hi) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), idx),
                            _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(static_cast<int>(lo) - 1)));
}
#define CNNFAST_AVX2_MASKS 1
#endif
// The lanes of p whose `mask` lane is nonzero (all bits set, as vector comparisons give), the others `fill`;
// never reads a masked-off lane.
template <class VI>
inline vf vload_mask(const float* p, VI mask, float fill) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    const __mmask16 bits = _mm512_test_epi32_mask((__m512i)mask, (__m512i)mask);
    return (vf)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), bits, p);
#elif defined(CNNFAST_AVX2_MASKS)
    return (vf)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, (__m256i)mask), (__m256)mask);
#else
    vf v;
    for (int i = 0; i < VL; ++i) v[i] = mask[i] ? p[i] : fill;
    return v;
#endif
}
// The first n (0 <= n <= VL) lanes of p, the others `fill`; never reads past p + n.
inline vf vload_n(const float* p, index_t n, float fill) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    return (vf)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << n) - 1u), p);
#elif defined(CNNFAST_AVX2_MASKS)
    return vload_mask(p, lanes_between(0, n), fill);
#else
    vf v;
    for (int i = 0; i < VL; ++i) v[i] = i < n ? p[i] : fill;
    return v;
#endif
}
// row[c, c + VL) with the lanes outside columns [0, W) set to `fill`; never reads outside row[0, W).
inline vf vload_cols(const float* row, index_t c, index_t W, float fill) {
    if (c >= 0 && c + VL <= W) return vload(row + c);
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    const index_t lo = imax(-c, 0), hi = imin(W - c, VL);
    const unsigned bits = hi > lo ? ((1u << hi) - 1u) & ~((1u << lo) - 1u) : 0u;
    return (vf)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>(bits), row + c);
#elif defined(CNNFAST_AVX2_MASKS)
    return vload_mask(row + c, lanes_between(imax(-c, 0), imin(W - c, VL)), fill);
#else
    vf v;
    for (int i = 0; i < VL; ++i) v[i] = c + i >= 0 && c + i < W ? row[c + i] : fill;
    return v;
#endif
}
// Stores the first n (0 <= n <= VL) lanes of v to p.
inline void vstore_n(float* p, vf v, index_t n) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), (__m512)v);
#elif defined(CNNFAST_AVX2_MASKS)
    // NOTE: a whole vector is stored plainly and a shorter one lane by lane: AMD's cores run a masked store as
    // microcode, many times the cost of a store (3x3/2 max pooling on 64x112x112, 7 whole vectors a row, one
    // thread on an AMD EPYC Zen 3: 0.32 -> 0.21 ms).
    if (n == VL) return vstore(p, v);
    alignas(32) float lanes[VL];
    vstore(lanes, v);
    for (index_t i = 0; i < n; ++i) p[i] = lanes[i];
#else
    for (int i = 0; i < n; ++i) p[i] = v[i];
#endif
}
// max(a, b) that returns NaN when either is NaN (as PyTorch's max pooling does).
inline vf vmax_nan(vf a, vf b) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    // vmaxps returns its second operand when either is NaN, so only a's NaNs need keeping
    const __m512 x = (__m512)a;
    return (vf)_mm512_mask_max_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_ORD_Q), x, (__m512)b);
#elif defined(__AVX__) && CNNFAST_VEC_BYTES == 32
    const __m256 x = (__m256)a;
    return (vf)_mm256_blendv_ps(_mm256_max_ps(x, (__m256)b), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
#else
    return (b > a) | (b != b) ? b : a;
#endif
}
// Lanes 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the 2 * VL floats a:b.
inline void vdeinterleave(vf a, vf b, vf& even, vf& odd) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi me, mo;
    for (int i = 0; i < VL; ++i) {
        me[i] = 2 * i;
        mo[i] = 2 * i + 1;
    }
    even = __builtin_shuffle(a, b, me);
    odd = __builtin_shuffle(a, b, mo);
}
// Transposes the VL x VL floats whose rows are r[0], ..., r[VL - 1]: afterwards r[j][i] holds what r[i][j]
// held. Level H swaps the off-diagonal H x H blocks of every 2H x 2H block on the diagonal: log2(VL) levels of
// VL two-source shuffles (64 for 16 x 16, where moving the floats one by one takes 256 loads and stores).
template <int H>
inline void vtranspose_level(vf* r) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi lo, hi;
    for (int j = 0; j < VL; ++j) {
        lo[j] = (j & H) ? VL + j - H : j;
        hi[j] = (j & H) ? VL + j : j + H;
    }
#pragma GCC unroll 16
    for (int i = 0; i < VL; ++i)
        if (!(i & H)) {
            const vf a = r[i], b = r[i + H];
            r[i] = __builtin_shuffle(a, b, lo);
            r[i + H] = __builtin_shuffle(a, b, hi);
        }
}
inline void vtranspose(vf* r) {
    vtranspose_level<1>(r);
    vtranspose_level<2>(r);
    if constexpr (VL > 4) vtranspose_level<4>(r);
    if constexpr (VL > 8) vtranspose_level<8>(r);
}
inline vf vrelu(vf v) { return v < vf{} ? vf{} : v; }  // keeps NaN, as PyTorch does

// Lane masks, as vector comparisons give them (all bits set where true), and whether any lane is set.
typedef int vmask __attribute__((vector_size(kVecBytes)));
inline bool vany(vmask m) {
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
    return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#elif defined(__AVX__) && CNNFAST_VEC_BYTES == 32
    return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#else
    int any = 0;
    for (int i = 0; i < VL; ++i) any |= m[i];
    return any != 0;
#endif
}
// Lanes i with i < n set.
inline vmask vfirst_lanes(index_t n) {
    vmask idx;
    for (int i = 0; i < VL; ++i) idx[i] = i;
    return idx < static_cast<int>(n < VL ? n : VL);
}

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
    T* first() const { return reinterpret_cast<T*>(base); }  // the only one, when made for one thread
    std::size_t each, bytes;
    char* base;
};

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
