// Internal: float32 NCHW convolution, compiled once per ISA.
//  - general case: GEMM per (image, group), the weights (OIHW rows) as A, the im2col gather done while
//    packing B block by block;
//  - 1x1, stride 1, no padding: B is the input itself, packed with plain copies;
//  - one input channel per group (depthwise): a direct kernel, since the GEMM would have M = 1.
#pragma once

#include <omp.h>

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
    // t in [t_lo, t_hi) lands inside [0, W)
    index_t t_lo = iw0 >= 0 ? 0 : ceil_div(-iw0, sw);
    index_t t_hi = iw0 >= W ? 0 : ceil_div(W - iw0, sw);
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

// A run of output pixels of one output row inside one packed panel.
struct Segment {
    index_t oh, ow, len, t;  // output row and first column, length, offset in the panel
};

// im2col packer for one (image, group): B[k][q] = x[ci][oh*sh - pt + ki*dh][ow*sw - pl + kj*dw], with
// k = (ci, ki, kj) and q = oh * OW + ow.
struct Im2colPacker {
    const float* x;  // first channel of this group
    index_t H, W, KH, KW, SH, SW, PT, PL, DH, DW, OW;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        // The panels' row segments do not depend on k: find them once per block.
        Segment segs[NC / NR * (NR + 1)];
        index_t seg_begin[NC / NR + 1];
        index_t ns = 0;
        for (index_t p = 0; p < panels; ++p) {
            seg_begin[p] = ns;
            const index_t q0 = n0 + p * NR, count = imin(NR, nc - p * NR);
            index_t oh = q0 / OW, ow = q0 % OW, t = 0;
            while (t < count) {
                const index_t len = imin(count - t, OW - ow);
                segs[ns++] = Segment{oh, ow, len, t};
                t += len;
                ow = 0;
                ++oh;
            }
        }
        seg_begin[panels] = ns;
        for (index_t k = pc; k < pc + kc; ++k) {
            const index_t ci = k / (KH * KW), r = k % (KH * KW), ki = r / KW, kj = r % KW;
            const float* plane = x + ci * H * W;
            const index_t dh = ki * DH - PT, dw = kj * DW - PL;
            for (index_t p = 0; p < panels; ++p) {
                float* d = dst + p * kc * NR + (k - pc) * NR;
                index_t end = 0;
                for (index_t i = seg_begin[p]; i < seg_begin[p + 1]; ++i) {
                    const Segment& sg = segs[i];
                    gather_row(d + sg.t, sg.len, plane, H, W, sg.oh * SH + dh, sg.ow * SW + dw, SW);
                    end = sg.t + sg.len;
                }
                for (index_t t = end; t < NR; ++t) d[t] = 0.f;
            }
        }
    }
};

// One input channel per group: out channel o reads input channel o / (OC / C).
void conv2d_depthwise(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                      Activation act) {
    const index_t mult = s.oc / s.c, planes = s.n * s.oc, P = s.oh * s.ow;
    const int threads = get_num_threads();
#pragma omp parallel num_threads(threads)
    {
        DenormalsOff ftz;
#pragma omp for schedule(static)
        for (index_t pl = 0; pl < planes; ++pl) {
            const index_t n = pl / s.oc, o = pl % s.oc, ci = o / mult;
            const float* xp = x + (n * s.c + ci) * s.h * s.w;
            const float* wp = w + o * s.kh * s.kw;
            float* yp = y + pl * P;
            const float b = bias ? bias[o] : 0.f;
            for (index_t oh = 0; oh < s.oh; ++oh) {
                float* yr = yp + oh * s.ow;
                for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = b;
                for (index_t ki = 0; ki < s.kh; ++ki) {
                    const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                    if (ih < 0 || ih >= s.h) continue;
                    const float* xr = xp + ih * s.w;
                    for (index_t kj = 0; kj < s.kw; ++kj) {
                        const float wv = wp[ki * s.kw + kj];
                        const index_t off = kj * s.dil_w - s.pad_l;  // iw = ow * sw + off
                        const index_t lo = off >= 0 ? 0 : ceil_div(-off, s.stride_w);
                        const index_t hi = imin(s.ow, off >= s.w ? 0 : ceil_div(s.w - off, s.stride_w));
                        if (s.stride_w == 1) {
#pragma omp simd
                            for (index_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow + off];
                        } else {
                            for (index_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * s.stride_w + off];
                        }
                    }
                }
                if (act == Activation::relu)
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = relu1(yr[ow]);
            }
        }
    }
}

}  // namespace

void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act) {
    if (s.n == 0 || s.oc == 0 || s.oh == 0 || s.ow == 0) return;
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G;
    if (cg == 1 && G > 1) return conv2d_depthwise(s, x, w, bias, y, act);

    const index_t K = cg * s.kh * s.kw, P = s.oh * s.ow, HW = s.h * s.w;
    const bool dense = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 &&
                       s.pad_l == 0 && s.oh == s.h && s.ow == s.w;
    const int threads = get_num_threads();
    const GemmSplit split = split_gemm(s.n * G, ocg, P, threads);
    const index_t tasks = s.n * G * split.n_blocks * split.m_chunks;
    Epilogue ep;
    ep.relu = act == Activation::relu;

#pragma omp parallel num_threads(threads)
    {
        DenormalsOff ftz;
        Scratch b_buf(static_cast<std::size_t>(KC * NC));
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            index_t r = t;
            const index_t mc = r % split.m_chunks;
            r /= split.m_chunks;
            const index_t nb = r % split.n_blocks;
            r /= split.n_blocks;
            const index_t g = r % G, n = r / G;
            const float* xg = x + (n * s.c + g * cg) * HW;
            float* yg = y + (n * s.oc + g * ocg) * P;
            Epilogue e = ep;
            e.bias_row = bias ? bias + g * ocg : nullptr;
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(ocg, m0 + split.m_chunk_rows);
            const index_t n0 = nb * NC, nc = imin(NC, P - n0);
            const float* wg = w + g * ocg * K;
            if (dense) {
                DensePacker pk{xg, HW};
                gemm_block(ocg, m0, m1, n0, nc, K, wg, K, pk, b_buf.p, yg, P, e);
            } else {
                Im2colPacker pk{xg, s.h, s.w, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_t, s.pad_l, s.dil_h, s.dil_w, s.ow};
                gemm_block(ocg, m0, m1, n0, nc, K, wg, K, pk, b_buf.p, yg, P, e);
            }
        }
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
