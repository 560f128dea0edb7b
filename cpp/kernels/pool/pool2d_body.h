// Internal: max / average pooling and global average pooling, float32 NCHW, compiled once per ISA.
#pragma once

#include <omp.h>

#include "../simd.h"
#include "runtime/kernel_table.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

// One plane, separably: the rows of each window are reduced into `tmp` (a padded row of Wext columns), then
// the columns, both as long vectorizable loops. Windows are clipped to the input (max) or divided by the
// forward's divisor (avg). Wext = (OW - 1) * SW + KW.
// even[i] = t[2i], odd[i] = t[2i + 1] for 2i (+1) < n, with vector shuffles.
inline void deinterleave2(const float* __restrict t, index_t n, float* __restrict even, float* __restrict odd) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi me, mo;
    for (int i = 0; i < VL; ++i) {
        me[i] = 2 * i;
        mo[i] = 2 * i + 1;
    }
    index_t i = 0;
    for (; 2 * i + 2 * VL <= n; i += VL) {
        const vf a = vload(t + 2 * i), b = vload(t + 2 * i + VL);
        vstore(even + i, __builtin_shuffle(a, b, me));
        vstore(odd + i, __builtin_shuffle(a, b, mo));
    }
    for (; 2 * i < n; ++i) {
        even[i] = t[2 * i];
        if (2 * i + 1 < n) odd[i] = t[2 * i + 1];
    }
}

// tmp holds Wext floats, cols OW, even and odd Wext / 2 + 1 each.
template <PoolKind KIND>
void pool_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp, float* __restrict tmp,
                float* __restrict cols, float* __restrict even, float* __restrict odd) {
    const index_t H = s.h, W = s.w, SW = s.stride_w, KW = s.kw, PW = s.pad_w;
    const index_t wext = (s.ow - 1) * SW + KW;
    const float identity = KIND == PoolKind::max ? -__builtin_inff() : 0.f;
    if (KIND == PoolKind::avg)
        for (index_t ow = 0; ow < s.ow; ++ow) {
            const index_t w0 = ow * SW - PW;
            cols[ow] = static_cast<float>(s.count_include_pad ? imin(w0 + KW, W + PW) - w0 : imin(w0 + KW, W) - imax(w0, 0));
        }
    const index_t lo = imin(PW, wext), hi = imin(PW + W, wext);  // tmp columns backed by the input
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const index_t h0 = oh * s.stride_h - s.pad_h;
        const index_t hs = imax(h0, 0), he = imin(h0 + s.kh, H);
        for (index_t j = 0; j < lo; ++j) tmp[j] = identity;
        for (index_t j = hi; j < wext; ++j) tmp[j] = identity;
        if (hs >= he) {
            for (index_t j = lo; j < hi; ++j) tmp[j] = identity;
        } else {
            const float* x0 = xp + hs * W - PW;
            index_t ih = hs + 1;
            if (KIND == PoolKind::max && he - hs >= 3) {  // three rows in one pass
                const float *x1 = x0 + W, *x2 = x1 + W;
#pragma omp simd
                for (index_t j = lo; j < hi; ++j) tmp[j] = max_nan(max_nan(x0[j], x1[j]), x2[j]);
                ih = hs + 3;
            } else {
#pragma omp simd
                for (index_t j = lo; j < hi; ++j) tmp[j] = x0[j];
            }
            for (; ih < he; ++ih) {
                const float* xr = xp + ih * W - PW;
                if (KIND == PoolKind::max) {
#pragma omp simd
                    for (index_t j = lo; j < hi; ++j) tmp[j] = max_nan(tmp[j], xr[j]);
                } else {
#pragma omp simd
                    for (index_t j = lo; j < hi; ++j) tmp[j] += xr[j];
                }
            }
        }
        float* yr = yp + oh * s.ow;
        for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = identity;
        // Stride 2: split tmp into its even and odd columns, so every tap is a contiguous run.
        const float* src = tmp;
        index_t step = SW;
        if (SW == 2) {
            deinterleave2(tmp, wext, even, odd);
            step = 1;
        }
        for (index_t kj = 0; kj < KW; ++kj) {
            const float* t = SW == 2 ? ((kj & 1) ? odd : even) + kj / 2 : src + kj;
            if (KIND == PoolKind::max) {
                if (step == 1) {
#pragma omp simd
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = max_nan(yr[ow], t[ow]);
                } else {
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = max_nan(yr[ow], t[ow * step]);
                }
            } else {
                if (step == 1) {
#pragma omp simd
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] += t[ow];
                } else {
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] += t[ow * step];
                }
            }
        }
        if (KIND == PoolKind::avg) {
            const float rows = static_cast<float>(s.count_include_pad ? imin(h0 + s.kh, H + s.pad_h) - h0 : he - hs);
            for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] /= rows * cols[ow];
        }
    }
}

// One plane, window by window, each clipped to the input: for kernels far wider than the image.
void pool_plane_windows(PoolKind kind, const Pool2dShape& s, const float* __restrict xp, float* __restrict yp) {
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const index_t h0 = oh * s.stride_h - s.pad_h, hs = imax(h0, 0), he = imin(h0 + s.kh, s.h);
        for (index_t ow = 0; ow < s.ow; ++ow) {
            const index_t w0 = ow * s.stride_w - s.pad_w, ws = imax(w0, 0), we = imin(w0 + s.kw, s.w);
            float acc = kind == PoolKind::max ? -__builtin_inff() : 0.f;
            for (index_t ih = hs; ih < he; ++ih)
                for (index_t iw = ws; iw < we; ++iw) {
                    const float v = xp[ih * s.w + iw];
                    acc = kind == PoolKind::max ? max_nan(acc, v) : acc + v;
                }
            if (kind == PoolKind::avg) {
                const double count = s.count_include_pad
                                         ? double(imin(h0 + s.kh, s.h + s.pad_h) - h0) * double(imin(w0 + s.kw, s.w + s.pad_w) - w0)
                                         : double(he - hs) * double(we - ws);
                acc = count > 0 ? static_cast<float>(acc / count) : 0.f;
            }
            yp[oh * s.ow + ow] = acc;
        }
    }
}

// 2x2 stride 2 without padding (VGG): rows pairwise, vectorizable.
// Even width, no ceil_mode column: pairs never straddle rows, so the horizontal pass runs over the whole
// plane at once (long vectors however narrow the image), then rows are maxed pairwise. pairs: H*W/2 floats.
void max_pool_2x2s2_even(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp,
                         float* __restrict pairs, float* __restrict odd) {
    const index_t half = s.w / 2, n = s.h * s.w;
    deinterleave2(xp, n, pairs, odd);
#pragma omp simd
    for (index_t i = 0; i < n / 2; ++i) pairs[i] = max_nan(pairs[i], odd[i]);
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const float* a = pairs + (2 * oh) * half;
        const float* b = a + half;
        float* yr = yp + oh * s.ow;
#pragma omp simd
        for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = max_nan(a[ow], b[ow]);
    }
}

void max_pool_2x2s2_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp) {
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const float* r0 = xp + (2 * oh) * s.w;
        const float* r1 = r0 + s.w;
        float* yr = yp + oh * s.ow;
        // ceil_mode may add a last column whose window holds one input column
        const index_t full = imin(s.ow, s.w / 2);
#pragma omp simd
        for (index_t ow = 0; ow < full; ++ow) {
            const float a = max_nan(r0[2 * ow], r0[2 * ow + 1]);
            const float b = max_nan(r1[2 * ow], r1[2 * ow + 1]);
            yr[ow] = max_nan(a, b);
        }
        for (index_t ow = full; ow < s.ow; ++ow) yr[ow] = max_nan(r0[2 * ow], r1[2 * ow]);
    }
}

inline float max3(float a, float b, float c) { return max_nan(max_nan(a, b), c); }

// 3x3 max pooling with stride 1 and padding 1 (GoogLeNet's pool branches), or stride 2 and padding 0 or 1
// on an even width (GoogLeNet's and ResNet's downsampling): separable passes over the whole plane at once,
// the horizontal one into hm, so that small planes (7x7 to 28x28) run a few long vector loops
// instead of several short loops per row. A pass over the whole plane lets the first and last columns of a
// row read their neighbours in the adjacent rows; those columns are recomputed after it. Windows are clipped
// to the input, as with -inf padding. Scratch: hm (H x W) and, for stride 2, even and odd (H x W / 2 + 1).
inline bool max_pool_3x3_applies(const Pool2dShape& s) {
    if (s.kh != 3 || s.kw != 3 || s.stride_h != s.stride_w || s.pad_h != s.pad_w || s.h < 2 || s.w < 2) return false;
    if (s.stride_h == 1) return s.pad_h == 1 && s.oh == s.h && s.ow == s.w;
    return s.stride_h == 2 && s.pad_h <= 1 && s.w % 2 == 0;
}

void max_pool_3x3_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp, float* __restrict hm,
                        float* __restrict even, float* __restrict odd) {
    const index_t H = s.h, W = s.w, OH = s.oh, OW = s.ow, P = s.pad_h, S = s.stride_h;
    index_t ld = W;  // row stride of hm
    if (S == 1) {
        const index_t n = H * W;
#pragma omp simd
        for (index_t k = 1; k < n - 1; ++k) hm[k] = max3(xp[k - 1], xp[k], xp[k + 1]);
        for (index_t i = 0; i < H; ++i) {
            const float* r = xp + i * W;
            hm[i * W] = max_nan(r[0], r[1]);
            hm[i * W + W - 1] = max_nan(r[W - 2], r[W - 1]);
        }
    } else {
        // hm[i][ow] for ow < W / 2; OW is W / 2 - 1, W / 2, or W / 2 + 1 (ceil_mode with padding 1: a last
        // window holding column W - 1 alone, handled at the end).
        const index_t wh = W / 2, n = H * wh;
        ld = wh;
        deinterleave2(xp, H * W, even, odd);  // row i of even / odd: wh entries
        if (P == 0) {  // columns 2ow, 2ow + 1, 2ow + 2
#pragma omp simd
            for (index_t k = 0; k < n - 1; ++k) hm[k] = max3(even[k], odd[k], even[k + 1]);
            for (index_t i = 0; i < H; ++i) hm[i * wh + wh - 1] = max_nan(even[i * wh + wh - 1], odd[i * wh + wh - 1]);
        } else {  // columns 2ow - 1, 2ow, 2ow + 1
#pragma omp simd
            for (index_t k = 1; k < n; ++k) hm[k] = max3(odd[k - 1], even[k], odd[k]);
            for (index_t i = 0; i < H; ++i) hm[i * wh] = max_nan(even[i * wh], odd[i * wh]);
        }
    }
    const index_t cols = imin(OW, ld);
    for (index_t oh = 0; oh < OH; ++oh) {
        const index_t r0 = oh * S - P, lo = imax(r0, 0), hi = imin(r0 + 3, H);
        float* y = yp + oh * OW;
        const float* a = hm + lo * ld;
        if (hi - lo == 3) {
            const float *b = a + ld, *c = b + ld;
#pragma omp simd
            for (index_t j = 0; j < cols; ++j) y[j] = max3(a[j], b[j], c[j]);
        } else if (hi - lo == 2) {
            const float* b = a + ld;
#pragma omp simd
            for (index_t j = 0; j < cols; ++j) y[j] = max_nan(a[j], b[j]);
        } else {
            for (index_t j = 0; j < cols; ++j) y[j] = a[j];
        }
        if (OW > ld) {  // the last column's window: input column W - 1 of rows [lo, hi)
            float m = -__builtin_inff();
            for (index_t i = lo; i < hi; ++i) m = max_nan(m, xp[i * W + W - 1]);
            y[OW - 1] = m;
        }
    }
}

}  // namespace

void pool2d(PoolKind kind, const Pool2dShape& s, const float* x, float* y) {
    const index_t planes = s.n * s.c;
    if (planes == 0 || s.oh == 0 || s.ow == 0) return;
    const bool fast22 = kind == PoolKind::max && s.kh == 2 && s.kw == 2 && s.stride_h == 2 && s.stride_w == 2 &&
                        s.pad_h == 0 && s.pad_w == 0 && 2 * s.oh <= s.h;
    const int threads = planes * s.h * s.w < (1 << 15) ? 1 : get_num_threads();
    const index_t wext = (s.ow - 1) * s.stride_w + s.kw;
    // NOTE: the separable passes need a row as wide as the padded windows; kernels far wider than the image
    // (allowed: the padding may be half the kernel) take the per-window path instead.
    const bool separable = wext <= 4 * s.w + 1024;
    // NOTE: on large planes the row-pair loop reads each input once; the whole-plane passes pay off on small ones.
    const bool even22 = fast22 && s.w % 2 == 0 && 2 * s.ow == s.w && s.w <= 64;
    const bool fast33 = kind == PoolKind::max && max_pool_3x3_applies(s);
    const index_t half = wext / 2 + 1;
    const index_t scratch = even22   ? s.h * s.w + 2
                            : fast33 ? 2 * s.h * s.w + 2
                            : separable ? wext + s.ow + 2 * half
                                        : 0;
    PerThread<float> tmps(threads, static_cast<std::size_t>(scratch));
#pragma omp parallel num_threads(threads)
    {
        float* const tmp = tmps.get();
        float *cols = tmp + wext, *even = cols + s.ow, *odd = even + half;
#pragma omp for schedule(static)
        for (index_t p = 0; p < planes; ++p) {
            const float* xp = x + p * s.h * s.w;
            float* yp = y + p * s.oh * s.ow;
            if (even22)
                max_pool_2x2s2_even(s, xp, yp, tmp, tmp + s.h * s.w / 2 + 1);
            else if (fast22)
                max_pool_2x2s2_plane(s, xp, yp);
            else if (fast33)
                max_pool_3x3_plane(s, xp, yp, tmp, tmp + s.h * s.w, tmp + s.h * s.w + s.h * s.w / 2 + 1);
            else if (!separable)
                pool_plane_windows(kind, s, xp, yp);
            else if (kind == PoolKind::max)
                pool_plane<PoolKind::max>(s, xp, yp, tmp, cols, even, odd);
            else
                pool_plane<PoolKind::avg>(s, xp, yp, tmp, cols, even, odd);
        }
    }
}

void global_avg_pool(index_t planes, index_t hw, const float* x, float* y) {
    if (planes == 0) return;
    const int threads = get_num_threads();
    const float inv = hw > 0 ? 1.0f / static_cast<float>(hw) : 0.f;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
        const float* xp = x + p * hw;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (index_t i = 0; i < hw; ++i) acc += xp[i];
        y[p] = hw > 0 ? acc * inv : __builtin_nanf("");
    }
}

// dx = d(pool)/dx^T dy. Max pooling sends each output's gradient to the first maximum of its window (the
// last NaN if any), as PyTorch does; average pooling spreads it over the window with the forward's divisor.
void pool2d_backward(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx) {
    const index_t planes = s.n * s.c, HW = s.h * s.w;
    if (planes == 0 || HW == 0) return;
    const int threads = get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
        const float* xp = x + p * HW;
        const float* dyp = dy + p * s.oh * s.ow;
        float* dxp = dx + p * HW;
        for (index_t i = 0; i < HW; ++i) dxp[i] = 0.f;
        for (index_t oh = 0; oh < s.oh; ++oh) {
            const index_t h0 = oh * s.stride_h - s.pad_h;
            const index_t hs = imax(h0, 0), he = imin(h0 + s.kh, s.h);
            for (index_t ow = 0; ow < s.ow; ++ow) {
                const index_t w0 = ow * s.stride_w - s.pad_w;
                const index_t ws = imax(w0, 0), we = imin(w0 + s.kw, s.w);
                const float g = dyp[oh * s.ow + ow];
                if (kind == PoolKind::max) {
                    // PyTorch's rule: start at the window's first element, move on `v > m || isnan(v)`
                    index_t arg = hs * s.w + ws;
                    float m = -__builtin_inff();
                    for (index_t ih = hs; ih < he; ++ih)
                        for (index_t iw = ws; iw < we; ++iw) {
                            const float v = xp[ih * s.w + iw];
                            if (v > m || v != v) {
                                m = v;
                                arg = ih * s.w + iw;
                            }
                        }
                    if (hs < he && ws < we) dxp[arg] += g;
                } else {
                    const index_t h_end_pad = imin(h0 + s.kh, s.h + s.pad_h), w_end_pad = imin(w0 + s.kw, s.w + s.pad_w);
                    const index_t count = s.count_include_pad ? (h_end_pad - h0) * (w_end_pad - w0) : (he - hs) * (we - ws);
                    if (count <= 0) continue;
                    const float share = g / static_cast<float>(count);
                    for (index_t ih = hs; ih < he; ++ih)
                        for (index_t iw = ws; iw < we; ++iw) dxp[ih * s.w + iw] += share;
                }
            }
        }
    }
}

void global_avg_pool_backward(index_t planes, index_t hw, const float* dy, float* dx) {
    if (planes == 0 || hw == 0) return;
    const int threads = planes * hw < (1 << 16) ? 1 : get_num_threads();
    const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
        const float g = dy[p] * inv;
        float* d = dx + p * hw;
#pragma omp simd
        for (index_t i = 0; i < hw; ++i) d[i] = g;
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
