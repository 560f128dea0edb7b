// Internal: direct convolution with the output channels as vector lanes and a run of output pixels of one
// row as the rows of a register tile, compiled once per ISA (included by conv2d_body.h). Each input value is
// broadcast straight from the input (or its zero-padded phase copy) and multiplies one or two vectors of
// the weights transposed (K x OC, rows of NR floats: pixel_major_pack_b's layout, so conv2d_prepare's
// kPrepackTransposed serves both); no im2col, no packing of the input. For layers of few output channels
// on small images, where the channels-by-pixels GEMM computes the Wph - OW padding columns of every row:
// LeNet-5's 6 -> 16 5x5 on 14x14 gets 100 pixels done in 144 lanes there, in 100 x 16 lanes here.
#pragma once

#include "../parallel.h"
#include "pixel_major_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Register tile: R pixels x NVEC vectors of channels (24 accumulators with 32 registers, 12 with 16).
constexpr int kOcAccumulators = kVecBytes == 64 ? 24 : 12;

inline bool oc_vectors_pays(const Conv2dShape& s) {
    const index_t nvec = ceil_div(s.oc, VL), K = s.c * s.kh * s.kw;
    if (s.groups != 1 || nvec > 2 || nvec * VL > NR || kOcAccumulators / nvec < 4) return false;
    if (K * nvec * VL > (index_t(64) << 10)) return false;  // the transposed weights stay in L2 (256 KiB)
    if (!phases_fit(s)) return false;
    const PhaseGeometry g = phase_geometry(s);
    const double useful = double(s.oh * s.ow) * double(s.oc);
    const double gemm = useful / (double(gemm_lanes(s, g)) * double(ceil_div(s.oc, MR) * MR));
    const double here = double(s.oc) / double(nvec * VL);
    // NOTE: where neither wastes lanes the GEMM is faster: Inception's 1x1 192 -> 16 on 28x28 took 1.15x the
    // time here, 480 -> 16 on 14x14 1.47x (one thread, separate processes in turns, AMD EPYC, Zen 3).
    return here > 1.1 * gemm;
}

// Pixels [off, off + R) of an output row (in the phase images' column numbering) for all channels, stored at
// yp (channel o's R pixels at yp + o * P): bias[o] + sum_k rows[k][off + r] * wt[k * NR + o], ReLU'd if asked.
// A tile of VL pixels and one vector of channels is transposed in registers and stored a vector per channel;
// any other goes through memory, a float at a time.
template <int NVEC, int R>
void oc_vectors_tile(index_t K, const float* const* rows, index_t off, const float* wt, const float* bias, bool relu,
                     index_t oc, float* yp, index_t P) {
    vf acc[R][NVEC];
    for (int v = 0; v < NVEC; ++v) {
        const vf b = vload(bias + v * VL);
        for (int r = 0; r < R; ++r) acc[r][v] = b;
    }
    for (index_t k = 0; k < K; ++k) {
        const float* xr = rows[k] + off;
        vf wv[NVEC];
        for (int v = 0; v < NVEC; ++v) wv[v] = vload(wt + k * NR + v * VL);
        for (int r = 0; r < R; ++r) {
            const vf xb = vbroadcast(xr[r]);
            for (int v = 0; v < NVEC; ++v) acc[r][v] += xb * wv[v];
        }
    }
    if constexpr (NVEC == 1 && R == VL) {
        vf t[VL];
        for (int r = 0; r < R; ++r) t[r] = relu ? vrelu(acc[r][0]) : acc[r][0];
        vtranspose(t);
        for (index_t o = 0; o < oc; ++o) vstore(yp + o * P, t[o]);
    } else {
        alignas(64) float tile[R * NVEC * VL];
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < NVEC; ++v) vstore(tile + (r * NVEC + v) * VL, relu ? vrelu(acc[r][v]) : acc[r][v]);
        for (index_t o = 0; o < oc; ++o)
            for (int r = 0; r < R; ++r) yp[o * P + r] = tile[r * NVEC * VL + o];
    }
}

// Output rows [oh0, oh1) of one image: each row in runs of R pixels, the last run moved back to end at the
// row's end (recomputing a few pixels) so that nothing past the row is read.
template <int NVEC, int R>
void oc_vectors_rows(const Conv2dShape& s, index_t Wph, index_t oh0, index_t oh1, const float* const* rows,
                     const float* wt, const float* bias, bool relu, float* y) {
    const index_t K = s.c * s.kh * s.kw, P = s.oh * s.ow, OW = s.ow;
    for (index_t oh = oh0; oh < oh1; ++oh)
        for (index_t j = 0; j < OW; j += R) {
            const index_t ow0 = imin(j, OW - R);
            oc_vectors_tile<NVEC, R>(K, rows, oh * Wph + ow0, wt, bias, relu, s.oc, y + oh * OW + ow0, P);
        }
}

// R: a run length from a few choices, at most OW and the register tile's rows, wasting the fewest pixels.
template <int NVEC>
void oc_vectors_dispatch(const Conv2dShape& s, index_t Wph, index_t oh0, index_t oh1, const float* const* rows,
                         const float* wt, const float* bias, bool relu, float* y) {
    constexpr int kMax = kOcAccumulators / NVEC;
    static constexpr int kChoices[] = {24, 20, 16, 14, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1};
    int R = 1;
    index_t best = -1;
    for (int c : kChoices) {
        if (c > kMax || c > s.ow) continue;
        const index_t work = ceil_div(s.ow, c) * c;  // pixels computed per row
        if (best < 0 || work < best) best = work, R = c;
    }
    // NOTE: with AVX2, one vector of channels takes runs of VL pixels, stored transposed (see oc_vectors_tile),
    // wherever they compute at most a fifth more pixels than the best run: LeNet-5's C1 (6 channels, rows of
    // 28) had taken runs of 7, 7 accumulators that left the FMA units waiting on each other's latency and 42
    // floats stored one by one per run. In separate processes in turns on an AMD EPYC (Zen 3), same bits, one
    // thread: that layer 0.88-0.95x the time at batch 64, 0.81x at batch 1. (AVX-512, not measured so, keeps
    // its runs of 14 there.)
    if (NVEC == 1 && VL == 8 && s.ow >= VL && ceil_div(s.ow, VL) * VL * 5 <= best * 6) R = VL;
#define CNNFAST_OC_CASE(RR)                                                                 \
    case RR:                                                                                \
        if constexpr (RR <= kMax) return oc_vectors_rows<NVEC, RR>(s, Wph, oh0, oh1, rows, wt, bias, relu, y); \
        break;
    switch (R) {
        CNNFAST_OC_CASE(24)
        CNNFAST_OC_CASE(20)
        CNNFAST_OC_CASE(16)
        CNNFAST_OC_CASE(14)
        CNNFAST_OC_CASE(12)
        CNNFAST_OC_CASE(10)
        CNNFAST_OC_CASE(8)
        CNNFAST_OC_CASE(7)
        CNNFAST_OC_CASE(6)
        CNNFAST_OC_CASE(5)
        CNNFAST_OC_CASE(4)
        CNNFAST_OC_CASE(3)
        CNNFAST_OC_CASE(2)
        default: return oc_vectors_rows<NVEC, 1>(s, Wph, oh0, oh1, rows, wt, bias, relu, y);
    }
#undef CNNFAST_OC_CASE
}

// wt_prepared: pixel_major_pack_b()'s transposed weights (kPrepackTransposed), or null to transpose them here.
void conv2d_oc_vectors(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                       Activation act, const float* wt_prepared) {
    const index_t nvec = ceil_div(s.oc, VL), K = s.c * s.kh * s.kw, HW = s.h * s.w, P = s.oh * s.ow;
    const PhaseGeometry g = phase_geometry(s);
    // With stride 1 and no padding at the top and left, the phase image is the input itself.
    const bool in_place = s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 && s.pad_l == 0 && g.Hph == s.h &&
                          g.Wph == s.w;
    const int threads = get_num_threads();
    const index_t per_image = s.c * g.per_channel;
    const index_t chunk = in_place ? s.n : imax(1, imin(s.n, (index_t(2) << 20) / imax(1, per_image)));
    // Tasks: (image, band of output rows), as many bands per image as it takes to give every thread one.
    const index_t bands = imin(s.oh, imax(1, ceil_div(threads, imin(chunk, s.n))));
    Scratch phases(in_place ? 0 : static_cast<std::size_t>(chunk * per_image));
    Scratch transposed(wt_prepared ? 0 : static_cast<std::size_t>(pixel_major_b_floats(s)));
    if (!wt_prepared) pixel_major_pack_b(s, w, transposed.p);
    const float* const wt = wt_prepared ? wt_prepared : transposed.p;
    alignas(64) float bias_v[2 * VL];
    for (index_t o = 0; o < 2 * VL; ++o) bias_v[o] = bias && o < s.oc ? bias[o] : 0.f;
    PerThread<const float*> row_tables(threads, static_cast<std::size_t>(K));
    const bool relu = act == Activation::relu;
    parallel(threads, [&] {
        DenormalsOff ftz;
        const float** const rows = row_tables.get();
        for (index_t n_begin = 0; n_begin < s.n; n_begin += chunk) {
            const index_t n_count = imin(chunk, s.n - n_begin);
            if (!in_place) build_phases_of_images(s, g, x, n_begin, n_count, phases.p);
#pragma omp for schedule(static)
            for (index_t t = 0; t < n_count * bands; ++t) {
                const index_t ni = t / bands, b = t % bands;
                const index_t oh0 = b * s.oh / bands, oh1 = (b + 1) * s.oh / bands;
                phase_rows(s, g, in_place ? x + (n_begin + ni) * s.c * HW : phases.p + ni * per_image, K, rows);
                float* yn = y + (n_begin + ni) * s.oc * P;
                if (nvec == 1)
                    oc_vectors_dispatch<1>(s, g.Wph, oh0, oh1, rows, wt, bias_v, relu, yn);
                else
                    oc_vectors_dispatch<2>(s, g.Wph, oh0, oh1, rows, wt, bias_v, relu, yn);
            }
        }
    });
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
