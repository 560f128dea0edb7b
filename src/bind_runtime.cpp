// Runtime control: ISA, threads, workspace statistics, the block cache.
#include <pybind11/stl.h>

#include <stdexcept>

#include "args.h"
#include "bindings.h"
#include "cnnfast/runtime.h"

namespace cnnfast::bindings {

void bind_runtime(py::module_& m) {
    m.def(
        "_init_isa_from_env", [] {
            try {
                init_isa_from_env();
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        "Applies CNNFAST_ISA; raises ValueError if it names an ISA this CPU or build cannot run.");
    m.def("_current_isa", [] { return std::string(isa_name(current_isa())); });
    m.def(
        "_set_isa",
        [](const std::string& name) {
            Isa isa;
            if (!parse_isa(name, &isa))
                throw py::value_error("isa must be one of 'generic', 'avx2', 'avx512', got '" + name + "'");
            try {
                select_isa(isa);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("isa"));
    m.def("_supported_isas", [] {
        std::vector<std::string> out;
        for (Isa isa : supported_isas()) out.push_back(isa_name(isa));
        return out;
    });
    m.def("_full_width_avx512", &cpu_full_width_avx512);
    m.def("_compiled_isas", [] {
        std::vector<std::string> out;
        for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
            if (isa_compiled(isa)) out.push_back(isa_name(isa));
        return out;
    });
    m.def("_set_num_threads", &set_num_threads, py::arg("n"));
    m.def("_get_num_threads", &get_num_threads);
    m.def("_set_min_work_per_thread", &set_min_work_per_thread, py::arg("macs"),
          "Multiply-adds per thread below which a convolution runs on fewer threads than set (0: none).");
    m.def("_get_min_work_per_thread", &get_min_work_per_thread);
    m.def("_workers_pinned", &workers_pinned);
    m.def(
        "_measure_fma_peak",
        [](int threads) {
            if (threads < 1) throw py::value_error("_measure_fma_peak(): threads must be >= 1, got " + std::to_string(threads));
            py::gil_scoped_release nogil;
            return measure_fma_peak_gflops(threads);
        },
        py::arg("threads") = 1,
        "The FP32 FMA peak in GFLOP/s for the ISA in use, measured now (about 0.1 s) on `threads` threads at "
        "once: their total. Two threads well short of twice one mean a core is busy with other work.");
    m.def("_workspace_peak", [] { return workspace_peak(); });
    m.def("_workspace_in_use", [] { return workspace_in_use(); });
    m.def("_workspace_reset_peak", [] { workspace_reset_peak(); });
    m.def("_cached_bytes", [] { return cached_bytes(); });
    m.def("_cache_limit", [] { return cache_limit(); });
    m.def(
        "_set_cache_limit",
        [](py::handle nbytes) {
            set_cache_limit(static_cast<std::size_t>(py_args::int_arg(nbytes, "set_cache_limit", "nbytes", 0)));
        },
        py::arg("nbytes"));
    m.def(
        "_empty",
        [](py::handle shape) {
            std::vector<index_t> dims;
            for (py::handle d : py::reinterpret_borrow<py::sequence>(shape))
                dims.push_back(py_args::int_arg(d, "_empty", "shape", 0));
            return py_args::output_array(py::none(), dims, "_empty", {});
        },
        py::arg("shape"), "An uninitialized C-contiguous float32 array of `shape` (a tuple) from the block cache.");
}

}  // namespace cnnfast::bindings
