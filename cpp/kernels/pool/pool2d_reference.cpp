// The specification of pooling (PyTorch semantics), plain loops.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cnnfast/cnnfast.h"

namespace cnnfast {

void pool2d_f32_reference(PoolKind kind, const Pool2dShape& s, const float* x, float* y) {
    for (index_t p = 0; p < s.n * s.c; ++p)
        for (index_t oh = 0; oh < s.oh; ++oh)
            for (index_t ow = 0; ow < s.ow; ++ow) {
                const index_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
                double acc = 0;
                float m = -std::numeric_limits<float>::infinity();
                index_t inside = 0;
                // the window clipped to the input (the padding holds nothing to visit)
                for (index_t ih = std::max<index_t>(h0, 0); ih < std::min(h0 + s.kh, s.h); ++ih)
                    for (index_t iw = std::max<index_t>(w0, 0); iw < std::min(w0 + s.kw, s.w); ++iw) {
                        const float v = x[(p * s.h + ih) * s.w + iw];
                        if (std::isnan(v) || v > m) m = std::isnan(m) ? m : v;
                        acc += v;
                        ++inside;
                    }
                float out;
                if (kind == PoolKind::max) {
                    out = m;
                } else {
                    // the divisor counts padding, but not the part of a window past the padded input
                    const index_t he = std::min(h0 + s.kh, s.h + s.pad_h), we = std::min(w0 + s.kw, s.w + s.pad_w);
                    const index_t div = s.count_include_pad ? (he - h0) * (we - w0) : inside;
                    out = div > 0 ? static_cast<float>(acc / div) : 0.f;
                }
                y[(p * s.oh + oh) * s.ow + ow] = out;
            }
}

void global_avg_pool_f32_reference(index_t planes, index_t hw, const float* x, float* y) {
    for (index_t p = 0; p < planes; ++p) {
        double acc = 0;
        for (index_t i = 0; i < hw; ++i) acc += x[p * hw + i];
        y[p] = static_cast<float>(acc / static_cast<double>(hw));
    }
}

}  // namespace cnnfast

namespace cnnfast {

void pool2d_backward_f32_reference(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx) {
    const index_t HW = s.h * s.w;
    for (index_t i = 0; i < s.n * s.c * HW; ++i) dx[i] = 0.f;
    for (index_t p = 0; p < s.n * s.c; ++p)
        for (index_t oh = 0; oh < s.oh; ++oh)
            for (index_t ow = 0; ow < s.ow; ++ow) {
                const index_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
                const index_t hs = std::max<index_t>(h0, 0), he = std::min(h0 + s.kh, s.h);
                const index_t ws = std::max<index_t>(w0, 0), we = std::min(w0 + s.kw, s.w);
                if (hs >= he || ws >= we) continue;
                const float g = dy[(p * s.oh + oh) * s.ow + ow];
                if (kind == PoolKind::max) {
                    index_t arg = hs * s.w + ws;
                    float m = -std::numeric_limits<float>::infinity();
                    for (index_t ih = hs; ih < he; ++ih)
                        for (index_t iw = ws; iw < we; ++iw) {
                            const float v = x[p * HW + ih * s.w + iw];
                            if (v > m || std::isnan(v)) {
                                m = v;
                                arg = ih * s.w + iw;
                            }
                        }
                    dx[p * HW + arg] += g;
                } else {
                    const index_t hp = std::min(h0 + s.kh, s.h + s.pad_h), wp = std::min(w0 + s.kw, s.w + s.pad_w);
                    const index_t div = s.count_include_pad ? (hp - h0) * (wp - w0) : (he - hs) * (we - ws);
                    for (index_t ih = hs; ih < he; ++ih)
                        for (index_t iw = ws; iw < we; ++iw) dx[p * HW + ih * s.w + iw] += g / static_cast<float>(div);
                }
            }
}

void global_avg_pool_backward_f32_reference(index_t planes, index_t hw, const float* dy, float* dx) {
    for (index_t p = 0; p < planes; ++p)
        for (index_t i = 0; i < hw; ++i) dx[p * hw + i] = static_cast<float>(static_cast<double>(dy[p]) / hw);
}

}  // namespace cnnfast
