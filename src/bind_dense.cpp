// add (the residual add) and linear (the fully connected layer).
#include "args.h"
#include "bindings.h"
#include "cnnfast/runtime.h"

namespace cnnfast::bindings {

using namespace py_args;

namespace {

py::array add_impl(bool reference, py::handle a_obj, py::handle b_obj, bool relu, py::handle out_obj) {
    const char* fn = "add";
    FloatArray a = float_array(a_obj, fn, "a");
    FloatArray b = float_array(b_obj, fn, "b");
    std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
    std::vector<index_t> bshape(b.shape(), b.shape() + b.ndim());
    if (shape != bshape)
        value_error(std::string(fn) + "(): a and b must have the same shape, got " + shape_str(a) + " and " + shape_str(b));
    FloatArray y = output_array(out_obj, shape, fn, {{"a", a}, {"b", b}}, {a, b});
    const index_t count = a.size();
    const float* ap = a.data();
    const float* bp = b.data();
    float* yp = y.mutable_data();
    const Activation act = relu ? Activation::relu : Activation::none;
    {
        py::gil_scoped_release nogil;
        if (reference)
            add_f32_reference(count, ap, bp, yp, act);
        else
            add_f32(count, ap, bp, yp, act);
    }
    return std::move(y);
}

// The LinearPrepared of `obj` (None gives null), checked against this call's weight shape.
const LinearPrepared* linear_prepared_arg(py::handle obj, const char* fn, const FloatArray& w) {
    if (obj.is_none()) return nullptr;
    if (!py::isinstance<LinearPrepared>(obj))
        type_error(std::string(fn) + "(): prepared must be None or the result of linear_prepare(), got " +
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
    const LinearPrepared& p = obj.cast<const LinearPrepared&>();
    if (p.out != w.shape(0) || p.in != w.shape(1))
        value_error(std::string(fn) + "(): prepared was made for a weight of shape (" + std::to_string(p.out) + ", " +
                    std::to_string(p.in) + "), not " + shape_str(w));
    return &p;
}

py::array linear_impl(bool reference, py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle act_obj,
                      py::handle prepared_obj) {
    const char* fn = "linear";
    FloatArray x = float_array(x_obj, fn, "x");
    FloatArray w = float_array(w_obj, fn, "weight", 2, "(out_features, in_features)");
    if (x.ndim() < 1) value_error(std::string(fn) + "(): x must have at least 1 dimension, got shape ()");
    const index_t in = w.shape(1), out = w.shape(0);
    if (x.shape(x.ndim() - 1) != in)
        value_error(std::string(fn) + "(): x has " + std::to_string(x.shape(x.ndim() - 1)) + " features (shape " +
                    shape_str(x) + ") but weight expects " + std::to_string(in) + " (shape " + shape_str(w) + ")");
    FloatArray b = no_array<FloatArray>();
    const bool has_bias = !b_obj.is_none();
    if (has_bias) {
        b = float_array(b_obj, fn, "bias", 1, "(out_features,)");
        if (b.shape(0) != out)
            value_error(std::string(fn) + "(): bias has shape " + shape_str(b) + " but weight has " + std::to_string(out) +
                        " output features (shape " + shape_str(w) + ")");
    }
    const Activation act = activation_arg(act_obj, fn);
    const LinearPrepared* prepared = reference ? nullptr : linear_prepared_arg(prepared_obj, fn, w);
    std::vector<index_t> shape(x.shape(), x.shape() + x.ndim());
    shape.back() = out;
    const index_t batch = in > 0 ? x.size() / in : checked_numel(std::vector<index_t>(shape.begin(), shape.end() - 1), fn, "batch");
    FloatArray y = output_array(py::none(), shape, fn, {});
    const float* xp = x.data();
    const float* wp = w.data();
    const float* bp = has_bias ? b.data() : nullptr;
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            linear_f32_reference(batch, in, out, xp, wp, bp, yp, act);
        else
            linear_f32(batch, in, out, xp, wp, bp, yp, act, prepared);
    }
    return std::move(y);
}

py::tuple linear_backward_impl(bool reference, py::handle dy_obj, py::handle x_obj, py::handle w_obj, bool input_grad,
                               bool weight_grad, bool bias_grad) {
    const char* fn = "linear_backward";
    FloatArray x = float_array(x_obj, fn, "x");
    FloatArray w = float_array(w_obj, fn, "weight", 2, "(out_features, in_features)");
    FloatArray dy = float_array(dy_obj, fn, "grad_output");
    if (x.ndim() < 1) value_error(std::string(fn) + "(): x must have at least 1 dimension, got shape ()");
    const index_t in = w.shape(1), out = w.shape(0);
    if (x.shape(x.ndim() - 1) != in)
        value_error(std::string(fn) + "(): x has shape " + shape_str(x) + " but weight has shape " + shape_str(w));
    std::vector<index_t> yshape(x.shape(), x.shape() + x.ndim());
    yshape.back() = out;
    if (std::vector<index_t>(dy.shape(), dy.shape() + dy.ndim()) != yshape)
        value_error(std::string(fn) + "(): grad_output has shape " + shape_str(dy) + ", expected " + shape_str(yshape));
    const index_t batch = checked_numel(std::vector<index_t>(yshape.begin(), yshape.end() - 1), fn, "batch");
    py::object dx = py::none(), dw = py::none(), db = py::none();
    float *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
    if (input_grad) {
        FloatArray t(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        dxp = t.mutable_data();
        dx = t;
    }
    if (weight_grad) {
        FloatArray t(std::vector<py::ssize_t>{out, in});
        dwp = t.mutable_data();
        dw = t;
    }
    if (bias_grad) {
        FloatArray t(std::vector<py::ssize_t>{out});
        dbp = t.mutable_data();
        db = t;
    }
    const float *xp = x.data(), *wp = w.data(), *dyp = dy.data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            linear_backward_f32_reference(batch, in, out, xp, wp, dyp, dxp, dwp, dbp);
        else
            linear_backward_f32(batch, in, out, xp, wp, dyp, dxp, dwp, dbp);
    }
    return py::make_tuple(dx, dw, db);
}

py::array relu_backward_impl(bool reference, py::handle dy_obj, py::handle y_obj) {
    const char* fn = "relu_backward";
    FloatArray dy = float_array(dy_obj, fn, "grad_output");
    FloatArray y = float_array(y_obj, fn, "output");
    std::vector<index_t> shape(dy.shape(), dy.shape() + dy.ndim());
    if (std::vector<index_t>(y.shape(), y.shape() + y.ndim()) != shape)
        value_error(std::string(fn) + "(): grad_output has shape " + shape_str(dy) + " but output has shape " + shape_str(y));
    FloatArray dx = output_array(py::none(), shape, fn, {});
    const float *dyp = dy.data(), *yp = y.data();
    float* dxp = dx.mutable_data();
    const index_t count = dy.size();
    {
        py::gil_scoped_release nogil;
        if (reference)
            relu_backward_f32_reference(count, dyp, yp, dxp);
        else
            relu_backward_f32(count, dyp, yp, dxp);
    }
    return std::move(dx);
}

}  // namespace

void bind_dense(py::module_& m, py::module_& ref) {
    py::class_<LinearPrepared>(m, "PreparedLinear",
                               "A fully connected layer's weight prepared by linear_prepare() for the kernels of one "
                               "ISA; pass it as linear(..., prepared=). Holds a copy: make it again when the weight "
                               "changes.")
        .def_property_readonly("nbytes", [](const LinearPrepared& p) { return p.floats * index_t(sizeof(float)); })
        .def_property_readonly("isa", [](const LinearPrepared& p) { return std::string(isa_name(static_cast<Isa>(p.isa))); })
        .def("__repr__", [](const LinearPrepared& p) {
            return "PreparedLinear(in_features=" + std::to_string(p.in) + ", out_features=" + std::to_string(p.out) +
                   ", isa='" + isa_name(static_cast<Isa>(p.isa)) + "', nbytes=" +
                   std::to_string(p.floats * index_t(sizeof(float))) + ")";
        });
    m.def(
        "linear_prepare",
        [](py::handle weight) {
            const char* fn = "linear_prepare";
            FloatArray w = float_array(weight, fn, "weight", 2, "(out_features, in_features)");
            const index_t in = w.shape(1), out = w.shape(0);
            const float* wp = w.data();
            py::gil_scoped_release nogil;
            return linear_prepare_f32(in, out, wp);
        },
        py::arg("weight"),
        R"doc(linear_prepare(weight)

The weight (out_features, in_features) of linear() transposed once into the panels its kernel streams, for a
layer that runs many times on batches of 4 or more: pass the result as linear(..., prepared=). Smaller
batches read the weight as it is (as fast), and a call on another ISA ignores it. It holds a copy of the weight
(the same size): make it again when the weight changes.)doc");
    for (bool reference : {false, true}) {
        py::module_& t = reference ? ref : m;
        t.def(
            "add", [reference](py::handle a, py::handle b, bool relu, py::handle out) { return add_impl(reference, a, b, relu, out); },
            py::arg("a"), py::arg("b"), py::arg("relu") = false, py::arg("out") = py::none(),
            R"doc(add(a, b, relu=False, out=None)

a + b (same shapes), then ReLU when relu=True: the residual add of a ResNet block in one pass. out may be
a or b itself (in place) but must not partly overlap them.)doc");
        t.def(
            "linear",
            [reference](py::handle x, py::handle weight, py::handle bias, py::handle activation, py::handle prepared) {
                return linear_impl(reference, x, weight, bias, activation, prepared);
            },
            py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = py::none(),
            py::arg("prepared") = py::none(),
            R"doc(linear(x, weight, bias=None, activation=None, prepared=None)

The fully connected layer x @ weight.T + bias, as torch.nn.functional.linear: x (..., in_features), weight
(out_features, in_features), bias (out_features,). activation=None or 'relu'. prepared: the result of
linear_prepare(weight), optional; from 4 rows of x up it streams the weight 1.3-2x faster (layers of
cnnfast.nn do this in eval mode).)doc");
        t.def(
            "linear_backward",
            [reference](py::handle grad_output, py::handle x, py::handle weight, bool input_grad, bool weight_grad,
                        bool bias_grad) {
                return linear_backward_impl(reference, grad_output, x, weight, input_grad, weight_grad, bias_grad);
            },
            py::arg("grad_output"), py::arg("x"), py::arg("weight"), py::arg("input_grad") = true,
            py::arg("weight_grad") = true, py::arg("bias_grad") = true,
            R"doc(linear_backward(grad_output, x, weight, input_grad=True, weight_grad=True, bias_grad=True)

Gradients of linear: (grad_output @ weight, grad_output.T @ x, grad_output summed over the batch), with
None for a gradient not asked for. A fused ReLU is undone first with relu_backward.)doc");
        t.def(
            "relu_backward", [reference](py::handle grad_output, py::handle output) { return relu_backward_impl(reference, grad_output, output); },
            py::arg("grad_output"), py::arg("output"),
            R"doc(relu_backward(grad_output, output)

Gradient through a ReLU given its output: grad_output where output > 0, else 0. For add(a, b, relu=True)
it is the gradient of both a and b.)doc");
    }
}

}  // namespace cnnfast::bindings
