// The specification of conv2d: plain loops, accumulating in double.
#include "cnnfast/cnnfast.h"

namespace cnnfast {

void conv2d_f32_reference(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                          Activation act, const float* residual) {
    const index_t cg = s.c / s.groups, ocg = s.oc / s.groups;
    for (index_t n = 0; n < s.n; ++n)
        for (index_t o = 0; o < s.oc; ++o) {
            const index_t g = o / ocg;
            for (index_t oh = 0; oh < s.oh; ++oh)
                for (index_t ow = 0; ow < s.ow; ++ow) {
                    double acc = bias ? bias[o] : 0.0;
                    for (index_t ci = 0; ci < cg; ++ci)
                        for (index_t ki = 0; ki < s.kh; ++ki) {
                            const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                            if (ih < 0 || ih >= s.h) continue;
                            for (index_t kj = 0; kj < s.kw; ++kj) {
                                const index_t iw = ow * s.stride_w - s.pad_l + kj * s.dil_w;
                                if (iw < 0 || iw >= s.w) continue;
                                acc += static_cast<double>(x[((n * s.c + g * cg + ci) * s.h + ih) * s.w + iw]) *
                                       w[((o * cg + ci) * s.kh + ki) * s.kw + kj];
                            }
                        }
                    const index_t at = (o * s.oh + oh) * s.ow + ow;
                    if (residual) acc += residual[n * s.oc * s.oh * s.ow + at];
                    if (act == Activation::relu && acc < 0) acc = 0;
                    y[n * conv2d_y_image(s) + at] = static_cast<float>(acc);
                }
        }
}

}  // namespace cnnfast
