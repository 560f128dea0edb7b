// Internal: direct convolution with the output pixels as the GEMM's rows and the output channels as its
// vectorized columns, compiled once per ISA (included by conv2d_body.h):
//     C' (pixels x OC) = A' (pixels x K, the input itself) * B' (K x OC, the weights transposed),
// then C' is transposed into y. For small outputs with many channels (ResNet-50's last stage, 7x7): laid out
// channels by pixels, 49 pixels fill 64 lanes of vectors; as 7 rows of 7 pixels they fill 49, and the
// channels fill whole vectors. A' is read in place (the input, or its zero-padded copy), a panel of MR or MR - 1
// pixels per tile (it may span output rows), each lane a broadcast at its pixel's offset: strides cost
// nothing, and no phase copy is made (a 1x1 layer packs A' per K block from the input instead). B' is packed
// once per call, or prepared (kPrepackTransposed).
#pragma once

#include "../parallel.h"
#include "phases.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Rows per pixel panel: MR, or MR - 1 where that computes fewer rows in all (a 7x7 image: 7 panels of 7
// pixels instead of 56 rows; 14x14: 28 of 7 instead of 200). A panel's pixels may span output rows.
inline index_t pixel_panel_rows(index_t pixels) {
    if (MR < 8) return MR;
    return ceil_div(pixels, MR - 1) * (MR - 1) < ceil_div(pixels, MR) * MR ? MR - 1 : MR;
}

// Whether this layout computes markedly fewer wasted lanes than the channels-by-pixels one (one group only;
// outputs of at most 256 pixels per image, so C' stays small). Its rows are the output's own pixels, so the
// Wph - OW padding columns of the phase grid cost nothing here (ResNet-50's 3x3 stride-2 layers: 196 pixels
// in 196 rows, against 224 lanes of columns over 210 grid columns).
inline bool pixel_major_pays(const Conv2dShape& s) {
    if (s.groups != 1) return false;
    const PhaseGeometry g = phase_geometry(s);
    const index_t P = s.oh * s.ow;
    if (P > 256) return false;
    const double useful = double(P) * double(s.oc);
    // channels by pixels: rows of MR channels
    const double now = useful / (double(gemm_lanes(s, g)) * double(ceil_div(s.oc, MR) * MR));
    // pixels by channels
    const index_t cols = s.oc / NR * NR + ceil_div(s.oc % NR, VL) * VL;
    const index_t rp = pixel_panel_rows(P);
    const double then = useful / (double(ceil_div(P, rp) * rp) * double(cols));
    return then > 1.1 * now;
}

// B'[panel][k][j] = w[panel * NR + j][k], zero past OC: ceil(OC / NR) panels of K x NR.
inline index_t pixel_major_b_floats(const Conv2dShape& s) { return ceil_div(s.oc, NR) * NR * s.c * s.kh * s.kw; }

void pixel_major_pack_b(const Conv2dShape& s, const float* __restrict w, float* __restrict dst) {
    const index_t K = s.c * s.kh * s.kw, panels = ceil_div(s.oc, NR);
    parallel_for(get_num_threads(), panels, [&](index_t jn) {
        float* d = dst + jn * K * NR;
        const index_t count = imin(NR, s.oc - jn * NR);
        for (index_t j = 0; j < count; ++j) {
            const float* src = w + (jn * NR + j) * K;
            for (index_t k = 0; k < K; ++k) d[k * NR + j] = src[k];
        }
        for (index_t j = count; j < NR; ++j)
            for (index_t k = 0; k < K; ++k) d[k * NR + j] = 0.f;
    });
}

// The input the pixel-major path reads in place: x itself where no tap reads the padding, else a zero-padded
// copy of the rows and columns that the taps read (Hp x Wp per channel, from row -PT and column -PL).
struct PaddedInput {
    index_t Hp, Wp, plane;
    bool in_place;
};

inline PaddedInput padded_input(const Conv2dShape& s) {
    PaddedInput g;
    g.Hp = (s.oh - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
    g.Wp = (s.ow - 1) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
    g.in_place = s.pad_t == 0 && s.pad_l == 0 && g.Hp <= s.h && g.Wp <= s.w;
    if (g.in_place) g.Hp = s.h, g.Wp = s.w;
    g.plane = g.Hp * g.Wp;
    return g;
}

// A in place: the pixels of one panel, lane i reading row k at off[i]; lanes past the panel's pixels read its
// last one's (computed, never stored).
struct PixelA {
    const float* const* rows;
    index_t off[MR];
    float at(index_t k, int i) const { return rows[k][off[i]]; }
    void prefetch(index_t) const {}
};

// A' of one pixel panel within an output row: d[k * MR + i] = rows[k][off + i * SW] for lanes i < mv, zero past
// them, each of the MR floats readable (SW = 0: the columns `step` apart).
template <int SW>
inline void pack_pixel_row(const float* const* rows, index_t off, index_t kc, index_t mv, float* __restrict d,
                           index_t step = SW) {
    for (index_t k = 0; k < kc; ++k) {
        const float* src = rows[k] + off;
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const float v = src[i * (SW > 0 ? SW : step)];
            d[k * MR + i] = i < mv ? v : 0.f;
        }
    }
}

void conv2d_pixel_major(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                        Activation act, const float* b_prepared) {
    const index_t K = s.c * s.kh * s.kw, P = s.oh * s.ow, HW = s.h * s.w;
    const PaddedInput g = padded_input(s);
    const int threads = get_num_threads();
    const index_t jpanels = ceil_div(s.oc, NR), ldc = jpanels * NR;
    // Images per chunk: padded copies up to ~8 MiB and C' up to ~4 MiB, at least one image.
    const index_t per_image = s.c * g.plane;
    index_t chunk = imax(1, imin(s.n, (index_t(1) << 20) / (P * ldc)));
    if (!g.in_place) chunk = imax(1, imin(chunk, (index_t(2) << 20) / imax(1, per_image)));
    // Pixel panels of rp pixels (which may span output rows), the last one short.
    const index_t rp = pixel_panel_rows(P), ipanels = ceil_div(P, rp);
    // Tasks per image: runs of pixel panels where each thread can take eight or more, with counts differing by
    // one at most. Else (a 7x7 image: 7 panels), with weights of up to 2 MiB, equal runs of the image's (pixel
    // panel, channel vector) units taken panel by panel, so that a task has whole panels and at most part of
    // one at either end (on two threads, three panels and half the channels of the fourth each); with larger
    // weights, runs of channel vectors over all the panels.
    // NOTE: by channel vectors, each thread reads its part of the weights and packs all of A; by panels, each
    // reads all the weights (the lines one thread brings from memory the other finds in L3) and packs only its
    // own pixels. In turns in one process, same bits, Intel Xeon (model 167), two threads, batch 1, units against
    // channel vectors: GoogLeNet's 1x1 layers on 7x7 (832 -> 32 to 384) 0.77-1.00x the time back to back and
    // 0.85-0.95x with the caches evicted before each call (64 MiB written; 832 -> 32 1.03x), its 3x3 on 7x7
    // 0.96-1.02x; in its forward pass, against ONNX Runtime's profile of the same run, the 1x1 layers on 7x7 rose
    // from 0.48-0.83x of ONNX Runtime's speed to 0.52-0.83x (up in 16 of 18 rows of two profiles each way).
    // ResNet-50's 512 -> 2048 on 7x7 (4 MiB of weights) took 1.06-1.10x back to back, where each thread's part
    // stays in its L2, and 0.90-1.02x evicted: larger weights stay split by channel vectors.
    const index_t parts = imax(1, ceil_div(threads, imin(chunk, s.n)));
    const index_t vectors = ceil_div(s.oc, VL), units = ipanels * vectors;
    const bool by_pixels = ipanels >= 8 * parts;
    const bool by_units = !by_pixels && K * s.oc <= (index_t(512) << 10);
    const index_t runs = by_pixels ? parts : imin(by_units ? units : vectors, parts);
    const index_t kstep = direct_k_step(K, s.oc);
    // A in place where the taps of a channel share the input's lines (kernels of more than one tap); a 1x1
    // layer's A is packed per K block (MR floats per k), as its rows are each in a channel plane of their own.
    // NOTE: against the phase copy with A' packed for every layer (same bits; the two builds in one process,
    // calls alternated, Intel Xeon Ice Lake, one / two threads, batch 1): ResNet-50's 3x3/2 256 -> 256 on
    // 28x28 0.82x / 0.66x the time (0.81x / 0.86x at batch 8), 512 -> 512 on 14x14 0.90x / 0.87x, 1x1/2 1024
    // -> 2048 on 14x14 0.90-0.94x, 1x1 on 7x7 0.91-1.00x (GoogLeNet's 832 -> 384 0.90x / 0.93x). A 1x1 layer's
    // A read in place took 1.04-1.12x the time of packing it. Larger outputs (3x3/2 128 -> 128 on 56x56, 784
    // pixels) stay channels by pixels: this path took 1.03-1.06x the time there.
    const bool pack = s.kh * s.kw == 1;
    const index_t task_panels = by_pixels ? ceil_div(ipanels, runs) : ipanels;
    PerThread<float> a_bufs(threads, pack ? static_cast<std::size_t>(task_panels * MR * kstep) : 0);
    PerThread<index_t> offsets(threads, static_cast<std::size_t>(task_panels * MR));
    Scratch padded(g.in_place ? 0 : static_cast<std::size_t>(chunk * per_image));
    Scratch packed_b(b_prepared ? 0 : static_cast<std::size_t>(pixel_major_b_floats(s)));
    Scratch cbuf(static_cast<std::size_t>(chunk * P * ldc));
    PerThread<const float*> row_tables(threads, static_cast<std::size_t>(K));
    if (!b_prepared) pixel_major_pack_b(s, w, packed_b.p);
    const float* const B = b_prepared ? b_prepared : packed_b.p;
    const float* const input_end = g.in_place ? x + s.n * s.c * HW : padded.p + chunk * per_image;
    Epilogue ep;
    ep.relu = act == Activation::relu;
    ep.bias_col = bias;

    parallel(threads, [&] {
        DenormalsOff ftz;
        const float** const rows = row_tables.get();
        float* const abuf = pack ? a_bufs.get() : nullptr;
        index_t* const offs = offsets.get();
        for (index_t n_begin = 0; n_begin < s.n; n_begin += chunk) {
            const index_t n_count = imin(chunk, s.n - n_begin);
            if (!g.in_place) {
#pragma omp for schedule(static)
                for (index_t u = 0; u < n_count * s.c; ++u) {
                    const float* plane = x + (n_begin * s.c + u) * HW;
                    float* d = padded.p + u * g.plane;
                    for (index_t i = 0; i < g.Hp; ++i)
                        gather_row(d + i * g.Wp, g.Wp, plane, s.h, s.w, i - s.pad_t, -s.pad_l, 1);
                }
            }
#pragma omp for schedule(static)
            for (index_t t = 0; t < n_count * runs; ++t) {
                const index_t ni = t / runs, r = t % runs;
                // rows[k]: tap (ki, kj) of channel ci, for output pixel (0, 0)
                const float* base = g.in_place ? x + (n_begin + ni) * s.c * HW : padded.p + ni * per_image;
                for (index_t k = 0; k < K; ++k) {
                    const index_t ci = k / (s.kh * s.kw), rk = k % (s.kh * s.kw);
                    rows[k] = base + ci * g.plane + (rk / s.kw) * s.dil_h * g.Wp + (rk % s.kw) * s.dil_w;
                }
                // pixel panels [ip0, ip1) x channels [c0, c1)
                auto block = [&](index_t ip0, index_t ip1, index_t c0, index_t c1) {
                    const index_t j0 = c0 / NR, j1 = ceil_div(c1, NR);  // the panels holding channels [c0, c1)
                    // where each pixel panel's lanes read, relative to rows[k]
                    for (index_t ip = ip0; ip < ip1; ++ip) {
                        const index_t ir = ip * rp, last = imin(rp, P - ir) - 1;
                        for (int i = 0; i < MR; ++i) {
                            const index_t p = ir + imin(i, last);
                            offs[(ip - ip0) * MR + i] = (p / s.ow) * s.stride_h * g.Wp + (p % s.ow) * s.stride_w;
                        }
                    }
                    auto panel_a = [&](index_t ip) {
                        PixelA a{rows, {}};
                        for (int i = 0; i < MR; ++i) a.off[i] = offs[(ip - ip0) * MR + i];
                        return a;
                    };
                    float* const C = cbuf.p + ni * P * ldc;
                    for (index_t pc = 0; pc < K; pc += kstep) {
                        const index_t kc = imin(kstep, K - pc);
                        if (pack)
                            for (index_t ip = ip0; ip < ip1; ++ip) {
                                float* d = abuf + (ip - ip0) * MR * kc;
                                const PixelA a = panel_a(ip);
                                const index_t ir = ip * rp, mv = imin(rp, P - ir);
                                // a panel within one output row, all MR floats readable (the last row read ends
                                // inside the input): fixed-length copies, lanes past mv zeroed
                                if (ir % s.ow + mv <= s.ow &&
                                    rows[pc + kc - 1] + a.off[0] + (MR - 1) * s.stride_w < input_end) {
                                    if (s.stride_w == 1)
                                        pack_pixel_row<1>(rows + pc, a.off[0], kc, mv, d);
                                    else if (s.stride_w == 2)
                                        pack_pixel_row<2>(rows + pc, a.off[0], kc, mv, d);
                                    else
                                        pack_pixel_row<0>(rows + pc, a.off[0], kc, mv, d, s.stride_w);
                                    continue;
                                }
                                for (index_t k = 0; k < kc; ++k)
                                    for (int i = 0; i < MR; ++i) d[k * MR + i] = i < mv ? rows[pc + k][a.off[i]] : 0.f;
                            }
                        for (index_t jn = j0; jn < j1; ++jn) {
                            // this run's columns of panel jn: [lo, hi), whole vectors but at the layer's last
                            const index_t lo = imax(c0, jn * NR), hi = imin(c1, jn * NR + NR);
                            const int nv = static_cast<int>(hi - lo);
                            // B' comes from memory once per call (the weights, 4 MiB for ResNet-50's 512 -> 2048):
                            // the next panel, or the next K block's first, is prefetched while this one is used
                            const float* b = B + (jn * K + pc) * NR + (lo - jn * NR);
                            const float* next = jn + 1 < j1 ? B + ((jn + 1) * K + pc) * NR
                                                : pc + kc < K ? B + (j0 * K + pc + kc) * NR : b;
                            // The first kLines tiles (three with AVX-512, two with AVX2), or all of them where there
                            // are fewer, share asking for the next block of B' (with_shared_next: with AVX-512 each a
                            // third of it, one line per k), so that it comes from memory over several tiles' time
                            // rather than the first tile's.
                            // NOTE: the first tile alone asking for all of it (StreamedB, three lines per k) left
                            // memory idle for the rest of the panel. Sharing it, in turns in one process on an Intel
                            // Xeon (model 167), same bits, one / two threads, batch 1, the weights cold (64 MiB
                            // written between calls): ResNet-50's 1x1 512 -> 2048 and 2048 -> 512 on 7x7 0.91x /
                            // 0.91-0.93x the time, 3x3/2 512 -> 512 on 14x14 0.82x / 0.92x, 1x1/2 1024 -> 2048 0.86x
                            // / 0.96x, 3x3/2 256 -> 256 on 28x28 0.94x / 0.92x, GoogLeNet's 832 -> 384 on 7x7 0.90x
                            // / 0.97x; warm, 0.87-1.02x; at batch 8 0.89-1.00x; with AVX2 forced 0.96-0.99x. One line
                            // every other k over six tiles took 1.0-1.16x the time of this.
                            // NOTE: every tile asking for all of it only took issue slots: in turns in one process
                            // on an Intel Xeon (Ice Lake), 3x3/2 256 -> 256 on 28x28 and 512 -> 512 on 14x14 0.96-0.98x
                            // the time with the first tile alone prefetching.
                            constexpr index_t kLines = (NR + kLineFloats - 1) / kLineFloats;
                            const index_t askers = imin(ip1 - ip0, kLines);
                            auto tile = [&](const auto& a, float* c, int mv, index_t t) {
                                if (t < askers)
                                    with_shared_next(kc, b, next, t, askers, [&](const auto& bsrc) {
                                        ukernel_any(kc, a, bsrc, c, ldc, mv, nv, pc > 0, pc + kc == K, ep, 0, lo);
                                    });
                                else
                                    ukernel_any(kc, a, PackedB{b}, c, ldc, mv, nv, pc > 0, pc + kc == K, ep, 0, lo);
                            };
                            for (index_t ip = ip0; ip < ip1; ++ip) {
                                const index_t ir = ip * rp;
                                const int mv = static_cast<int>(imin(rp, P - ir));
                                float* const c = C + ir * ldc + lo;
                                if (pack) {
                                    tile(PackedA{abuf + (ip - ip0) * MR * kc}, c, mv, ip - ip0);
                                } else {
                                    PixelA a = panel_a(ip);
                                    a.rows = rows + pc;
                                    tile(a, c, mv, ip - ip0);
                                }
                            }
                        }
                    }
                    // y[n][o][p] = C'[p][o], this task's pixels and channels
                    const index_t p0 = ip0 * rp, p1 = imin(P, ip1 * rp);
                    float* const yn = y + (n_begin + ni) * s.oc * P;
                    constexpr index_t kT = 16;
                    for (index_t pb = p0; pb < p1; pb += kT)
                        for (index_t o = c0; o < c1; ++o) {
                            const float* src = C + o;
                            float* dst = yn + o * P;
                            for (index_t p = pb; p < imin(p1, pb + kT); ++p) dst[p] = src[p * ldc];
                        }
                };
                if (by_pixels) {
                    block(r * ipanels / runs, (r + 1) * ipanels / runs, 0, s.oc);
                    continue;
                }
                if (!by_units) {
                    block(0, ipanels, r * vectors / runs * VL, imin(s.oc, (r + 1) * vectors / runs * VL));
                    continue;
                }
                // units [u, u1): a part of a panel, whole panels, a part of a panel
                for (index_t u = r * units / runs, u1 = (r + 1) * units / runs; u < u1;) {
                    const index_t ip = u / vectors, v0 = u % vectors;
                    if (v0 == 0 && u1 - u >= vectors) {
                        const index_t whole = (u1 - u) / vectors;
                        block(ip, ip + whole, 0, s.oc);
                        u += whole * vectors;
                    } else {
                        const index_t v1 = imin(vectors, v0 + (u1 - u));
                        block(ip, ip + 1, v0 * VL, imin(s.oc, v1 * VL));
                        u += v1 - v0;
                    }
                }
            }
        }
    });
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
