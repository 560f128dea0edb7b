// add (the residual add) and linear (the fully connected layer).
#include "args.h"
#include "bindings.h"

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

py::array linear_impl(bool reference, py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle act_obj) {
    const char* fn = "linear";
    FloatArray x = float_array(x_obj, fn, "x");
    FloatArray w = float_array(w_obj, fn, "weight", 2, "(out_features, in_features)");
    if (x.ndim() < 1) value_error(std::string(fn) + "(): x must have at least 1 dimension, got shape ()");
    const index_t in = w.shape(1), out = w.shape(0);
    if (x.shape(x.ndim() - 1) != in)
        value_error(std::string(fn) + "(): x has " + std::to_string(x.shape(x.ndim() - 1)) + " features (shape " +
                    shape_str(x) + ") but weight expects " + std::to_string(in) + " (shape " + shape_str(w) + ")");
    FloatArray b;
    const bool has_bias = !b_obj.is_none();
    if (has_bias) {
        b = float_array(b_obj, fn, "bias", 1, "(out_features,)");
        if (b.shape(0) != out)
            value_error(std::string(fn) + "(): bias has shape " + shape_str(b) + " but weight has " + std::to_string(out) +
                        " output features (shape " + shape_str(w) + ")");
    }
    const Activation act = activation_arg(act_obj, fn);
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
            linear_f32(batch, in, out, xp, wp, bp, yp, act);
    }
    return std::move(y);
}

}  // namespace

void bind_dense(py::module_& m, py::module_& ref) {
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
            [reference](py::handle x, py::handle weight, py::handle bias, py::handle activation) {
                return linear_impl(reference, x, weight, bias, activation);
            },
            py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = py::none(),
            R"doc(linear(x, weight, bias=None, activation=None)

The fully connected layer x @ weight.T + bias, as torch.nn.functional.linear: x (..., in_features), weight
(out_features, in_features), bias (out_features,). activation=None or 'relu'.)doc");
    }
}

}  // namespace cnnfast::bindings
