// cnnfast: CPU kernels for convolutional networks (float32, NCHW / OIHW).
//
// This is the whole public C++ API. Every function here is safe to call from several threads at once,
// never touches Python, and expects arguments that were already validated (debug builds assert them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace cnnfast {

using index_t = std::int64_t;

enum class Activation : int { none = 0, relu = 1 };

// --- convolution --------------------------------------------------------------------------------
// x: (n, c, h, w); weight: (oc, c / groups, kh, kw); bias: (oc) or null; y: (n, oc, oh, ow).
// Padding may be asymmetric ('same' with an even kernel): pad_t / pad_l are the leading pads, the
// trailing ones are implied by oh / ow.
struct Conv2dShape {
    index_t n, c, h, w;
    index_t oc, kh, kw;
    index_t stride_h, stride_w;
    index_t pad_t, pad_l;
    index_t dil_h, dil_w;
    index_t groups;
    index_t oh, ow;
    // Floats from one image of y to the next: 0 (or oc * oh * ow) for a packed y; more where y is a channel
    // slice of a larger array (out[:, c0:c1] of a concatenation), each image still contiguous. Forward only.
    index_t y_image = 0;
};
inline index_t conv2d_y_image(const Conv2dShape& s) { return s.y_image > 0 ? s.y_image : s.oc * s.oh * s.ow; }

// automatic picks Winograd F(4x4, 3x3) for 3x3 stride-1 layers where it is faster (and, with prepared
// weights, for strided layers whose taps split into 3x3 ones over the stride phases), direct GEMM otherwise.
enum class ConvAlgorithm : int { automatic = 0, direct = 1, winograd = 2 };

// Weights prepared once for a layer that runs many times: rearranged for the kernels of the ISA in use
// (GEMM micro-panels for the direct path, transformed filters for Winograd), work a call otherwise redoes.
// What is prepared depends on the path a call takes, which its shape and algorithm decide; conv2d_f32 uses
// a ConvPrepared when the call takes the path it was made for on the same ISA with weights of the same
// shape, and reads the weights as usual otherwise. It holds a copy: it must be made again when the
// weights change. Memory: about the weights' size for the direct path, 4x for Winograd (36 / 9 points).
struct ConvPrepared {
    int kind = 0;  // 0: the path has nothing to prepare
    int isa = -1;  // the Isa (runtime.h) whose kernels it was made for
    index_t oc = 0, c = 0, kh = 0, kw = 0, groups = 0;
    index_t floats = 0;
    std::shared_ptr<float> data;  // 64-byte aligned
};
ConvPrepared conv2d_prepare_f32(const Conv2dShape& s, const float* weight,
                                ConvAlgorithm algorithm = ConvAlgorithm::automatic);

// residual (optional): an array of y's shape, not overlapping y, added before the activation (a residual
// block's shortcut): y = act(conv(x) + bias + residual), in the GEMM's store where the path allows; packed
// (N, O, H_out, W_out) even where y's images lie further apart (s.y_image).
void conv2d_f32(const Conv2dShape& s, const float* x, const float* weight, const float* bias, float* y,
                Activation act, ConvAlgorithm algorithm = ConvAlgorithm::automatic,
                const ConvPrepared* prepared = nullptr, const float* residual = nullptr);
// Whether ConvAlgorithm::winograd can compute this shape (3x3, stride 1, dilation 1, one group).
bool conv2d_winograd_applies(const Conv2dShape& s);
// Plain nested loops accumulating in double: the specification the fast kernels are tested against.
void conv2d_f32_reference(const Conv2dShape& s, const float* x, const float* weight, const float* bias,
                          float* y, Activation act, const float* residual = nullptr);

// --- pooling -------------------------------------------------------------------------------------
enum class PoolKind : int { max = 0, avg = 1 };

// x: (n, c, h, w) -> y: (n, c, oh, ow). Windows are clipped to the padded input (PyTorch semantics);
// max ignores padding and propagates NaN; avg divides by the clipped window (count_include_pad) or by
// the number of in-bounds elements.
struct Pool2dShape {
    index_t n, c, h, w;
    index_t kh, kw;
    index_t stride_h, stride_w;
    index_t pad_h, pad_w;
    index_t oh, ow;
    bool count_include_pad;
};

void pool2d_f32(PoolKind kind, const Pool2dShape& s, const float* x, float* y);
void pool2d_f32_reference(PoolKind kind, const Pool2dShape& s, const float* x, float* y);

// x: (planes, hw) -> y: (planes): the mean of each plane.
void global_avg_pool_f32(index_t planes, index_t hw, const float* x, float* y);
void global_avg_pool_f32_reference(index_t planes, index_t hw, const float* x, float* y);

// --- element-wise --------------------------------------------------------------------------------
// y[i] = a[i] + b[i], then ReLU if asked. y may alias a or b exactly.
void add_f32(index_t count, const float* a, const float* b, float* y, Activation act);
void add_f32_reference(index_t count, const float* a, const float* b, float* y, Activation act);

// --- fully connected -----------------------------------------------------------------------------
// x: (batch, in); weight: (out, in); bias: (out) or null; y: (batch, out) = x @ weight.T + bias.
// The weight transposed into the GEMM's panels once (its size), for calls with batches of 4 or more: used
// by a call on the same ISA with a weight of the same shape, ignored otherwise (smaller batches read the weight).
struct LinearPrepared {
    int isa = -1;  // the Isa (runtime.h) whose kernels it was made for
    index_t in = 0, out = 0;
    index_t floats = 0;
    std::shared_ptr<float> data;  // 64-byte aligned
};
LinearPrepared linear_prepare_f32(index_t in, index_t out, const float* weight);
void linear_f32(index_t batch, index_t in, index_t out, const float* x, const float* weight, const float* bias,
                float* y, Activation act, const LinearPrepared* prepared = nullptr);
void linear_f32_reference(index_t batch, index_t in, index_t out, const float* x, const float* weight,
                          const float* bias, float* y, Activation act);

// --- boxes ---------------------------------------------------------------------------------------
// Boxes are (x1, y1, x2, y2) rows. iou: (na, nb). A pair whose union is empty (two zero-area boxes)
// has IoU 0.
void box_iou_f32(index_t na, const float* a, index_t nb, const float* b, float* iou);
void box_iou_f32_reference(index_t na, const float* a, index_t nb, const float* b, float* iou);

// Greedy non-maximum suppression. Candidates are taken in descending score order, ties by ascending
// index; NaN scores and scores <= score_threshold (when has_score_threshold) are dropped; a candidate is
// suppressed when its IoU with an already kept box of the same class (all one class when class_ids is
// null) is strictly greater than iou_threshold. Writes at most max_output indices to keep (in kept order)
// and returns how many. keep must hold n entries.
struct NmsOptions {
    float iou_threshold;
    bool has_score_threshold;
    float score_threshold;
    index_t max_output;  // < 0: no limit
};
index_t nms_f32(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids,
                const NmsOptions& opt, std::int64_t* keep);
index_t nms_f32_reference(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids,
                          const NmsOptions& opt, std::int64_t* keep);

// --- gradients -----------------------------------------------------------------------------------
// Each writes (never accumulates into) its outputs. Shapes as in the forward functions; dy is the gradient of
// the forward's output. A fused ReLU's mask is applied by the caller (relu_backward_f32) before these.
void conv2d_backward_input_f32(const Conv2dShape& s, const float* dy, const float* weight, float* dx);
void conv2d_backward_input_f32_reference(const Conv2dShape& s, const float* dy, const float* weight, float* dx);
// dweight: (oc, c / groups, kh, kw); dbias: (oc) or null.
void conv2d_backward_weight_f32(const Conv2dShape& s, const float* x, const float* dy, float* dweight, float* dbias);
void conv2d_backward_weight_f32_reference(const Conv2dShape& s, const float* x, const float* dy, float* dweight,
                                          float* dbias);

// Max pooling routes each gradient to its window's maximum (PyTorch's choice among ties and NaN).
void pool2d_backward_f32(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx);
void pool2d_backward_f32_reference(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx);
void global_avg_pool_backward_f32(index_t planes, index_t hw, const float* dy, float* dx);
void global_avg_pool_backward_f32_reference(index_t planes, index_t hw, const float* dy, float* dx);

// dx (batch, in), dweight (out, in), dbias (out): each may be null when not wanted.
void linear_backward_f32(index_t batch, index_t in, index_t out, const float* x, const float* weight, const float* dy,
                         float* dx, float* dweight, float* dbias);
void linear_backward_f32_reference(index_t batch, index_t in, index_t out, const float* x, const float* weight,
                                   const float* dy, float* dx, float* dweight, float* dbias);

// dx = dy where y > 0 else 0 (y: the ReLU's output). dx may alias dy.
void relu_backward_f32(index_t count, const float* dy, const float* y, float* dx);
void relu_backward_f32_reference(index_t count, const float* dy, const float* y, float* dx);

}  // namespace cnnfast
