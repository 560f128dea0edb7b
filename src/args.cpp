#include "args.h"

#include "cnnfast/runtime.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <sstream>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace cnnfast::py_args {

void value_error(const std::string& msg) { throw py::value_error(msg); }
void type_error(const std::string& msg) { throw py::type_error(msg); }

std::string shape_str(const std::vector<index_t>& s) {
    std::ostringstream os;
    os << "(";
    for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    if (s.size() == 1) os << ",";
    os << ")";
    return os.str();
}

std::string shape_str(const py::array& a) {
    std::vector<index_t> s(a.shape(), a.shape() + a.ndim());
    return shape_str(s);
}

namespace {

// Results under 4 KiB take NumPy's own memory, which is as cheap as the runtime's block cache.
constexpr std::size_t kNumpyBelow = std::size_t(4) << 10;

// A fresh float32 array whose memory comes from the runtime's block cache (released to it when NumPy frees
// the array), so a network's activations reuse pages already mapped instead of faulting new ones in.
FloatArray new_array(const std::vector<index_t>& shape, index_t numel) {
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    const std::size_t bytes = static_cast<std::size_t>(numel) * sizeof(float);
    if (bytes < kNumpyBelow) return FloatArray(dims);
    struct Owned {
        void* p;
        std::size_t bytes;
    };
    auto release = [](void* o) {
        auto* block = static_cast<Owned*>(o);
        cnnfast::buffer_free(block->p, block->bytes);
        delete block;
    };
    auto* owned = new Owned{nullptr, bytes};
    py::capsule base;
    try {
        owned->p = cnnfast::buffer_alloc(bytes);
        base = py::capsule(owned, release);
    } catch (...) {
        release(owned);
        throw;
    }
    return FloatArray(dims, static_cast<float*>(owned->p), base);  // the capsule owns the block from here
}

py::array as_ndarray(py::handle obj, const char* fn, const char* arg) {
    if (obj.is_none()) type_error(std::string(fn) + "(): " + arg + " must be an array, got None");
    if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
    py::module_ np = py::module_::import("numpy");
    try {
        return np.attr("asarray")(obj);
    } catch (py::error_already_set&) {
        type_error(std::string(fn) + "(): " + arg + " must be an array, got " +
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
    }
}

std::string dtype_str(const py::array& a) { return std::string(py::str(a.dtype())); }

// ensure() drops NumPy's error when a conversion fails (a MemoryError naming the shape, say): convert again
// through NumPy so that error reaches the caller.
[[noreturn]] void conversion_failed(const py::array& a, const char* fn, const char* arg, const char* dtype) {
    py::module_::import("numpy").attr("ascontiguousarray")(a, dtype);
    type_error(std::string(fn) + "(): " + arg + " could not be converted to " + dtype + " (dtype " + dtype_str(a) + ")");
}

}  // namespace

FloatArray float_array(py::handle obj, const char* fn, const char* arg, int ndim, const char* dims) {
    // the common case, a float32 C-contiguous ndarray of the right rank, taken as it is
    if (FloatArray::check_(obj) && (ndim < 0 || py::reinterpret_borrow<py::array>(obj).ndim() == ndim))
        return py::reinterpret_borrow<FloatArray>(obj);
    py::array a = as_ndarray(obj, fn, arg);
    if (a.dtype().kind() != 'f')
        type_error(std::string(fn) + "(): " + arg + " must be a real floating-point array, got dtype " + dtype_str(a));
    if (ndim >= 0 && a.ndim() != ndim)
        value_error(std::string(fn) + "(): " + arg + " must be " + std::to_string(ndim) + "-D" +
                    (dims ? std::string(" ") + dims : std::string()) + ", got shape " + shape_str(a));
    // NOTE: float32 C-contiguous arrays pass through without a copy.
    if (!(a.dtype().is(py::dtype::of<float>()) && (a.flags() & py::array::c_style))) {
        // a copy as large as a broadcast view (np.broadcast_to) can be: refuse it before allocating
        const std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
        checked_numel(shape, fn, (std::string("float32 copy of ") + arg).c_str());
    }
    FloatArray f = FloatArray::ensure(a);
    if (!f) conversion_failed(a, fn, arg, "float32");
    return f;
}

Int64Array int_array(py::handle obj, const char* fn, const char* arg, int ndim) {
    py::array a = as_ndarray(obj, fn, arg);
    const char k = a.dtype().kind();
    if (k != 'i' && k != 'u')
        type_error(std::string(fn) + "(): " + arg + " must be an integer array, got dtype " + dtype_str(a));
    if (a.ndim() != ndim)
        value_error(std::string(fn) + "(): " + arg + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(a));
    Int64Array v = Int64Array::ensure(a);
    if (!v) conversion_failed(a, fn, arg, "int64");
    return v;
}

index_t int_arg(py::handle obj, const char* fn, const char* arg, index_t min_value, index_t max_value) {
    const bool is_int = (py::isinstance<py::int_>(obj) && !py::isinstance<py::bool_>(obj)) ||
                        (py::hasattr(obj, "__index__") && !py::isinstance<py::bool_>(obj) && !py::isinstance<py::float_>(obj) &&
                         !py::isinstance<py::array>(obj));
    if (!is_int)
        type_error(std::string(fn) + "(): " + arg + " must be an integer, got " +
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
    const py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
    if (!v) throw py::error_already_set();
    int overflow = 0;  // -1 or 1 when v does not fit in a long long
    const long long value = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
    const bool too_small = overflow < 0 || (overflow == 0 && value < min_value);
    const bool too_large = overflow > 0 || (overflow == 0 && value > max_value);
    if (too_small || too_large) {
        std::string bound = min_value == 1 ? "a positive integer" : min_value == 0 ? "a non-negative integer"
                                                                                  : ">= " + std::to_string(min_value);
        if (too_large) bound = "at most " + std::to_string(max_value);
        value_error(std::string(fn) + "(): " + arg + " must be " + bound + ", got " + std::string(py::str(obj)));
    }
    return static_cast<index_t>(value);
}

std::array<index_t, 2> pair_arg(py::handle obj, const char* fn, const char* arg, index_t min_value) {
    if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
        py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
        if (seq.size() != 2)
            value_error(std::string(fn) + "(): " + arg + " must be an int or a pair of ints, got " + std::string(py::repr(obj)));
        return {int_arg(seq[0], fn, arg, min_value), int_arg(seq[1], fn, arg, min_value)};
    }
    const index_t v = int_arg(obj, fn, arg, min_value);
    return {v, v};
}

double float_arg(py::handle obj, const char* fn, const char* arg) {
    if (py::isinstance<py::bool_>(obj) || !(py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj) ||
                                            py::hasattr(obj, "__float__")))
        type_error(std::string(fn) + "(): " + arg + " must be a real number, got " +
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
    return py::reinterpret_borrow<py::object>(obj).cast<double>();
}

cnnfast::Activation activation_arg(py::handle obj, const char* fn) {
    if (obj.is_none()) return cnnfast::Activation::none;
    if (py::isinstance<py::str>(obj)) {
        const std::string s = obj.cast<std::string>();
        if (s == "relu") return cnnfast::Activation::relu;
        if (s == "none" || s == "linear") return cnnfast::Activation::none;
    }
    value_error(std::string(fn) + "(): activation must be None or 'relu', got " + std::string(py::repr(obj)));
}

namespace {
// Bytes of physical memory, or 0 when the platform does not say.
std::uint64_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
    return 0;
}
}  // namespace

index_t checked_numel(const std::vector<index_t>& shape, const char* fn, const char* what) {
    // NOTE: 2^46 floats (256 TiB) is far past any machine; the cap keeps every later size product in int64.
    constexpr index_t kMax = index_t(1) << 46;
    index_t n = 1;
    for (index_t d : shape) {
        if (d == 0) return 0;
    }
    for (index_t d : shape) {
        if (d > kMax / n) {
            value_error(std::string(fn) + "(): the " + what + " would have shape " + shape_str(shape) +
                        ", more elements than can be allocated");
        }
        n *= d;
    }
    // An array larger than the machine's memory cannot be computed: say so here rather than leave it to the
    // allocator, which may succeed under memory overcommit and let the kernel run out of memory later.
    static const std::uint64_t memory = physical_memory_bytes();
    if (memory > 0 && static_cast<std::uint64_t>(n) * sizeof(float) > memory) {
        value_error(std::string(fn) + "(): the " + what + " would have shape " + shape_str(shape) + " (" +
                    std::to_string(static_cast<std::uint64_t>(n) * sizeof(float) >> 30) +
                    " GiB of float32), more than this machine's memory (" + std::to_string(memory >> 30) + " GiB)");
    }
    return n;
}

namespace {
using ByteRange = std::pair<std::uintptr_t, std::uintptr_t>;
ByteRange byte_range(const py::array& a) {
    const auto lo = reinterpret_cast<std::uintptr_t>(a.data());
    return {lo, lo + static_cast<std::uintptr_t>(a.nbytes())};
}

// Raises unless out's bytes `ro` are clear of every input's, or equal to those of one listed in may_alias.
void check_out_clear_of(const ByteRange& ro, const char* fn,
                        const std::vector<std::pair<const char*, py::array>>& inputs,
                        const std::vector<py::array>& may_alias) {
    if (ro.first == ro.second) return;
    for (const auto& [name, in] : inputs) {
        if (!in || in.nbytes() == 0) continue;
        const auto ri = byte_range(in);
        if (!(ro.first < ri.second && ri.first < ro.second)) continue;
        bool allowed = false;
        for (const auto& a : may_alias)
            if (a.ptr() == in.ptr() && ri == ro) allowed = true;
        if (!allowed)
            value_error(std::string(fn) + "(): out shares memory with " + name + (may_alias.empty() ? "" : " (only an exact alias is allowed)"));
    }
}
}  // namespace

FloatArray output_array(py::handle out, const std::vector<index_t>& shape, const char* fn,
                        const std::vector<std::pair<const char*, py::array>>& inputs,
                        const std::vector<py::array>& may_alias) {
    const index_t numel = checked_numel(shape, fn, "output");
    if (out.is_none()) return new_array(shape, numel);
    if (!py::isinstance<py::array>(out))
        type_error(std::string(fn) + "(): out must be a numpy.ndarray, got " +
                   std::string(py::str(py::type::of(out).attr("__name__"))));
    py::array o = py::reinterpret_borrow<py::array>(out);
    if (!o.dtype().is(py::dtype::of<float>()))
        type_error(std::string(fn) + "(): out must have dtype float32, got " + std::string(py::str(o.dtype())));
    std::vector<index_t> oshape(o.shape(), o.shape() + o.ndim());
    if (oshape != shape)
        value_error(std::string(fn) + "(): out has shape " + shape_str(oshape) + " but the result has shape " +
                    shape_str(shape));
    if (!(o.flags() & py::array::c_style) || !o.writeable())
        value_error(std::string(fn) + "(): out must be a writeable C-contiguous array");
    check_out_clear_of(byte_range(o), fn, inputs, may_alias);
    FloatArray y = FloatArray::ensure(o);
    if (!y) type_error(std::string(fn) + "(): out could not be used as a float32 array");
    return y;
}

index_t image_strided_output(py::handle out, const std::vector<index_t>& shape, const char* fn,
                             const std::vector<std::pair<const char*, py::array>>& inputs) {
    if (out.is_none() || !py::isinstance<py::array>(out)) return 0;
    py::array o = py::reinterpret_borrow<py::array>(out);
    if (!o.dtype().is(py::dtype::of<float>()) || !o.writeable() || (o.flags() & py::array::c_style)) return 0;
    if (o.ndim() != static_cast<py::ssize_t>(shape.size()) || shape.size() < 2 ||
        !std::equal(shape.begin(), shape.end(), o.shape()))
        return 0;
    index_t image = 1;
    for (std::size_t d = 1; d < shape.size(); ++d) image *= shape[d];
    if (shape[0] < 2 || image == 0) return 0;
    index_t expect = sizeof(float);  // the image's own dimensions C-contiguous (a dimension of 1: any stride)
    for (std::size_t d = shape.size() - 1; d >= 1; --d) {
        if (shape[d] != 1 && o.strides(static_cast<py::ssize_t>(d)) != expect) return 0;
        expect *= shape[d];
    }
    constexpr index_t kFloat = sizeof(float);
    const index_t stride = o.strides(0) / kFloat;  // in floats
    const auto lo = reinterpret_cast<std::uintptr_t>(o.data());
    if (o.strides(0) % kFloat != 0 || stride < image || lo % alignof(float) != 0) return 0;
    const auto hi = lo + static_cast<std::uintptr_t>(((shape[0] - 1) * stride + image) * kFloat);
    check_out_clear_of({lo, hi}, fn, inputs, {});
    return stride;
}

}  // namespace cnnfast::py_args
