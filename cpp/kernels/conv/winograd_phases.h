// Internal: strided convolutions by Winograd, on the stride phases of their input. A convolution of stride S
// and kernel K is a stride-1 convolution of kernel ceil(K / S) over the S x S phases of its input
// (space-to-depth: channel (c, py, px) of the phase image holds input pixels (i S + py, j S + px) of channel
// c), its taps split the same way, zero past K. Where ceil(K / S) is 3, that convolution takes Winograd
// F(4x4, 3x3): AlexNet's 11x11 stride 4 on 3 channels becomes a 3x3 on 48 channels, 1.19x the products
// (12 x 12 taps for 11 x 11), then 4x fewer multiplies. Where it is 2 (a 3x3 at stride 2: 4 x 4 taps for 3 x
// 3), it takes F(7x7, 2x2) or F(5x5, 2x2): 64 multiplies per 49 outputs, or 36 per 25, of each of the four
// phase channels, 5.22 or 5.76 per output and input channel against the direct path's 9. Where it is 4 (a 7x7
// at stride 2, ResNet's first layer: 8 x 8 taps for 7 x 7), F(5x5, 4x4): 64 per 25 outputs of each phase
// channel, 10.24 per output and input channel against 49.
#pragma once

#include "../parallel.h"
#include "phases.h"
#include "winograd_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// The phase images of the images processed together: at most 1.5 MiB, so a call's workspace stays under 16
// MiB with Winograd's 14.
constexpr index_t kPhaseFloats = (index_t(3) << 19) / index_t(sizeof(float));

// Stride 2: the input transform reads the phase images from the input in place (PhaseRows2): no copy, no
// workspace for one (ResNet-50's 3x3/2 128 -> 128 on 56x56 would need 1.7 MB), whatever the batch. On that
// layer (one thread, AMD EPYC, Zen 3) building the copy and transforming it took 23% of the samples, the
// in-place transform 19%.
inline bool phases_in_place(const Conv2dShape& s) { return s.stride_h == 2; }

struct PhasePlan {
    Conv2dShape sp;     // the stride-1 convolution (kernel ceil(K / S)) over the phase images of sp.n images
    index_t per_image;  // floats of one image's phase images
};

inline PhasePlan phase_plan(const Conv2dShape& s) {
    const index_t st = s.stride_h, kp = ceil_div(s.kh, st);
    PhasePlan q;
    q.sp = s;
    q.sp.c = s.c * st * st;
    q.sp.h = s.oh + kp - 1;
    q.sp.w = s.ow + kp - 1;
    q.sp.kh = q.sp.kw = kp;
    q.sp.stride_h = q.sp.stride_w = 1;
    q.sp.pad_t = q.sp.pad_l = 0;
    q.sp.dil_h = q.sp.dil_w = 1;
    q.per_image = q.sp.c * q.sp.h * q.sp.w;
    q.sp.n = phases_in_place(s) ? s.n : imin(s.n, kPhaseFloats / q.per_image);
    return q;
}

// Taps in (S, 2S] (a 3x3 at stride 2): F(5x5, 2x2) on the phase images, which shares F(4x4, 3x3)'s points and
// so its input transform, or F(7x7, 2x2) (phase_tile). Per output, 36 points of 25 outputs for each of the
// S x S = 4 phase channels: 5.76 multiplies per input channel where the direct path makes 9, 1.36x fewer with
// ResNet-50's 28x28 output (6 x 6 tiles of 5, 30x30 computed).
inline bool phases_take_2x2(const Conv2dShape& s) { return ceil_div(s.kh, s.stride_h) == 2; }

// The phase convolution's output tile: 4 (F(4x4, 3x3)) for 3x3 taps; for 2x2 taps 7, F(7x7, 2x2) on eight
// points (0, +-1, +-2, +-1/2 and infinity, those of F(6x6, 3x3)), 64 multiplies per 49 outputs of each phase
// channel (5.22 per output and input channel), where that makes at most 0.9x F(5x5, 2x2)'s over at least 16
// tiles, else 5. On ResNet-50's
// 28x28 output, 4 x 4 tiles of 7 cover it exactly where tiles of 5 compute 30x30: 0.79x the multiplies. The
// filters it transforms are 64/36 as large (ResNet-50's 3x3/2 128 -> 128: 16.8 MB instead of 9.4), streamed
// through fewer tiles.
// NOTE: F(7x7, 2x2) against F(5x5, 2x2), prepared, separate processes in turns on an AMD EPYC (Zen 3), one /
// two threads: 3x3/2 128 -> 128 on 56x56 at batch 1 0.87x / 0.84x the time (2.38 against 2.78 ms on one
// thread), at batch 8 0.86x / 0.81x, on 112x112 0.91x / 0.89x, 256 -> 256 on 28x28 at batch 4 and 8
// 0.85-0.88x / 0.85-0.86x; whole ResNet-50 forward passes, batch 1, 0.99x / 0.97x, batch 8 (one thread) 0.99x.
inline int phase_tile(const Conv2dShape& s) {
    if (!phases_take_2x2(s)) return ceil_div(s.kh, s.stride_h) == 4 ? 5 : 4;  // F(5x5, 4x4), F(4x4, 3x3)
    const index_t t7 = s.n * ceil_div(s.oh, 7) * ceil_div(s.ow, 7), t5 = s.n * ceil_div(s.oh, 5) * ceil_div(s.ow, 5);
    return t7 >= 16 && 64.0 * double(t7) <= 0.9 * 36.0 * double(t5) ? 7 : 5;
}

// NOTE: taken ('auto', prepared weights) where the phase images of one image fit the buffer (stride 2: read in
// place, no buffer) and either
//  - the taps become 3x3 and grow by at most 1.25x (11 or 12 at stride 4, 9 at 3, 6 at 2), and Winograd
//    F(4x4, 3x3) pays on the phase images. AlexNet's first layer (3 -> 96, 11x11 stride 4, 227x227) on an
//    Intel Xeon VM, alternated with the direct path: one thread 1.75 -> 1.35 ms, two 0.90 -> 0.69; at batch 8
//    on one thread about even (the output no longer stays in cache, and the output transform's scattered
//    stores pay for it), on two 7.7 -> 6.0 ms;
//  - or, except with AVX-512 (not measured there), the taps become 2x2 at stride 2 (a 3x3 or 4x4 filter),
//    with at least 64 channels in and out and F(5x5, 2x2) making at most 0.8x the direct path's multiplies
//    over at least 32 tiles (see phases_take_2x2); F(7x7, 2x2), where phase_tile takes it, makes fewer.
//    Against the direct path as it now is (B panels copied by its tiles, shifted images), the two run about
//    even on one thread, the direct path 1.02x the time on 3x3/2 128 -> 128 on 56x56 at batch 1, 0.97x on
//    256 -> 256 on 28x28, 1.09x on 512 -> 512 on 14x14, 1.02x and 1.34x on the first two at batch 8
//    (separate processes in turns, AMD EPYC, Zen 3, a noisy host), so this path stays;
//  - or, except with AVX-512 (not measured there), the taps become 4x4 at stride 2 (a 7x7 or 8x8 filter)
//    with at least 2 channels in, 32 out and 64 tiles of 5x5: F(5x5, 4x4). Against the direct path on
//    ResNet's 7x7/2 3 -> 64 on 224x224, prepared, separate processes in turns on an AMD EPYC (Zen 3), one /
//    two threads: 0.72x / 0.79x the time at batch 1, 0.72x / 0.84x at batch 8; on 112x112 0.72x / 0.98x, on
//    80x80 (64 tiles) 0.64x (one thread); 32 out 0.86x (one thread); 2 channels in 0.89x / 0.95x, but 1
//    channel (four phase channels, K = 4 for the GEMMs) 1.30x / 1.49x.
inline bool winograd_phases_pay(const Conv2dShape& s) {
    const index_t st = s.stride_h;
    if (st < 2 || s.stride_w != st || s.kh != s.kw || s.dil_h != 1 || s.dil_w != 1 || s.groups != 1) return false;
    const PhasePlan q = phase_plan(s);
    if (q.sp.n < 1 || q.sp.c > 1024) return false;
    if (phases_take_2x2(s)) {
        if (CNNFAST_VEC_BYTES == 64 || st != 2 || s.c < 64 || s.oc < 64) return false;  // AVX-512: not measured
        const double tiles = double(s.n * ceil_div(s.oh, 5) * ceil_div(s.ow, 5));
        return tiles >= 32 && 36.0 * 4.0 * tiles <= 0.8 * double(s.kh * s.kw) * double(s.n * s.oh * s.ow);
    }
    const index_t kp = ceil_div(s.kh, st);
    if (kp == 4) {
        if (CNNFAST_VEC_BYTES == 64 || st != 2 || s.c < 2 || s.oc < 32) return false;  // AVX-512: not measured
        return s.n * ceil_div(s.oh, 5) * ceil_div(s.ow, 5) >= 64;
    }
    if (kp != 3 || 4 * 9 * st * st > 5 * s.kh * s.kh) return false;
    // NOTE: not winograd_profitable(): the alternative here is the direct strided path, measured only on
    // AlexNet's first layer (see above); the phase convolution keeps the older, wider test.
    const index_t tiles = q.sp.n * ceil_div(q.sp.oh, 4) * ceil_div(q.sp.ow, 4);
    return conv2d_winograd_applies(q.sp) && q.sp.c >= 16 && q.sp.oc >= 16 && tiles >= 4 && wino_tile(q.sp) != 2;
}

// The phase filters: (oc, c S S, kp, kp), tap (ki, kj) of phase (py, px) being tap (ki S + py, kj S + px).
inline void phase_filters(const Conv2dShape& s, const float* w, float* wp) {
    const index_t st = s.stride_h, k = s.kh, kp = ceil_div(k, st);
    for (index_t o = 0; o < s.oc; ++o)
        for (index_t c = 0; c < s.c; ++c)
            for (index_t py = 0; py < st; ++py)
                for (index_t px = 0; px < st; ++px)
                    for (index_t ki = 0; ki < kp; ++ki)
                        for (index_t kj = 0; kj < kp; ++kj) {
                            const index_t kr = ki * st + py, kc = kj * st + px;
                            wp[(((o * s.c + c) * st * st + py * st + px) * kp + ki) * kp + kj] =
                                kr < k && kc < k ? w[((o * s.c + c) * k + kr) * k + kc] : 0.f;
                        }
}

// f called with the phase convolution's tile and kernel sizes as integral constants: its kernel size picks
// the variant, and for 2x2 kernels phase_tile the tile.
template <class F>
decltype(auto) phase_variant(const Conv2dShape& s, F&& f) {
    using Two = std::integral_constant<int, 2>;
    using Five = std::integral_constant<int, 5>;
    switch (ceil_div(s.kh, s.stride_h)) {
        case 4: return f(Five{}, std::integral_constant<int, 4>{});
        case 3: return f(std::integral_constant<int, 4>{}, std::integral_constant<int, 3>{});
        default: return phase_tile(s) == 7 ? f(std::integral_constant<int, 7>{}, Two{}) : f(Five{}, Two{});
    }
}

}  // namespace

index_t winograd_phases_floats(const Conv2dShape& s) {
    return phase_variant(s, [&](auto tm, auto r) { return wino_filters_floats<tm, r>(phase_plan(s).sp); });
}

void winograd_phases_prepack(const Conv2dShape& s, const float* w, float* dst) {
    const PhasePlan q = phase_plan(s);
    Scratch wp(static_cast<std::size_t>(s.oc * q.sp.c * q.sp.kh * q.sp.kw));
    phase_filters(s, w, wp.p);
    phase_variant(s, [&](auto tm, auto r) { wino_prepack<tm, r>(q.sp, wp.p, dst); });
}

// U: winograd_phases_prepack()'s filters.
void conv2d_winograd_phases(const Conv2dShape& s, const float* x, const float* bias, float* y, Activation act,
                            const float* U) {
    const PhasePlan q = phase_plan(s);
    const PhaseGeometry g = phase_geometry(s);
    if (phases_in_place(s)) {
        const PhaseRows2 src{x, s.c, s.h, s.w, s.pad_t, s.pad_l, g.Hph, g.Wph};
        phase_variant(s, [&](auto tm, auto r) { wino_conv_from<tm, r>(q.sp, src, nullptr, bias, y, act, U); });
        return;
    }
    Scratch xp(static_cast<std::size_t>(q.sp.n * q.per_image));
    for (index_t n0 = 0; n0 < s.n; n0 += q.sp.n) {
        Conv2dShape sp = q.sp;
        sp.n = imin(q.sp.n, s.n - n0);
        // NOTE: the direct path's phase images (phases.h) in its layout: K in ((kp - 1) S, kp S] makes them
        // (OH + kp - 1) x (OW + kp - 1) each, S x S of them per channel, every one read, which is the phase
        // convolution's input.
        parallel(get_num_threads(), [&] { build_phases_of_images(s, g, x, n0, sp.n, xp.p); });
        phase_variant(s, [&](auto tm, auto r) {
            wino_conv<tm, r>(sp, xp.p, nullptr, bias, y + n0 * s.oc * s.oh * s.ow, act, U);
        });
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
