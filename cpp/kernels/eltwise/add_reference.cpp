// The specification of the residual add.
#include "cnnfast/cnnfast.h"

namespace cnnfast {

void add_f32_reference(index_t count, const float* a, const float* b, float* y, Activation act) {
    for (index_t i = 0; i < count; ++i) {
        const float v = a[i] + b[i];
        y[i] = (act == Activation::relu && v < 0.f) ? 0.f : v;
    }
}

}  // namespace cnnfast

namespace cnnfast {

void relu_backward_f32_reference(index_t count, const float* dy, const float* y, float* dx) {
    for (index_t i = 0; i < count; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

}  // namespace cnnfast
