// conv2d: argument checks, output shape, GIL release.
#include "args.h"
#include "bindings.h"
#include "cnnfast/runtime.h"

#include <algorithm>

namespace cnnfast::bindings {

using namespace py_args;

namespace {

constexpr const char* kConvDoc = R"doc(conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None, out=None, algorithm='auto', prepared=None, residual=None)

2-D convolution (cross-correlation, as in PyTorch) of float32 NCHW activations with OIHW weights.

Parameters
----------
x : array (N, C, H, W)
weight : array (O, C // groups, kH, kW)
bias : array (O,), optional
stride, dilation : int or (int, int), >= 1
padding : int, (int, int), 'valid' or 'same'
    'same' (stride 1 only) pads so the output has the input's size, splitting an odd total as PyTorch
    does (the extra row/column goes at the end).
groups : int, divides C and O; groups == C gives a depthwise convolution.
activation : None or 'relu', fused into the store.
out : float32 array (N, O, H_out, W_out), optional; must not overlap the inputs. C-contiguous, or each
    image C-contiguous with the images further apart: a channel slice out[:, c0:c1] of a larger array
    (a concatenation's output), which the direct and Winograd paths write in place and the others (and
    calls with a residual) through a packed buffer of the output's size, from the workspace.
algorithm : 'auto', 'direct' or 'winograd'
    'direct' is a GEMM over the exact products (float32 accumulation). 'winograd' (3x3 or 5x5, stride 1,
    dilation 1, groups=1 only) uses Winograd's F(4x4, 3x3) or F(4x4, 5x5), or F(2x2, 3x3) or F(2x2, 5x5)
    on small images with many channels, or (AVX2) F(6x6, 3x3) on large images (by a cost model): about
    2-6x fewer operations on layers with many
    channels, with a larger rounding error (at most 4e-6 * max|x| * max|w| * C * kh * kw on random data,
    typically 100x less).
    'auto' picks Winograd for 3x3 stride-1 layers with at least 32 input and 48 output channels, and for
    5x5 ones with at least 16 input and 16 output channels, outputs of 7x7 or more and 49 2x2 tiles in
    the batch (one 14x14 image). With prepared weights: from 16 input channels on any image (3x3 with 32
    output channels too, from 32 input channels on images over 256 pixels; 5x5 on outputs of 7x7 or
    more), and for strided layers whose taps split into 3x3 ones over the stride phases (AlexNet's 11x11
    stride 4) or, except on AVX-512, into 2x2 ones (3x3 stride 2 with 64 or more channels in and out:
    F(7x7, 2x2) or F(5x5, 2x2)) or 4x4 ones (7x7 stride 2 from 2 channels in and 32 out, ResNet's first
    layer: F(5x5, 4x4)). Winograd's GEMMs take the output channels as vector lanes: with few of them the
    direct path is faster.
prepared : the result of conv2d_prepare() for these weights, optional
    Saves rearranging the weights on every call (layers of cnnfast.nn do this in eval mode).
residual : array of the output's shape, optional
    Added before the activation: y = activation(conv + bias + residual), a residual block's join. The
    direct paths add it as they store y; the others in a pass of their own. out may be residual itself
    (the kernels then read a copy of it, as large as the output).

Returns
-------
y : float32 array (N, O, H_out, W_out), H_out = floor((H + pad_total - dilation * (kH - 1) - 1) / stride) + 1.

Inputs that are not float32 C-contiguous are converted once (a copy); integer, complex, boolean and object
arrays raise TypeError.)doc";

struct ConvArgs {
    Conv2dShape s;
    FloatArray x = no_array<FloatArray>(), w = no_array<FloatArray>(), b = no_array<FloatArray>();
    bool has_bias;
};

ConvArgs parse_conv(const char* fn, py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle stride_obj,
                    py::handle padding_obj, py::handle dilation_obj, py::handle groups_obj) {
    ConvArgs a;
    a.x = float_array(x_obj, fn, "x", 4, "(N, C, H, W)");
    a.w = float_array(w_obj, fn, "weight", 4, "(out_channels, in_channels / groups, kH, kW)");
    a.has_bias = !b_obj.is_none();
    Conv2dShape& s = a.s;
    s.n = a.x.shape(0);
    s.c = a.x.shape(1);
    s.h = a.x.shape(2);
    s.w = a.x.shape(3);
    s.oc = a.w.shape(0);
    s.kh = a.w.shape(2);
    s.kw = a.w.shape(3);
    s.groups = int_arg(groups_obj, fn, "groups", 1);
    const auto stride = pair_arg(stride_obj, fn, "stride", 1);
    const auto dil = pair_arg(dilation_obj, fn, "dilation", 1);
    s.stride_h = stride[0];
    s.stride_w = stride[1];
    s.dil_h = dil[0];
    s.dil_w = dil[1];

    // the shapes as text, for the messages (built only when one is raised)
    const auto xs = [&a] { return shape_str(a.x); };
    const auto ws = [&a] { return shape_str(a.w); };
    if (s.c == 0) value_error(std::string(fn) + "(): x has no channels, shape " + xs());
    if (s.oc == 0 || s.kh == 0 || s.kw == 0)
        value_error(std::string(fn) + "(): weight must have non-zero out_channels and kernel size, got shape " + ws());
    if (s.c % s.groups != 0 || s.oc % s.groups != 0)
        value_error(std::string(fn) + "(): groups=" + std::to_string(s.groups) + " must divide both the input channels (x shape " + xs() +
                    ") and the output channels (weight shape " + ws() + ")");
    if (a.w.shape(1) * s.groups != s.c)
        value_error(std::string(fn) + "(): weight expects " + std::to_string(a.w.shape(1) * s.groups) +
                    " input channels (weight shape " + ws() + ", groups=" + std::to_string(s.groups) + ") but x has " +
                    std::to_string(s.c) + " (x shape " + xs() + ")");
    if (a.has_bias) {
        a.b = float_array(b_obj, fn, "bias", 1, "(out_channels,)");
        if (a.b.shape(0) != s.oc)
            value_error(std::string(fn) + "(): bias has shape " + shape_str(a.b) + " but weight has " +
                        std::to_string(s.oc) + " output channels (shape " + ws() + ")");
    }

    // Effective kernel extent, checked before any arithmetic can overflow.
    constexpr index_t kMaxExtent = INT64_MAX / 8;
    if ((s.kh > 1 && s.dil_h > (kMaxExtent - 1) / (s.kh - 1)) || (s.kw > 1 && s.dil_w > (kMaxExtent - 1) / (s.kw - 1)))
        value_error(std::string(fn) + "(): dilation (" + std::to_string(s.dil_h) + ", " + std::to_string(s.dil_w) +
                    ") with weight shape " + ws() + " gives a kernel extent past " + std::to_string(kMaxExtent));
    const index_t ext_h = s.dil_h * (s.kh - 1) + 1, ext_w = s.dil_w * (s.kw - 1) + 1;
    index_t pad_h_total, pad_w_total;
    if (py::isinstance<py::str>(padding_obj)) {
        const std::string p = padding_obj.cast<std::string>();
        if (p == "valid") {
            pad_h_total = pad_w_total = 0;
            s.pad_t = s.pad_l = 0;
        } else if (p == "same") {
            if (s.stride_h != 1 || s.stride_w != 1)
                value_error(std::string(fn) + "(): padding='same' needs stride 1, got stride (" +
                            std::to_string(s.stride_h) + ", " + std::to_string(s.stride_w) + ")");
            pad_h_total = ext_h - 1;
            pad_w_total = ext_w - 1;
            s.pad_t = pad_h_total / 2;
            s.pad_l = pad_w_total / 2;
        } else {
            value_error(std::string(fn) + "(): padding must be an int, a pair, 'valid' or 'same', got '" + p + "'");
        }
    } else {
        const auto pad = pair_arg(padding_obj, fn, "padding", 0);
        s.pad_t = pad[0];
        s.pad_l = pad[1];
        pad_h_total = 2 * pad[0];
        pad_w_total = 2 * pad[1];
    }
    const index_t span_h = s.h + pad_h_total, span_w = s.w + pad_w_total;
    if (span_h < ext_h || span_w < ext_w)
        value_error(std::string(fn) + "(): the kernel (weight shape " + ws() + ", dilation (" + std::to_string(s.dil_h) +
                    ", " + std::to_string(s.dil_w) + ")) spans " + std::to_string(ext_h) + "x" + std::to_string(ext_w) +
                    ", larger than the padded input " + std::to_string(span_h) + "x" + std::to_string(span_w) +
                    " (x shape " + xs() + "): the output would be empty");
    s.oh = (span_h - ext_h) / s.stride_h + 1;
    s.ow = (span_w - ext_w) / s.stride_w + 1;
    return a;
}

ConvAlgorithm algorithm_arg(py::handle obj, const char* fn, const Conv2dShape& s) {
    const std::string name = py::isinstance<py::str>(obj) ? obj.cast<std::string>() : std::string();
    if (name == "auto") return ConvAlgorithm::automatic;
    if (name == "direct") return ConvAlgorithm::direct;
    if (name == "winograd") {
        if (!conv2d_winograd_applies(s))
            value_error(std::string(fn) + "(): algorithm='winograd' needs a 3x3 or 5x5 kernel, stride 1, dilation 1 and groups=1, got kernel " +
                        std::to_string(s.kh) + "x" + std::to_string(s.kw) + ", stride (" + std::to_string(s.stride_h) + ", " +
                        std::to_string(s.stride_w) + "), dilation (" + std::to_string(s.dil_h) + ", " + std::to_string(s.dil_w) +
                        "), groups=" + std::to_string(s.groups));
        return ConvAlgorithm::winograd;
    }
    value_error(std::string(fn) + "(): algorithm must be 'auto', 'direct' or 'winograd', got " + std::string(py::repr(obj)));
}

const char* prepared_kind_name(int kind) {
    switch (kind) {
        case 1: return "panels";
        case 2:
        case 4:
        case 5:
        case 6:
        case 7: return "winograd";  // F(4x4, *), or F(2x2, *) by image size (4), on stride phases (5, 6), F(6x6, 3x3) (7)
        case 3: return "transposed";
        default: return "none";
    }
}

// The ConvPrepared of `obj` (None gives null), checked against this call's weight shape.
const ConvPrepared* prepared_arg(py::handle obj, const char* fn, const Conv2dShape& s, const FloatArray& w) {
    if (obj.is_none()) return nullptr;
    if (!py::isinstance<ConvPrepared>(obj))
        type_error(std::string(fn) + "(): prepared must be None or the result of conv2d_prepare(), got " +
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
    const ConvPrepared& p = obj.cast<const ConvPrepared&>();
    if (p.oc != s.oc || p.c != s.c || p.kh != s.kh || p.kw != s.kw || p.groups != s.groups)
        value_error(std::string(fn) + "(): prepared was made for weights (" + std::to_string(p.oc) + ", " +
                    std::to_string(p.c / std::max<index_t>(p.groups, 1)) + ", " + std::to_string(p.kh) + ", " +
                    std::to_string(p.kw) + ") with groups=" + std::to_string(p.groups) + ", not weight shape " +
                    shape_str(w) + " with groups=" + std::to_string(s.groups));
    return &p;
}

py::array conv2d_impl(bool reference, py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle stride_obj,
                      py::handle padding_obj, py::handle dilation_obj, py::handle groups_obj, py::handle act_obj,
                      py::handle out_obj, py::handle algo_obj, py::handle prepared_obj, py::handle residual_obj) {
    const char* fn = "conv2d";
    ConvArgs a = parse_conv(fn, x_obj, w_obj, b_obj, stride_obj, padding_obj, dilation_obj, groups_obj);
    const Activation act = activation_arg(act_obj, fn);
    Conv2dShape s = a.s;
    const ConvAlgorithm algo = algorithm_arg(algo_obj, fn, s);
    const ConvPrepared* prepared = reference ? nullptr : prepared_arg(prepared_obj, fn, s, a.w);
    const std::vector<index_t> y_shape{s.n, s.oc, s.oh, s.ow};
    std::vector<std::pair<const char*, py::array>> inputs{{"x", a.x}, {"weight", a.w}};
    if (a.has_bias) inputs.push_back({"bias", a.b});
    FloatArray r = no_array<FloatArray>();
    const bool has_residual = !residual_obj.is_none();
    if (has_residual) {
        r = float_array(residual_obj, fn, "residual", 4, "(N, out_channels, H_out, W_out)");
        if (!std::equal(y_shape.begin(), y_shape.end(), r.shape()))
            value_error(std::string(fn) + "(): residual has shape " + shape_str(r) + " but the output has shape " +
                        shape_str(y_shape) + " (x shape " + shape_str(a.x) + ", weight shape " + shape_str(a.w) + ")");
        inputs.push_back({"residual", r});
    }
    // out a channel slice of a larger array: written in place, its images s.y_image floats apart
    s.y_image = image_strided_output(out_obj, y_shape, fn, inputs);
    py::array y = no_array<py::array>();
    float* yp = nullptr;
    if (s.y_image > 0) {
        y = py::reinterpret_borrow<py::array>(out_obj);
        yp = static_cast<float*>(y.mutable_data());
    } else {
        FloatArray packed = has_residual ? output_array(out_obj, y_shape, fn, inputs, {r})
                                         : output_array(out_obj, y_shape, fn, inputs);
        // out=residual: the kernels read the residual while they write y, so they get a copy of it
        if (has_residual && r.size() > 0 && r.data() == packed.data()) r = FloatArray::ensure(r.attr("copy")());
        yp = packed.mutable_data();
        y = std::move(packed);
    }
    const float* xp = a.x.data();
    const float* wp = a.w.data();
    const float* bp = a.has_bias ? a.b.data() : nullptr;
    const float* rp = has_residual ? r.data() : nullptr;
    {
        py::gil_scoped_release nogil;
        if (reference)
            conv2d_f32_reference(s, xp, wp, bp, yp, act, rp);
        else
            conv2d_f32(s, xp, wp, bp, yp, act, algo, prepared, rp);
    }
    return std::move(y);
}

// Gradient arrays of conv2d. A fused ReLU is undone first: dy * (y > 0).
py::tuple conv2d_backward_impl(bool reference, py::handle dy_obj, py::handle x_obj, py::handle w_obj, py::handle stride_obj,
                               py::handle padding_obj, py::handle dilation_obj, py::handle groups_obj, py::handle act_obj,
                               py::handle y_obj, bool input_grad, bool weight_grad, bool bias_grad) {
    const char* fn = "conv2d_backward";
    ConvArgs a = parse_conv(fn, x_obj, w_obj, py::none(), stride_obj, padding_obj, dilation_obj, groups_obj);
    const Conv2dShape s = a.s;
    const Activation act = activation_arg(act_obj, fn);
    FloatArray dy = float_array(dy_obj, fn, "grad_output", 4, "(N, out_channels, H_out, W_out)");
    const std::vector<index_t> yshape{s.n, s.oc, s.oh, s.ow};
    if (std::vector<index_t>(dy.shape(), dy.shape() + 4) != yshape)
        value_error(std::string(fn) + "(): grad_output has shape " + shape_str(dy) + " but the convolution of x " +
                    shape_str(a.x) + " with weight " + shape_str(a.w) + " gives " + shape_str(yshape));
    FloatArray masked = no_array<FloatArray>();
    if (act == Activation::relu) {
        if (y_obj.is_none()) value_error(std::string(fn) + "(): activation='relu' needs output= (the forward's result)");
        FloatArray y = float_array(y_obj, fn, "output", 4);
        if (std::vector<index_t>(y.shape(), y.shape() + 4) != yshape)
            value_error(std::string(fn) + "(): output has shape " + shape_str(y) + ", expected " + shape_str(yshape));
        masked = FloatArray(std::vector<py::ssize_t>(yshape.begin(), yshape.end()));
        const float *dp = dy.data(), *yp = y.data();
        float* mp = masked.mutable_data();
        const index_t count = dy.size();
        py::gil_scoped_release nogil;
        reference ? relu_backward_f32_reference(count, dp, yp, mp) : relu_backward_f32(count, dp, yp, mp);
    }
    const float* dyp = act == Activation::relu ? masked.data() : dy.data();
    py::object dx = py::none(), dw = py::none(), db = py::none();
    float *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
    if (input_grad) {
        FloatArray t(std::vector<py::ssize_t>{s.n, s.c, s.h, s.w});
        dxp = t.mutable_data();
        dx = t;
    }
    if (weight_grad) {
        FloatArray t(std::vector<py::ssize_t>{s.oc, s.c / s.groups, s.kh, s.kw});
        dwp = t.mutable_data();
        dw = t;
    }
    if (bias_grad) {
        FloatArray t(std::vector<py::ssize_t>{s.oc});
        dbp = t.mutable_data();
        db = t;
    }
    const float *xp = a.x.data(), *wp = a.w.data();
    {
        py::gil_scoped_release nogil;
        if (dxp) reference ? conv2d_backward_input_f32_reference(s, dyp, wp, dxp) : conv2d_backward_input_f32(s, dyp, wp, dxp);
        if (dwp || dbp) {
            if (dwp) {
                reference ? conv2d_backward_weight_f32_reference(s, xp, dyp, dwp, dbp)
                          : conv2d_backward_weight_f32(s, xp, dyp, dwp, dbp);
            } else {
                for (index_t o = 0; o < s.oc; ++o) {
                    double acc = 0;
                    for (index_t n = 0; n < s.n; ++n)
                        for (index_t q = 0; q < s.oh * s.ow; ++q) acc += dyp[(n * s.oc + o) * s.oh * s.ow + q];
                    dbp[o] = static_cast<float>(acc);
                }
            }
        }
    }
    return py::make_tuple(dx, dw, db);
}

}  // namespace

void bind_conv(py::module_& m, py::module_& ref) {
    py::class_<ConvPrepared>(m, "PreparedConv2d",
                             "Convolution weights prepared by conv2d_prepare() for the kernels of one ISA; pass it as "
                             "conv2d(..., prepared=). Holds a copy: make it again when the weights change.")
        .def_property_readonly("kind", [](const ConvPrepared& p) { return std::string(prepared_kind_name(p.kind)); },
                               "'panels' (direct path), 'transposed' (direct path for small outputs, pixels by channels), "
                               "'winograd', or 'none' (the path reads the weights as they are)")
        .def_property_readonly("nbytes", [](const ConvPrepared& p) { return p.floats * index_t(sizeof(float)); })
        .def_property_readonly("isa", [](const ConvPrepared& p) { return std::string(isa_name(static_cast<Isa>(p.isa))); })
        .def("__repr__", [](const ConvPrepared& p) {
            return "PreparedConv2d(kind='" + std::string(prepared_kind_name(p.kind)) + "', isa='" +
                   isa_name(static_cast<Isa>(p.isa)) + "', nbytes=" + std::to_string(p.floats * index_t(sizeof(float))) + ")";
        });
    m.def(
        "conv2d_prepare",
        [](py::handle x, py::handle weight, py::handle stride, py::handle padding, py::handle dilation, py::handle groups,
           py::handle algorithm) {
            const char* fn = "conv2d_prepare";
            ConvArgs a = parse_conv(fn, x, weight, py::none(), stride, padding, dilation, groups);
            const ConvAlgorithm algo = algorithm_arg(algorithm, fn, a.s);
            const float* wp = a.w.data();
            py::gil_scoped_release nogil;
            return conv2d_prepare_f32(a.s, wp, algo);
        },
        py::arg("x"), py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
        py::arg("groups") = 1, py::arg("algorithm") = "auto",
        R"doc(conv2d_prepare(x, weight, stride=1, padding=0, dilation=1, groups=1, algorithm='auto')

The weights of conv2d(x, weight, ...) rearranged once for the kernels of the ISA in use, for a layer that
runs many times: pass the result as conv2d(..., prepared=). x gives the shape (the path a call takes depends
on it); a call of another shape uses it if it takes the same path, and ignores it otherwise. It holds a
copy of the weights: make it again when they change.)doc");
    for (bool reference : {false, true}) {
        py::module_& target = reference ? ref : m;
        target.def(
            "conv2d",
            [reference](py::handle x, py::handle weight, py::handle bias, py::handle stride, py::handle padding,
                        py::handle dilation, py::handle groups, py::handle activation, py::handle out, py::handle algorithm,
                        py::handle prepared, py::handle residual) {
                return conv2d_impl(reference, x, weight, bias, stride, padding, dilation, groups, activation, out, algorithm,
                                   prepared, residual);
            },
            py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1,
            py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("activation") = py::none(),
            py::arg("out") = py::none(), py::arg("algorithm") = "auto", py::arg("prepared") = py::none(),
            py::arg("residual") = py::none(), reference ? "conv2d computed by the plain reference kernel (for tests)." : kConvDoc);
        target.def(
            "conv2d_backward",
            [reference](py::handle grad_output, py::handle x, py::handle weight, py::handle stride, py::handle padding,
                        py::handle dilation, py::handle groups, py::handle activation, py::handle output, bool input_grad,
                        bool weight_grad, bool bias_grad) {
                return conv2d_backward_impl(reference, grad_output, x, weight, stride, padding, dilation, groups, activation,
                                            output, input_grad, weight_grad, bias_grad);
            },
            py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0,
            py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("activation") = py::none(),
            py::arg("output") = py::none(), py::arg("input_grad") = true, py::arg("weight_grad") = true,
            py::arg("bias_grad") = true,
            R"doc(conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, activation=None, output=None, input_grad=True, weight_grad=True, bias_grad=True)

Gradients of conv2d with respect to its input, weight and bias, given grad_output (the gradient of the
loss with respect to conv2d's result) and the forward's arguments. With activation='relu', pass the
forward's result as output: the gradient is masked where it was <= 0. Returns (grad_x, grad_weight,
grad_bias), with None for a gradient not asked for.)doc");
    }
}

}  // namespace cnnfast::bindings
