// Turning Python arguments into checked C++ values: float32 array views, int-or-pair parameters, output arrays.
// Every failure is a TypeError or ValueError naming the function, the argument and the shapes involved.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cnnfast/cnnfast.h"

namespace cnnfast::py_args {

namespace py = pybind11;
using index_t = cnnfast::index_t;
// NOTE: forcecast lets ensure() convert float64 (and other real dtypes) to float32; without it ensure()
// returns a null array for any cast NumPy does not call safe.
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// An array variable holding no array yet, for one assigned later (or never: an absent optional argument).
// NOTE: the default constructors of py::array and py::array_t each make a NumPy array of length 0: about a
// thousand instructions and three heap allocations. A convolution call made five it never used, a quarter of
// its instructions with 16K multiply-adds (callgrind).
template <class Array>
Array no_array() {
    return py::reinterpret_steal<Array>(py::handle());
}

std::string shape_str(const py::array& a);
std::string shape_str(const std::vector<index_t>& s);

// A float32 C-contiguous view of obj: used as is when it already is one, else converted once. Rejects
// non-floating dtypes (TypeError) and, when ndim >= 0, another number of dimensions (ValueError, with `dims`
// describing the expected layout).
FloatArray float_array(py::handle obj, const char* fn, const char* arg, int ndim = -1, const char* dims = nullptr);

// An int64 C-contiguous view (class ids); rejects float, bool, complex and object dtypes.
Int64Array int_array(py::handle obj, const char* fn, const char* arg, int ndim);

// A Python int (not bool) in [min_value, max_value].
index_t int_arg(py::handle obj, const char* fn, const char* arg, index_t min_value, index_t max_value = INT64_MAX / 4);
// An int or a pair of ints, each in [min_value, max_value].
std::array<index_t, 2> pair_arg(py::handle obj, const char* fn, const char* arg, index_t min_value);
// A real number.
double float_arg(py::handle obj, const char* fn, const char* arg);
// None or 'relu'.
cnnfast::Activation activation_arg(py::handle obj, const char* fn);

// Product of dims with a check against overflow and against sizes no machine can hold.
index_t checked_numel(const std::vector<index_t>& shape, const char* fn, const char* what);

// The array to write into: a new one, or `out` after checking its type, shape, layout and that it shares no
// memory with `inputs` (except those listed in `may_alias`, which it may equal exactly).
FloatArray output_array(py::handle out, const std::vector<index_t>& shape, const char* fn,
                        const std::vector<std::pair<const char*, py::array>>& inputs,
                        const std::vector<py::array>& may_alias = {});

// For `out` a float32 array of `shape` (N, ...) whose images are each C-contiguous but lie further apart than
// their size (a channel slice out[:, c0:c1] of a larger NCHW array), writeable and sharing no memory with
// `inputs`: the floats from one image to the next. 0 for anything else, which output_array() then checks.
index_t image_strided_output(py::handle out, const std::vector<index_t>& shape, const char* fn,
                             const std::vector<std::pair<const char*, py::array>>& inputs);

[[noreturn]] void value_error(const std::string& msg);
[[noreturn]] void type_error(const std::string& msg);

}  // namespace cnnfast::py_args
