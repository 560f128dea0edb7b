// cnnfast._core: the compiled kernels. The public API re-exports these from the cnnfast package.
#include "bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "cnnfast compiled kernels (float32, NCHW)";
    pybind11::module_ ref = m.def_submodule("reference", "Plain reference kernels, the specification the fast ones are tested against.");
    cnnfast::bindings::bind_runtime(m);
    cnnfast::bindings::bind_conv(m, ref);
    cnnfast::bindings::bind_pool(m, ref);
    cnnfast::bindings::bind_dense(m, ref);
    cnnfast::bindings::bind_boxes(m, ref);
}
