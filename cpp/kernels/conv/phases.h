// Internal: the zero-padded, stride-phase-split copy of the input that the direct convolutions read in
// place, compiled once per ISA (included by conv2d_body.h).
#pragma once

#include "../gemm/gemm_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Fills d[0:count] with input row `ih` of one channel plane, sampled at iw = iw0 + t * sw (zeros outside).
// NOTE: plain loops, not memcpy: segments are a few dozen floats, where a call costs more than the copy, and
// constant strides 1 and 2 let the compiler vectorize the gather.
inline void gather_row(float* __restrict d, index_t count, const float* __restrict plane, index_t H, index_t W,
                       index_t ih, index_t iw0, index_t sw) {
    if (ih < 0 || ih >= H) {
        for (index_t t = 0; t < count; ++t) d[t] = 0.f;
        return;
    }
    const float* row = plane + ih * W;
    // t in [t_lo, t_hi) lands inside [0, W) (no division for stride 1: segments are short, calls many)
    index_t t_lo, t_hi;
    if (sw == 1) {
        t_lo = imax(-iw0, 0);
        t_hi = imax(W - iw0, 0);
    } else {
        t_lo = iw0 >= 0 ? 0 : ceil_div(-iw0, sw);
        t_hi = iw0 >= W ? 0 : ceil_div(W - iw0, sw);
    }
    t_lo = imin(t_lo, count);
    t_hi = imax(t_lo, imin(t_hi, count));
    for (index_t t = 0; t < t_lo; ++t) d[t] = 0.f;
    const float* src = row + iw0;
    if (sw == 1) {
#pragma omp simd
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[t];
    } else if (sw == 2) {
#pragma omp simd
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[2 * t];
    } else {
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[t * sw];
    }
    for (index_t t = t_hi; t < count; ++t) d[t] = 0.f;
}

// Indirect convolution: the zero-padded input is split into stride_h x stride_w phase images of Hph x Wph,
// so that row k = (ci, ki, kj) of the im2col matrix is one contiguous run of a phase image, when output
// pixels are numbered q' = oh * Wph + ow. The microkernel then reads B in place through a table of row
// pointers: no packing. The Wph - OW extra columns per output row are computed and dropped.
struct PhaseGeometry {
    index_t Hph, Wph, plane, per_channel, N;  // N = OH * Wph columns of the GEMM
};

inline PhaseGeometry phase_geometry(const Conv2dShape& s) {
    PhaseGeometry g;
    g.Hph = s.oh + ((s.kh - 1) * s.dil_h) / s.stride_h;
    g.Wph = s.ow + ((s.kw - 1) * s.dil_w) / s.stride_w;
    g.plane = g.Hph * g.Wph;
    g.per_channel = s.stride_h * s.stride_w * g.plane;
    g.N = s.oh * g.Wph;
    return g;
}

// The input itself serves as its only phase (1x1, stride 1, no padding).
inline bool phases_are_input(const Conv2dShape& s) {
    return s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 && s.pad_l == 0 &&
           s.oh == s.h && s.ow == s.w;
}

// Whether phase `a` of a stride (row phase, or column phase) holds the input of any tap: a 1x1 filter with
// stride 2 reads only phase (0, 0), a quarter of the padded copy.
inline bool phase_used(index_t a, index_t taps, index_t dil, index_t stride) {
    for (index_t k = 0; k < taps && k < stride; ++k)
        if (k * dil % stride == a) return true;
    return false;
}

// dst[a][b][i][j] = plane[i * SH + a - PT][j * SW + b - PL], zero outside the input, for the phases (a, b) that
// some tap reads; the others are left unwritten.
void build_phases(const Conv2dShape& s, const PhaseGeometry& g, const float* __restrict plane, float* __restrict dst) {
    for (index_t a = 0; a < s.stride_h; ++a)
        for (index_t b = 0; b < s.stride_w; ++b) {
            if (!phase_used(a, s.kh, s.dil_h, s.stride_h) || !phase_used(b, s.kw, s.dil_w, s.stride_w)) continue;
            for (index_t i = 0; i < g.Hph; ++i) {
                float* d = dst + ((a * s.stride_w + b) * g.Hph + i) * g.Wph;
                gather_row(d, g.Wph, plane, s.h, s.w, i * s.stride_h + a - s.pad_t, b - s.pad_l, s.stride_w);
            }
        }
}

// Whether the direct path lays its GEMM columns out row by row (each output row starting a panel) rather than
// as blocks of the padded grid: when OW fills its vectors about as well as the Wph columns of a padded row.
inline bool columns_by_rows(const Conv2dShape& s, const PhaseGeometry& g) {
    return !phases_are_input(s) && ceil_div(s.ow, VL) * VL < g.Wph;
}

// The phase images of images [n_begin, n_begin + n_count) of x into dst, shared out among the threads of the
// enclosing parallel region (an orphaned omp for: every thread of the region must call it).
inline void build_phases_of_images(const Conv2dShape& s, const PhaseGeometry& g, const float* x, index_t n_begin,
                                   index_t n_count, float* dst) {
#pragma omp for schedule(static)
    for (index_t pl = 0; pl < n_count * s.c; ++pl)
        build_phases(s, g, x + (n_begin * s.c + pl) * s.h * s.w, dst + pl * g.per_channel);
}

// rows[k] = where row k = (ci, ki, kj) of the im2col matrix starts in the phase images at `base` (one image and
// group), for output columns numbered q' = oh * Wph + ow.
inline void phase_rows(const Conv2dShape& s, const PhaseGeometry& g, const float* base, index_t K, const float** rows) {
    // NOTE: divisions only per tap of the first channel (a table of K pointers is built for every GEMM task).
    const index_t taps = imin(K, s.kh * s.kw);
    for (index_t r = 0; r < taps; ++r) {
        const index_t rh = (r / s.kw) * s.dil_h, rw = (r % s.kw) * s.dil_w;
        const index_t phase = (rh % s.stride_h) * s.stride_w + rw % s.stride_w;
        rows[r] = base + phase * g.plane + (rh / s.stride_h) * g.Wph + rw / s.stride_w;
    }
    for (index_t k = taps; k < K; ++k) rows[k] = rows[k - taps] + g.per_channel;
}

// Whether the phase-split copy stays within a few times the image's input and output.
inline bool phases_fit(const Conv2dShape& s) {
    const PhaseGeometry g = phase_geometry(s);
    const double copy = double(s.c) * double(g.per_channel);
    return copy <= 4.0 * (double(s.c) * s.h * s.w + double(s.oc) * s.oh * s.ow) + double(1 << 20);
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
