// The specification of the fully connected layer, accumulating in double.
#include "cnnfast/cnnfast.h"

namespace cnnfast {

void linear_f32_reference(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* bias,
                          float* y, Activation act) {
    for (index_t b = 0; b < batch; ++b)
        for (index_t o = 0; o < out; ++o) {
            double acc = bias ? bias[o] : 0.0;
            for (index_t k = 0; k < in; ++k) acc += static_cast<double>(x[b * in + k]) * w[o * in + k];
            if (act == Activation::relu && acc < 0) acc = 0;
            y[b * out + o] = static_cast<float>(acc);
        }
}

}  // namespace cnnfast
