// Internal: strided convolutions by Winograd, on the stride phases of their input. A convolution of stride S
// and kernel K is a stride-1 convolution of kernel ceil(K / S) over the S x S phases of its input
// (space-to-depth: channel (c, py, px) of the phase image holds input pixels (i S + py, j S + px) of channel
// c), its taps split the same way, zero past K. Where ceil(K / S) is 3, that convolution takes Winograd
// F(4x4, 3x3): AlexNet's 11x11 stride 4 on 3 channels becomes a 3x3 on 48 channels, 1.19x the products
// (12 x 12 taps for 11 x 11), then 4x fewer multiplies.
#pragma once

#include "phases.h"
#include "winograd_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// The phase images of the images processed together: at most 1.5 MiB, so a call's workspace stays under 16
// MiB with Winograd's 14.
constexpr index_t kPhaseFloats = (index_t(3) << 19) / index_t(sizeof(float));

struct PhasePlan {
    Conv2dShape sp;     // the stride-1 3x3 convolution over the phase images of sp.n images
    index_t per_image;  // floats of one image's phase images
};

inline PhasePlan phase_plan(const Conv2dShape& s) {
    const index_t st = s.stride_h;
    PhasePlan q;
    q.sp = s;
    q.sp.c = s.c * st * st;
    q.sp.h = s.oh + 2;
    q.sp.w = s.ow + 2;
    q.sp.kh = q.sp.kw = 3;
    q.sp.stride_h = q.sp.stride_w = 1;
    q.sp.pad_t = q.sp.pad_l = 0;
    q.sp.dil_h = q.sp.dil_w = 1;
    q.per_image = q.sp.c * q.sp.h * q.sp.w;
    q.sp.n = imin(s.n, kPhaseFloats / q.per_image);
    return q;
}

// NOTE: taken ('auto', prepared weights) where the taps grow by at most 1.25x (11 or 12 at stride 4, 9 at 3,
// 6 at 2), the phase images of one image fit the buffer, and Winograd F(4x4, 3x3) pays on them. AlexNet's
// first layer (3 -> 96, 11x11 stride 4, 227x227) on an Intel Xeon VM, alternated with the direct path: one
// thread 1.75 -> 1.35 ms, two 0.90 -> 0.69; at batch 8 on one thread about even (the output no longer
// stays in cache, and the output transform's scattered stores pay for it), on two 7.7 -> 6.0 ms.
inline bool winograd_phases_pay(const Conv2dShape& s) {
    const index_t st = s.stride_h;
    if (st < 2 || s.stride_w != st || s.kh != s.kw || s.dil_h != 1 || s.dil_w != 1 || s.groups != 1) return false;
    if (ceil_div(s.kh, st) != 3 || 4 * 9 * st * st > 5 * s.kh * s.kh) return false;
    const PhasePlan q = phase_plan(s);
    // NOTE: not winograd_profitable(): the alternative here is the direct strided path, measured only on
    // AlexNet's first layer (see above); the phase convolution keeps the older, wider test.
    const index_t tiles = q.sp.n * ceil_div(q.sp.oh, 4) * ceil_div(q.sp.ow, 4);
    return q.sp.n >= 1 && conv2d_winograd_applies(q.sp) && q.sp.c <= 1024 && q.sp.c >= 16 && q.sp.oc >= 16 &&
           tiles >= 4 && wino_tile(q.sp) == 4;
}

// The phase filters: (oc, c S S, 3, 3), tap (ki, kj) of phase (py, px) being tap (ki S + py, kj S + px).
inline void phase_filters(const Conv2dShape& s, const float* w, float* wp) {
    const index_t st = s.stride_h, k = s.kh;
    for (index_t o = 0; o < s.oc; ++o)
        for (index_t c = 0; c < s.c; ++c)
            for (index_t py = 0; py < st; ++py)
                for (index_t px = 0; px < st; ++px)
                    for (index_t ki = 0; ki < 3; ++ki)
                        for (index_t kj = 0; kj < 3; ++kj) {
                            const index_t kr = ki * st + py, kc = kj * st + px;
                            wp[(((o * s.c + c) * st * st + py * st + px) * 3 + ki) * 3 + kj] =
                                kr < k && kc < k ? w[((o * s.c + c) * k + kr) * k + kc] : 0.f;
                        }
}

}  // namespace

index_t winograd_phases_floats(const Conv2dShape& s) { return wino_filters_floats<4, 3>(phase_plan(s).sp); }

void winograd_phases_prepack(const Conv2dShape& s, const float* w, float* dst) {
    const PhasePlan q = phase_plan(s);
    Scratch wp(static_cast<std::size_t>(s.oc * q.sp.c * 9));
    phase_filters(s, w, wp.p);
    wino_prepack<4, 3>(q.sp, wp.p, dst);
}

// U: winograd_phases_prepack()'s filters.
void conv2d_winograd_phases(const Conv2dShape& s, const float* x, const float* bias, float* y, Activation act,
                            const float* U) {
    const PhasePlan q = phase_plan(s);
    const PhaseGeometry g = phase_geometry(s);
    Scratch xp(static_cast<std::size_t>(q.sp.n * q.per_image));
    for (index_t n0 = 0; n0 < s.n; n0 += q.sp.n) {
        Conv2dShape sp = q.sp;
        sp.n = imin(q.sp.n, s.n - n0);
        // NOTE: the direct path's phase images (phases.h) in its layout: K in (2S, 3S] makes them (OH + 2) x
        // (OW + 2) each, S x S of them per channel, every one read, which is the 3x3 convolution's input.
#pragma omp parallel num_threads(get_num_threads())
        build_phases_of_images(s, g, x, n0, sp.n, xp.p);
        wino_conv<4, 3>(sp, xp.p, nullptr, bias, y + n0 * s.oc * s.oh * s.ow, act, U);
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
