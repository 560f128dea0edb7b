// The pieces of the _core module, one per op family.
#pragma once

#include <pybind11/pybind11.h>

namespace cnnfast::bindings {
namespace py = pybind11;
// m: the public module; ref: its `reference` submodule, holding the plain reference kernels.
void bind_runtime(py::module_& m);
void bind_conv(py::module_& m, py::module_& ref);
void bind_pool(py::module_& m, py::module_& ref);
void bind_dense(py::module_& m, py::module_& ref);
void bind_boxes(py::module_& m, py::module_& ref);
}  // namespace cnnfast::bindings
