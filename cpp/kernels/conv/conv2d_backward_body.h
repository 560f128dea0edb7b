// Internal: gradients of float32 NCHW convolution, compiled once per ISA. Both general cases run on the
// packed GEMM of gemm_body.h with the gather done in the B packer, so no im2col or col2im matrix exists:
//  - input:  dx_g (cg x H*W)       = W_g^T (cg x ocg*kh*kw) * gather(dy)   (zero where no output reads a pixel)
//  - weight: dw_g (ocg x cg*kh*kw) = sum over images of dy_g (ocg x P) * im2col(x)^T (P x cg*kh*kw)
// One input channel per group (depthwise) uses direct loops, as the forward does.
#pragma once

#include <omp.h>

#include "../gemm/gemm_body.h"
#include "../parallel.h"
#include "conv2d_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// B[(o, ki, kj)][(ih, iw)] = dy[o][oh][ow] where oh * sh = ih + pt - ki * dh and ow * sw = iw + pl - kj * dw.
struct Col2imGatherPacker {
    const float* dy;  // first output channel of this group
    index_t OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, W;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        for (index_t k = pc; k < pc + kc; ++k) {
            const index_t o = k / (KH * KW), r = k % (KH * KW), ki = r / KW, kj = r % KW;
            const float* plane = dy + o * OH * OW;
            for (index_t p = 0; p < panels; ++p) {
                float* d = dst + p * kc * NR + (k - pc) * NR;
                const index_t q0 = n0 + p * NR, count = imin(NR, nc - p * NR);
                index_t ih = q0 / W, iw = q0 % W, t = 0;
                while (t < count) {
                    const index_t len = imin(count - t, W - iw);
                    const index_t hnum = ih + PT - ki * DH, wnum0 = iw + PL - kj * DW;
                    if (hnum < 0 || hnum % SH != 0 || hnum / SH >= OH) {
                        std::memset(d + t, 0, sizeof(float) * len);
                    } else if (SW == 1) {
                        gather_row(d + t, len, plane, OH, OW, hnum / SH, wnum0, 1);
                    } else {
                        const float* row = plane + (hnum / SH) * OW;
                        for (index_t u = 0; u < len; ++u) {
                            const index_t wn = wnum0 + u;
                            d[t + u] = (wn >= 0 && wn % SW == 0 && wn / SW < OW) ? row[wn / SW] : 0.f;
                        }
                    }
                    t += len;
                    iw = 0;
                    ++ih;
                }
                for (; t < NR; ++t) d[t] = 0.f;
            }
        }
    }
};

// B[(n, oh, ow)][(ci, ki, kj)] = x[n][ci][oh * sh - pt + ki * dh][ow * sw - pl + kj * dw]: im2col, transposed,
// with the images of the batch one after another along K.
struct Im2colTransposedPacker {
    const float* x;  // first channel of this group, first image
    index_t image_stride, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OW, P;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        for (index_t p = 0; p < panels; ++p) {
            float* d = dst + p * kc * NR;
            const index_t count = imin(NR, nc - p * NR);
            for (index_t j = 0; j < NR; ++j) {
                if (j >= count) {
                    for (index_t t = 0; t < kc; ++t) d[t * NR + j] = 0.f;
                    continue;
                }
                const index_t kk = n0 + p * NR + j;
                const index_t ci = kk / (KH * KW), r = kk % (KH * KW), ki = r / KW, kj = r % KW;
                index_t n = pc / P, q = pc % P, oh = q / OW, ow = q % OW, t = 0;
                while (t < kc) {
                    const float* plane = x + n * image_stride + ci * H * W;
                    const index_t len = imin(kc - t, OW - ow);
                    const index_t ih = oh * SH - PT + ki * DH;
                    if (ih < 0 || ih >= H) {
                        for (index_t u = 0; u < len; ++u) d[(t + u) * NR + j] = 0.f;
                    } else {
                        const float* row = plane + ih * W;
                        const index_t iw0 = ow * SW - PL + kj * DW;
                        for (index_t u = 0; u < len; ++u) {
                            const index_t iw = iw0 + u * SW;
                            d[(t + u) * NR + j] = (iw >= 0 && iw < W) ? row[iw] : 0.f;
                        }
                    }
                    t += len;
                    ow = 0;
                    if (++oh == P / OW) {
                        oh = 0;
                        ++n;
                    }
                }
            }
        }
    }
};

// B[o][(n, p)] = dy[n][o][p] for one group: dy with the batch laid along the columns.
struct BatchColumnsPacker {
    const float* dy;  // first output channel of the group, first image
    index_t image_stride, P;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        for (index_t k = pc; k < pc + kc; ++k)
            for (index_t p = 0; p < panels; ++p) {
                float* d = dst + p * kc * NR + (k - pc) * NR;
                const index_t count = imin(NR, nc - p * NR);
                index_t col = n0 + p * NR, t = 0;
                while (t < count) {
                    const index_t n = col / P, q = col % P, len = imin(count - t, P - q);
                    const float* src = dy + n * image_stride + k * P + q;
                    for (index_t u = 0; u < len; ++u) d[t + u] = src[u];
                    t += len;
                    col += len;
                }
                for (; t < NR; ++t) d[t] = 0.f;
            }
    }
};

// The input gradient as a GEMM then a scatter: dcol_g ((ci, ki, kj) x (n, p)) = W_g^T * dy_g, then each
// column added into dx at the pixels it read (col2im). For small images, where the gather formulation's
// N (the pixels of one image) would be too short for the microkernel; the batch makes the columns here.
void backward_input_col2im(const Conv2dShape& s, const float* dy, const float* w, float* dx, int threads) {
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G, KK = s.kh * s.kw, Kk = cg * KK, P = s.oh * s.ow;
    const index_t HW = s.h * s.w, cols = s.n * P;
    Scratch wt(static_cast<std::size_t>(G * Kk * ocg));  // W_g^T: rows (ci, ki, kj), columns o
    Scratch dcol(static_cast<std::size_t>(G * Kk * cols));
    parallel_for(threads, G * ocg, [&](index_t go) {
        const index_t g = go / ocg, o = go % ocg;
        const float* src = w + (g * ocg + o) * Kk;
        float* d = wt.p + g * Kk * ocg + o;
        for (index_t i = 0; i < Kk; ++i) d[i * ocg] = src[i];
    });
    for (index_t g = 0; g < G; ++g)
        gemm_parallel(Kk, cols, ocg, wt.p + g * Kk * ocg, ocg, BatchColumnsPacker{dy + g * ocg * P, s.oc * P, P},
                      dcol.p + g * Kk * cols, cols, Epilogue{}, threads);
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t plane = 0; plane < s.n * s.c; ++plane) {
            const index_t n = plane / s.c, c = plane % s.c, g = c / cg, ci = c % cg;
            float* dxp = dx + plane * HW;
            for (index_t i = 0; i < HW; ++i) dxp[i] = 0.f;
            for (index_t ki = 0; ki < s.kh; ++ki)
                for (index_t kj = 0; kj < s.kw; ++kj) {
                    const float* src = dcol.p + (g * Kk + (ci * s.kh + ki) * s.kw + kj) * cols + n * P;
                    const index_t off = kj * s.dil_w - s.pad_l;
                    const auto [lo, hi] = valid_cols(off, s.stride_w, s.w, s.ow);
                    for (index_t oh = 0; oh < s.oh; ++oh) {
                        const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                        if (ih < 0 || ih >= s.h) continue;
                        float* row = dxp + ih * s.w;
                        const float* sr = src + oh * s.ow;
                        for (index_t ow = lo; ow < hi; ++ow) row[ow * s.stride_w + off] += sr[ow];
                    }
                }
        }
    });
}

void depthwise_backward_input(const Conv2dShape& s, const float* dy, const float* w, float* dx, int threads) {
    const index_t mult = s.oc / s.c, P = s.oh * s.ow, HW = s.h * s.w;
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t plane = 0; plane < s.n * s.c; ++plane) {
            const index_t n = plane / s.c, ci = plane % s.c;
            float* dxp = dx + plane * HW;
            for (index_t i = 0; i < HW; ++i) dxp[i] = 0.f;
            for (index_t m = 0; m < mult; ++m) {
                const index_t o = ci * mult + m;
                const float* dyp = dy + (n * s.oc + o) * P;
                const float* wp = w + o * s.kh * s.kw;
                for (index_t oh = 0; oh < s.oh; ++oh) {
                    const float* dyr = dyp + oh * s.ow;
                    for (index_t ki = 0; ki < s.kh; ++ki) {
                        const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                        if (ih < 0 || ih >= s.h) continue;
                        float* dxr = dxp + ih * s.w;
                        for (index_t kj = 0; kj < s.kw; ++kj) {
                            const float wv = wp[ki * s.kw + kj];
                            const index_t off = kj * s.dil_w - s.pad_l;
                            const auto [lo, hi] = valid_cols(off, s.stride_w, s.w, s.ow);
                            for (index_t ow = lo; ow < hi; ++ow) dxr[ow * s.stride_w + off] += wv * dyr[ow];
                        }
                    }
                }
            }
        }
    });
}

void depthwise_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, int threads) {
    const index_t mult = s.oc / s.c, P = s.oh * s.ow, HW = s.h * s.w;
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t o = 0; o < s.oc; ++o) {
            const index_t ci = o / mult;
            float* dwp = dw + o * s.kh * s.kw;
            for (index_t k = 0; k < s.kh * s.kw; ++k) dwp[k] = 0.f;
            for (index_t n = 0; n < s.n; ++n) {
                const float* xp = x + (n * s.c + ci) * HW;
                const float* dyp = dy + (n * s.oc + o) * P;
                for (index_t ki = 0; ki < s.kh; ++ki)
                    for (index_t kj = 0; kj < s.kw; ++kj) {
                        const index_t off = kj * s.dil_w - s.pad_l;
                        const auto [lo, hi] = valid_cols(off, s.stride_w, s.w, s.ow);
                        float acc = 0.f;
                        for (index_t oh = 0; oh < s.oh; ++oh) {
                            const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                            if (ih < 0 || ih >= s.h) continue;
                            const float* xr = xp + ih * s.w;
                            const float* dyr = dyp + oh * s.ow;
                            if (s.stride_w == 1) {
    #pragma omp simd reduction(+ : acc)
                                for (index_t ow = lo; ow < hi; ++ow) acc += dyr[ow] * xr[ow + off];
                            } else {
                                for (index_t ow = lo; ow < hi; ++ow) acc += dyr[ow] * xr[ow * s.stride_w + off];
                            }
                        }
                        dwp[ki * s.kw + kj] += acc;
                    }
            }
        }
    });
}

// The multiply-adds of one of the two passes, counted as twice as many for the thread limit: a pass runs at
// a quarter to half of the forward's rate on small layers.
// NOTE: one thread against two, in turns, AMD EPYC (Zen 3), both passes (and the bias's): 1x1 layers of 16K
// to 262K multiply-adds 0.41-0.98x the time, the 3x3 16 -> 16 on 8x8 (147K) 0.64x; the 3x3 16 -> 16 on 16x16
// (590K) 1.16x, which a thread per 512K of them would have kept on one.
inline int backward_threads_limit(const Conv2dShape& s) {
    return threads_for_work(2 * s.n * s.oc * s.oh * s.ow * (s.c / s.groups) * s.kh * s.kw);
}

}  // namespace

void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
    const index_t HW = s.h * s.w;
    if (s.n == 0 || s.c == 0 || HW == 0) return;
    const ThreadLimit limit(backward_threads_limit(s));
    const int threads = get_num_threads();
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G, KK = s.kh * s.kw, Kb = ocg * KK, P = s.oh * s.ow;
    if (cg == 1 && G > 1) return depthwise_backward_input(s, dy, w, dx, threads);
    // NOTE: small images with a batch: the GEMM below would have only HW columns per image.
    if (HW <= 1024 && s.n > 1 && G * cg * KK * s.n * P <= (index_t(1) << 22))
        return backward_input_col2im(s, dy, w, dx, threads);

    // A[ci][(o, ki, kj)] = w[o][ci][ki][kj], per group
    Scratch wt(static_cast<std::size_t>(G * cg * Kb));
    const GemmSplit split = split_gemm(s.n * G, cg, HW, threads);
    const index_t tasks = s.n * G * split.n_blocks * split.m_chunks;
    PerThread<float> b_bufs(threads, static_cast<std::size_t>(KC * NC));
    parallel(threads, [&] {
        DenormalsOff ftz;
#pragma omp for schedule(static)
        for (index_t gi = 0; gi < G * cg; ++gi) {
            const index_t g = gi / cg, ci = gi % cg;
            float* dst = wt.p + gi * Kb;
            for (index_t o = 0; o < ocg; ++o)
                std::memcpy(dst + o * KK, w + ((g * ocg + o) * cg + ci) * KK, sizeof(float) * KK);
        }
        float* const b_buf = b_bufs.get();
        const Epilogue ep;
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            const GemmTask task = gemm_task(t, split);
            const index_t mc = task.m_chunk, nb = task.n_block, g = task.outer % G, n = task.outer / G;
            Col2imGatherPacker pk{dy + (n * s.oc + g * ocg) * P, s.oh, s.ow, s.kh, s.kw, s.stride_h, s.stride_w,
                                  s.pad_t, s.pad_l, s.dil_h, s.dil_w, s.w};
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(cg, m0 + split.m_chunk_rows);
            const index_t n0 = split.n_begin(nb), nc = split.n_begin(nb + 1) - n0;
            gemm_block(cg, m0, m1, n0, nc, Kb, wt.p + g * cg * Kb, Kb, pk, b_buf, dx + (n * s.c + g * cg) * HW, HW, ep);
        }
    });
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* db) {
    const ThreadLimit limit(backward_threads_limit(s));
    const int threads = get_num_threads();
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G, KK = s.kh * s.kw, Kw = cg * KK, P = s.oh * s.ow;
    if (db) {
        parallel_for(threads, s.oc, [&](index_t o) {
            double acc = 0.0;
            for (index_t n = 0; n < s.n; ++n) {
                const float* d = dy + (n * s.oc + o) * P;
                float part = 0.f;
#pragma omp simd reduction(+ : part)
                for (index_t q = 0; q < P; ++q) part += d[q];
                acc += part;
            }
            db[o] = static_cast<float>(acc);
        });
    }
    if (s.n == 0 || P == 0) {
        for (index_t i = 0; i < s.oc * Kw; ++i) dw[i] = 0.f;
        return;
    }
    if (cg == 1 && G > 1) return depthwise_backward_weight(s, x, dy, dw, threads);

    // One GEMM per group with the batch folded into K: dw_g = dy_g (ocg x N*P) * im2col(x)^T (N*P x cg*kh*kw).
    // A must be rows of ocg: with several images, dy is first regrouped as [g][o][n][p].
    const index_t NP = s.n * P;
    Scratch dyr(s.n > 1 ? static_cast<std::size_t>(s.oc * NP) : 0);
    const float* A = dy;
    if (s.n > 1) {
        parallel_for(threads, s.n * s.oc, [&](index_t no) {
            const index_t n = no / s.oc, o = no % s.oc;
            const float* src = dy + (n * s.oc + o) * P;
            float* d = dyr.p + o * NP + n * P;
            for (index_t q = 0; q < P; ++q) d[q] = src[q];
        });
        A = dyr.p;
    }
    const GemmSplit split = split_gemm(G, ocg, Kw, threads);
    const index_t tasks = G * split.n_blocks * split.m_chunks;
    PerThread<float> b_bufs(threads, static_cast<std::size_t>(KC * NC));
    parallel(threads, [&] {
        DenormalsOff ftz;
        float* const b_buf = b_bufs.get();
        const Epilogue ep;
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            const GemmTask task = gemm_task(t, split);
            const index_t mc = task.m_chunk, nb = task.n_block, g = task.outer;
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(ocg, m0 + split.m_chunk_rows);
            const index_t n0 = split.n_begin(nb), nc = split.n_begin(nb + 1) - n0;
            Im2colTransposedPacker pk{x + g * cg * s.h * s.w, s.c * s.h * s.w, s.h, s.w, s.kh, s.kw, s.stride_h,
                                      s.stride_w, s.pad_t, s.pad_l, s.dil_h, s.dil_w, s.ow, P};
            // with one image, dy's rows for group g are ocg rows P apart; with several, dyr's are N*P apart
            const float* ag = s.n > 1 ? A + g * ocg * NP : A + g * ocg * P;
            gemm_block(ocg, m0, m1, n0, nc, NP, ag, NP, pk, b_buf, dw + g * ocg * Kw, Kw, ep);
        }
    });
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
