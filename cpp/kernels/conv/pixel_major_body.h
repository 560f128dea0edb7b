// Internal: direct convolution with the output pixels as the GEMM's rows and the output channels as its
// vectorized columns, compiled once per ISA (included by conv2d_body.h):
//     C' (pixels x OC) = A' (pixels x K, gathered from the phase copy) * B' (K x OC, the weights transposed),
// then C' is transposed into y. For small outputs with many channels (ResNet-50's last stage, 7x7): laid out
// channels by pixels, 49 pixels fill 64 lanes of vectors; as 7 rows of 7 pixels they fill 49, and the
// channels fill whole vectors. B' is packed once per call, or prepared (kPrepackTransposed).
#pragma once

#include "phases.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Rows per pixel panel: MR, or MR - 1 where that computes fewer rows in all (a 7x7 image: 7 panels of 7
// pixels instead of 56 rows; 14x14: 28 of 7 instead of 200). Panels are packed MR rows apart either way.
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
#pragma omp parallel for num_threads(get_num_threads()) schedule(static)
    for (index_t jn = 0; jn < panels; ++jn) {
        float* d = dst + jn * K * NR;
        const index_t count = imin(NR, s.oc - jn * NR);
        for (index_t j = 0; j < count; ++j) {
            const float* src = w + (jn * NR + j) * K;
            for (index_t k = 0; k < K; ++k) d[k * NR + j] = src[k];
        }
        for (index_t j = count; j < NR; ++j)
            for (index_t k = 0; k < K; ++k) d[k * NR + j] = 0.f;
    }
}

void conv2d_pixel_major(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                        Activation act, const float* b_prepared) {
    const index_t K = s.c * s.kh * s.kw, P = s.oh * s.ow, HW = s.h * s.w;
    const PhaseGeometry g = phase_geometry(s);
    const bool in_place = phases_are_input(s);
    const int threads = get_num_threads();
    const index_t rp = pixel_panel_rows(P), ipanels = ceil_div(P, rp), rows_pad = ipanels * rp;
    const index_t jpanels = ceil_div(s.oc, NR), ldc = jpanels * NR;
    // Images per chunk: phase copies up to ~8 MiB and C' up to ~4 MiB, at least one image.
    const index_t per_image = s.c * g.per_channel;
    index_t chunk = imax(1, imin(s.n, (index_t(1) << 20) / (rows_pad * ldc)));
    if (!in_place) chunk = imax(1, imin(chunk, (index_t(2) << 20) / imax(1, per_image)));
    // Tasks: (image, run of channel vectors), as many runs per image as it takes to give every thread one,
    // with vector counts differing by one at most (each run packs A' for itself). A run may start or end
    // inside a panel of NR: whole panels split a layer of 512 channels (11 panels, the last of 32) 6:5 on
    // two threads, 288 against 224 channels; by vectors it is 16:16 (that layer and the 2048 -> 512 on 7x7
    // 0.96-0.98x the time on two threads, medians of runs in turns: within this machine's noise).
    const index_t vectors = ceil_div(s.oc, VL);
    const index_t runs = imin(vectors, imax(1, ceil_div(threads, imin(chunk, s.n))));
    // K blocks: those of the channels-by-pixels GEMM (M = OC), so both give the same bits; with blocks of
    // kKcResident, each B' panel stays in L1 while the pixel panels pass over it (3-5% on ResNet-50's 7x7
    // and stride-2 layers at one thread).
    const index_t kstep = direct_k_step(K, s.oc);
    Scratch phases(in_place ? 0 : static_cast<std::size_t>(chunk * per_image + g.Wph + NR));
    Scratch packed_b(b_prepared ? 0 : static_cast<std::size_t>(pixel_major_b_floats(s)));
    Scratch cbuf(static_cast<std::size_t>(chunk * rows_pad * ldc));
    PerThread<float> a_bufs(threads, static_cast<std::size_t>(ipanels * MR * kstep));
    PerThread<const float*> row_tables(threads, static_cast<std::size_t>(K));
    if (!b_prepared) pixel_major_pack_b(s, w, packed_b.p);
    const float* const B = b_prepared ? b_prepared : packed_b.p;
    Epilogue ep;
    ep.relu = act == Activation::relu;
    ep.bias_col = bias;

#pragma omp parallel num_threads(threads)
    {
        DenormalsOff ftz;
        float* const abuf = a_bufs.get();
        const float** const rows = row_tables.get();
        for (index_t n_begin = 0; n_begin < s.n; n_begin += chunk) {
            const index_t n_count = imin(chunk, s.n - n_begin);
            if (!in_place) build_phases_of_images(s, g, x, n_begin, n_count, phases.p);
#pragma omp for schedule(static)
            for (index_t t = 0; t < n_count * runs; ++t) {
                const index_t ni = t / runs, r = t % runs;
                const index_t c0 = r * vectors / runs * VL, c1 = imin(s.oc, (r + 1) * vectors / runs * VL);
                const index_t j0 = c0 / NR, j1 = ceil_div(c1, NR);  // the panels holding channels [c0, c1)
                const float* base = in_place ? x + (n_begin + ni) * s.c * HW : phases.p + ni * per_image;
                phase_rows(s, g, base, K, rows);
                float* const C = cbuf.p + ni * rows_pad * ldc;
                for (index_t pc = 0; pc < K; pc += kstep) {
                    const index_t kc = imin(kstep, K - pc);
                    // A': every rp-pixel panel of this K block, k-major with MR floats per k, read at the
                    // pixels' columns of the phase rows
                    for (index_t ip = 0; ip < ipanels; ++ip) {
                        float* d = abuf + ip * MR * kc;
                        const index_t ir = ip * rp, mv = imin(rp, P - ir), q0 = grid_column(ir, s.ow, g.Wph);
                        // contiguous columns (in place, or within one output row) and MR floats readable: a
                        // fixed-length copy, lanes past mv zeroed
                        if ((g.Wph == s.ow || ir % s.ow + mv <= s.ow) && q0 + MR <= g.N) {
                            for (index_t k = 0; k < kc; ++k) {
                                const float* src = rows[pc + k] + q0;
#pragma GCC unroll 8
                                for (int i = 0; i < MR; ++i) {
                                    const float v = src[i];
                                    d[k * MR + i] = i < mv ? v : 0.f;
                                }
                            }
                            continue;
                        }
                        index_t q[MR];
                        for (index_t i = 0; i < mv; ++i) q[i] = grid_column(ir + i, s.ow, g.Wph);
                        for (index_t k = 0; k < kc; ++k) {
                            const float* src = rows[pc + k];
                            for (index_t i = 0; i < mv; ++i) d[k * MR + i] = src[q[i]];
                            for (index_t i = mv; i < MR; ++i) d[k * MR + i] = 0.f;
                        }
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
                        for (index_t ip = 0; ip < ipanels; ++ip) {
                            const index_t ir = ip * rp;
                            ukernel_any(kc, PackedA{abuf + ip * MR * kc}, StreamedB{b, next}, C + ir * ldc + lo, ldc,
                                        static_cast<int>(imin(rp, P - ir)), nv, pc > 0, pc + kc == K, ep, 0, lo);
                        }
                    }
                }
            }
            // y[n][o][p] = C'[p][o]
#pragma omp for schedule(static)
            for (index_t t = 0; t < n_count * s.oc; ++t) {
                const index_t ni = t / s.oc, o = t % s.oc;
                const float* src = cbuf.p + ni * rows_pad * ldc + o;
                float* dst = y + ((n_begin + ni) * s.oc + o) * P;
                for (index_t p = 0; p < P; ++p) dst[p] = src[p * ldc];
            }
        }
    }
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
