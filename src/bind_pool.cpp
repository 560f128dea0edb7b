// max_pool2d, avg_pool2d, global_avg_pool2d.
#include "args.h"
#include "bindings.h"

namespace cnnfast::bindings {

using namespace py_args;

namespace {

index_t pooled_size(index_t in, index_t k, index_t s, index_t p, bool ceil_mode) {
    const index_t span = in + 2 * p - k;
    index_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    // PyTorch: the last window must start inside the input or its left padding
    if (ceil_mode && (out - 1) * s >= in + p) --out;
    return out;
}

Pool2dShape parse_pool(const char* fn, const FloatArray& x, py::handle k_obj, py::handle s_obj, py::handle p_obj,
                       bool ceil_mode, bool count_include_pad) {
    const auto k = pair_arg(k_obj, fn, "kernel_size", 1);
    const auto st = s_obj.is_none() ? k : pair_arg(s_obj, fn, "stride", 1);
    const auto pad = pair_arg(p_obj, fn, "padding", 0);
    Pool2dShape s{};
    s.n = x.shape(0);
    s.c = x.shape(1);
    s.h = x.shape(2);
    s.w = x.shape(3);
    s.kh = k[0];
    s.kw = k[1];
    s.stride_h = st[0];
    s.stride_w = st[1];
    s.pad_h = pad[0];
    s.pad_w = pad[1];
    s.count_include_pad = count_include_pad;
    // the average's divisor is a window area: keep it inside int64
    if (s.kh > (INT64_MAX / 2) / s.kw)
        value_error(std::string(fn) + "(): kernel_size (" + std::to_string(s.kh) + ", " + std::to_string(s.kw) +
                    ") covers 2^62 or more elements");
    if (2 * s.pad_h > s.kh || 2 * s.pad_w > s.kw)
        value_error(std::string(fn) + "(): padding (" + std::to_string(s.pad_h) + ", " + std::to_string(s.pad_w) +
                    ") must be at most half of kernel_size (" + std::to_string(s.kh) + ", " + std::to_string(s.kw) + ")");
    if (s.h + 2 * s.pad_h < s.kh || s.w + 2 * s.pad_w < s.kw)
        value_error(std::string(fn) + "(): kernel_size (" + std::to_string(s.kh) + ", " + std::to_string(s.kw) +
                    ") is larger than the padded input of x shape " + shape_str(x) + ": the output would be empty");
    s.oh = pooled_size(s.h, s.kh, s.stride_h, s.pad_h, ceil_mode);
    s.ow = pooled_size(s.w, s.kw, s.stride_w, s.pad_w, ceil_mode);
    return s;
}

py::array pool_impl(bool reference, PoolKind kind, py::handle x_obj, py::handle k_obj, py::handle s_obj,
                    py::handle p_obj, bool ceil_mode, bool count_include_pad) {
    const char* fn = kind == PoolKind::max ? "max_pool2d" : "avg_pool2d";
    FloatArray x = float_array(x_obj, fn, "x", 4, "(N, C, H, W)");
    const Pool2dShape s = parse_pool(fn, x, k_obj, s_obj, p_obj, ceil_mode, count_include_pad);
    FloatArray y = output_array(py::none(), {s.n, s.c, s.oh, s.ow}, fn, {});
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            pool2d_f32_reference(kind, s, xp, yp);
        else
            pool2d_f32(kind, s, xp, yp);
    }
    return std::move(y);
}

py::array pool_backward_impl(bool reference, PoolKind kind, py::handle dy_obj, py::handle x_obj, py::handle k_obj,
                             py::handle s_obj, py::handle p_obj, bool ceil_mode, bool count_include_pad) {
    const char* fn = kind == PoolKind::max ? "max_pool2d_backward" : "avg_pool2d_backward";
    FloatArray x = float_array(x_obj, fn, "x", 4, "(N, C, H, W)");
    const Pool2dShape s = parse_pool(fn, x, k_obj, s_obj, p_obj, ceil_mode, count_include_pad);
    FloatArray dy = float_array(dy_obj, fn, "grad_output", 4, "(N, C, H_out, W_out)");
    const std::vector<index_t> yshape{s.n, s.c, s.oh, s.ow};
    if (std::vector<index_t>(dy.shape(), dy.shape() + 4) != yshape)
        value_error(std::string(fn) + "(): grad_output has shape " + shape_str(dy) + " but pooling x " + shape_str(x) +
                    " gives " + shape_str(yshape));
    FloatArray dx = output_array(py::none(), {s.n, s.c, s.h, s.w}, fn, {});
    const float *xp = x.data(), *dyp = dy.data();
    float* dxp = dx.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            pool2d_backward_f32_reference(kind, s, xp, dyp, dxp);
        else
            pool2d_backward_f32(kind, s, xp, dyp, dxp);
    }
    return std::move(dx);
}

py::array global_avg_backward_impl(bool reference, py::handle dy_obj, py::handle x_obj) {
    const char* fn = "global_avg_pool2d_backward";
    FloatArray x = float_array(x_obj, fn, "x", 4, "(N, C, H, W)");
    FloatArray dy = float_array(dy_obj, fn, "grad_output", 4, "(N, C, 1, 1)");
    const index_t n = x.shape(0), c = x.shape(1), hw = x.shape(2) * x.shape(3);
    if (dy.shape(0) != n || dy.shape(1) != c || dy.shape(2) != 1 || dy.shape(3) != 1)
        value_error(std::string(fn) + "(): grad_output has shape " + shape_str(dy) + ", expected " +
                    shape_str(std::vector<index_t>{n, c, 1, 1}) + " for x of shape " + shape_str(x));
    FloatArray dx = output_array(py::none(), {n, c, x.shape(2), x.shape(3)}, fn, {});
    const float* dyp = dy.data();
    float* dxp = dx.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            global_avg_pool_backward_f32_reference(n * c, hw, dyp, dxp);
        else
            global_avg_pool_backward_f32(n * c, hw, dyp, dxp);
    }
    return std::move(dx);
}

py::array global_avg_impl(bool reference, py::handle x_obj) {
    const char* fn = "global_avg_pool2d";
    FloatArray x = float_array(x_obj, fn, "x", 4, "(N, C, H, W)");
    const index_t n = x.shape(0), c = x.shape(1), hw = x.shape(2) * x.shape(3);
    if (hw == 0) value_error(std::string(fn) + "(): x has an empty image, shape " + shape_str(x));
    FloatArray y = output_array(py::none(), {n, c, 1, 1}, fn, {});
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            global_avg_pool_f32_reference(n * c, hw, xp, yp);
        else
            global_avg_pool_f32(n * c, hw, xp, yp);
    }
    return std::move(y);
}

}  // namespace

void bind_pool(py::module_& m, py::module_& ref) {
    for (bool reference : {false, true}) {
        py::module_& t = reference ? ref : m;
        t.def(
            "max_pool2d",
            [reference](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding, bool ceil_mode) {
                return pool_impl(reference, PoolKind::max, x, kernel_size, stride, padding, ceil_mode, true);
            },
            py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
            py::arg("ceil_mode") = false,
            R"doc(max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False)

Max pooling of NCHW float32 x, as torch.nn.functional.max_pool2d: stride defaults to kernel_size, padding
(at most half the kernel) is never selected, NaN propagates, ceil_mode keeps a last partial window that
starts inside the input or its left padding. Returns (N, C, H_out, W_out).)doc");
        t.def(
            "avg_pool2d",
            [reference](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding, bool ceil_mode,
                        bool count_include_pad) {
                return pool_impl(reference, PoolKind::avg, x, kernel_size, stride, padding, ceil_mode, count_include_pad);
            },
            py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
            py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
            R"doc(avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)

Average pooling of NCHW float32 x, as torch.nn.functional.avg_pool2d. With count_include_pad the divisor
counts padded positions (but not the part of a ceil_mode window past the padding); without it, only the
input elements in the window. Returns (N, C, H_out, W_out).)doc");
        t.def(
            "global_avg_pool2d", [reference](py::handle x) { return global_avg_impl(reference, x); }, py::arg("x"),
            R"doc(global_avg_pool2d(x)

Mean over each channel's image: (N, C, H, W) -> (N, C, 1, 1), as adaptive_avg_pool2d(x, 1).)doc");
        t.def(
            "max_pool2d_backward",
            [reference](py::handle grad_output, py::handle x, py::handle kernel_size, py::handle stride, py::handle padding,
                        bool ceil_mode) {
                return pool_backward_impl(reference, PoolKind::max, grad_output, x, kernel_size, stride, padding, ceil_mode, true);
            },
            py::arg("grad_output"), py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
            py::arg("padding") = 0, py::arg("ceil_mode") = false,
            R"doc(max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False)

Gradient of max_pool2d with respect to x: each window's gradient goes to its maximum (the first one; the
last NaN where the window holds NaN, as PyTorch).)doc");
        t.def(
            "avg_pool2d_backward",
            [reference](py::handle grad_output, py::handle x, py::handle kernel_size, py::handle stride, py::handle padding,
                        bool ceil_mode, bool count_include_pad) {
                return pool_backward_impl(reference, PoolKind::avg, grad_output, x, kernel_size, stride, padding, ceil_mode,
                                          count_include_pad);
            },
            py::arg("grad_output"), py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
            py::arg("padding") = 0, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
            "avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)\n\nGradient of avg_pool2d with respect to x.");
        t.def(
            "global_avg_pool2d_backward",
            [reference](py::handle grad_output, py::handle x) { return global_avg_backward_impl(reference, grad_output, x); },
            py::arg("grad_output"), py::arg("x"),
            "global_avg_pool2d_backward(grad_output, x)\n\nGradient of global_avg_pool2d with respect to x.");
    }
}

}  // namespace cnnfast::bindings
