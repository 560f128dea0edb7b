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

namespace cnnfast {

void linear_backward_f32_reference(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* dy,
                                   float* dx, float* dw, float* db) {
    if (dx)
        for (index_t b = 0; b < batch; ++b)
            for (index_t i = 0; i < in; ++i) {
                double acc = 0;
                for (index_t o = 0; o < out; ++o) acc += static_cast<double>(dy[b * out + o]) * w[o * in + i];
                dx[b * in + i] = static_cast<float>(acc);
            }
    if (dw)
        for (index_t o = 0; o < out; ++o)
            for (index_t i = 0; i < in; ++i) {
                double acc = 0;
                for (index_t b = 0; b < batch; ++b) acc += static_cast<double>(dy[b * out + o]) * x[b * in + i];
                dw[o * in + i] = static_cast<float>(acc);
            }
    if (db)
        for (index_t o = 0; o < out; ++o) {
            double acc = 0;
            for (index_t b = 0; b < batch; ++b) acc += dy[b * out + o];
            db[o] = static_cast<float>(acc);
        }
}

}  // namespace cnnfast
