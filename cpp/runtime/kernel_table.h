// Internal: the per-ISA kernel entry points and the table the public functions dispatch through.
// Each ISA's translation units define the functions of its namespace (isa_generic, isa_avx2, isa_avx512).
#pragma once

#include "cnnfast/cnnfast.h"
#include "cnnfast/runtime.h"

namespace cnnfast {

// What conv2d_prepack() makes of a convolution's weights, by the path the shape takes.
constexpr int kPrepackNone = 0;      // the path reads the weights as they are
constexpr int kPrepackPanels = 1;    // direct (indirect GEMM): A packed whole into MR-row micro-panels
constexpr int kPrepackWinograd = 2;  // Winograd F(4x4, 3x3) or F(4x4, 5x5): the filters transformed, every output-channel block
constexpr int kPrepackTransposed = 3;  // direct, pixels by channels (small outputs): the weights transposed
constexpr int kPrepackWinograd2x2 = 4;  // Winograd F(2x2, 3x3) or F(2x2, 5x5) (images of few tiles): the filters transformed
constexpr int kPrepackWinogradPhases = 5;  // strided, Winograd F(4x4, 3x3), F(5x5, 2x2) or F(5x5, 4x4) on the stride phases: their filters transformed
constexpr int kPrepackWinogradPhases7x7 = 6;  // the same by F(7x7, 2x2) (enough tiles)
constexpr int kPrepackWinograd6x6 = 7;  // Winograd F(6x6, 3x3) (large images): the filters transformed

#define CNNFAST_DECLARE_ISA_KERNELS(NS)                                                                      \
    namespace NS {                                                                                            \
    void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y, Activation a,     \
                ConvAlgorithm algo, const float* prepacked, const float* residual);                           \
    int conv2d_prepack_kind(const Conv2dShape& s, ConvAlgorithm algo);                                        \
    index_t conv2d_prepack_floats(const Conv2dShape& s, int kind);                                            \
    void conv2d_prepack(const Conv2dShape& s, int kind, const float* w, float* dst);                          \
    void pool2d(PoolKind kind, const Pool2dShape& s, const float* x, float* y);                               \
    void global_avg_pool(index_t planes, index_t hw, const float* x, float* y);                               \
    void add(index_t count, const float* a, const float* b, float* y, Activation act);                        \
    void linear(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* b,       \
                float* y, Activation act, const float* prepacked);                                            \
    index_t linear_prepack_floats(index_t in, index_t out);                                                   \
    void linear_prepack(index_t in, index_t out, const float* w, float* dst);                                 \
    void box_iou(index_t na, const float* a, index_t nb, const float* b, float* iou);                         \
    index_t nms(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids,            \
                const NmsOptions& opt, std::int64_t* keep);                                                   \
    void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* w, float* dx);              \
    void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* db);  \
    void pool2d_backward(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx);     \
    void global_avg_pool_backward(index_t planes, index_t hw, const float* dy, float* dx);                    \
    void linear_backward(index_t batch, index_t in, index_t out, const float* x, const float* w,              \
                         const float* dy, float* dx, float* dw, float* db);                                   \
    void relu_backward(index_t count, const float* dy, const float* y, float* dx);                            \
    float fma_probe(std::int64_t iterations, std::int64_t* flops);                                            \
    }

CNNFAST_DECLARE_ISA_KERNELS(isa_generic)
#ifdef CNNFAST_HAVE_X86_ISAS
CNNFAST_DECLARE_ISA_KERNELS(isa_avx2)
CNNFAST_DECLARE_ISA_KERNELS(isa_avx512)
#endif

struct KernelTable {
    Isa isa;
    decltype(&isa_generic::conv2d) conv2d;
    decltype(&isa_generic::conv2d_prepack_kind) conv2d_prepack_kind;
    decltype(&isa_generic::conv2d_prepack_floats) conv2d_prepack_floats;
    decltype(&isa_generic::conv2d_prepack) conv2d_prepack;
    decltype(&isa_generic::pool2d) pool2d;
    decltype(&isa_generic::global_avg_pool) global_avg_pool;
    decltype(&isa_generic::add) add;
    decltype(&isa_generic::linear) linear;
    decltype(&isa_generic::linear_prepack_floats) linear_prepack_floats;
    decltype(&isa_generic::linear_prepack) linear_prepack;
    decltype(&isa_generic::box_iou) box_iou;
    decltype(&isa_generic::nms) nms;
    decltype(&isa_generic::conv2d_backward_input) conv2d_backward_input;
    decltype(&isa_generic::conv2d_backward_weight) conv2d_backward_weight;
    decltype(&isa_generic::pool2d_backward) pool2d_backward;
    decltype(&isa_generic::global_avg_pool_backward) global_avg_pool_backward;
    decltype(&isa_generic::linear_backward) linear_backward;
    decltype(&isa_generic::relu_backward) relu_backward;
    decltype(&isa_generic::fma_probe) fma_probe;
};

const KernelTable& kernels();

}  // namespace cnnfast
