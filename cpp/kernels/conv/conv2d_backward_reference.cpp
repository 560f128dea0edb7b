// The specification of the convolution gradients: the forward's loops with the roles swapped, in double.
#include <vector>

#include "cnnfast/cnnfast.h"

namespace cnnfast {

namespace {
// Calls f(n, o, oh, ow, ci_global, ih, iw, weight_index) for every in-bounds term of the forward sum.
template <class F>
void for_each_term(const Conv2dShape& s, F&& f) {
    const index_t cg = s.c / s.groups, ocg = s.oc / s.groups;
    for (index_t n = 0; n < s.n; ++n)
        for (index_t o = 0; o < s.oc; ++o)
            for (index_t oh = 0; oh < s.oh; ++oh)
                for (index_t ow = 0; ow < s.ow; ++ow)
                    for (index_t ci = 0; ci < cg; ++ci)
                        for (index_t ki = 0; ki < s.kh; ++ki) {
                            const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                            if (ih < 0 || ih >= s.h) continue;
                            for (index_t kj = 0; kj < s.kw; ++kj) {
                                const index_t iw = ow * s.stride_w - s.pad_l + kj * s.dil_w;
                                if (iw < 0 || iw >= s.w) continue;
                                f(n, o, oh, ow, (o / ocg) * cg + ci, ih, iw, ((o * cg + ci) * s.kh + ki) * s.kw + kj);
                            }
                        }
}
}  // namespace

void conv2d_backward_input_f32_reference(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
    std::vector<double> acc(static_cast<std::size_t>(s.n * s.c * s.h * s.w), 0.0);
    for_each_term(s, [&](index_t n, index_t o, index_t oh, index_t ow, index_t c, index_t ih, index_t iw, index_t wi) {
        acc[((n * s.c + c) * s.h + ih) * s.w + iw] +=
            static_cast<double>(dy[((n * s.oc + o) * s.oh + oh) * s.ow + ow]) * w[wi];
    });
    for (std::size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<float>(acc[i]);
}

void conv2d_backward_weight_f32_reference(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* db) {
    const index_t cg = s.c / s.groups;
    std::vector<double> acc(static_cast<std::size_t>(s.oc * cg * s.kh * s.kw), 0.0);
    for_each_term(s, [&](index_t n, index_t o, index_t oh, index_t ow, index_t c, index_t ih, index_t iw, index_t wi) {
        acc[wi] += static_cast<double>(dy[((n * s.oc + o) * s.oh + oh) * s.ow + ow]) * x[((n * s.c + c) * s.h + ih) * s.w + iw];
    });
    for (std::size_t i = 0; i < acc.size(); ++i) dw[i] = static_cast<float>(acc[i]);
    if (db) {
        for (index_t o = 0; o < s.oc; ++o) {
            double b = 0.0;
            for (index_t n = 0; n < s.n; ++n)
                for (index_t q = 0; q < s.oh * s.ow; ++q) b += dy[(n * s.oc + o) * s.oh * s.ow + q];
            db[o] = static_cast<float>(b);
        }
    }
}

}  // namespace cnnfast
