// Chooses the kernel table once (CNNFAST_ISA or the best the CPU runs) and routes the public API to it.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "kernel_table.h"

namespace cnnfast {

namespace {

#define CNNFAST_TABLE(ISA, NS)                                                                                   \
    KernelTable{ISA,                       &NS::conv2d,          &NS::conv2d_prepack_kind,                           \
                &NS::conv2d_prepack_floats, &NS::conv2d_prepack,  &NS::pool2d,                 &NS::global_avg_pool,  \
                &NS::add,                  &NS::linear,          &NS::linear_prepack_floats,  &NS::linear_prepack,   \
                &NS::box_iou,              &NS::nms,                                                                 \
                &NS::conv2d_backward_input, &NS::conv2d_backward_weight, &NS::pool2d_backward,                       \
                &NS::global_avg_pool_backward, &NS::linear_backward, &NS::relu_backward, &NS::fma_probe}

const KernelTable kGeneric = CNNFAST_TABLE(Isa::generic, isa_generic);
#ifdef CNNFAST_HAVE_X86_ISAS
const KernelTable kAvx2 = CNNFAST_TABLE(Isa::avx2, isa_avx2);
const KernelTable kAvx512 = CNNFAST_TABLE(Isa::avx512, isa_avx512);
#endif

const KernelTable* table_for(Isa isa) {
    switch (isa) {
        case Isa::generic: return &kGeneric;
#ifdef CNNFAST_HAVE_X86_ISAS
        case Isa::avx2: return &kAvx2;
        case Isa::avx512: return &kAvx512;
#else
        default: return nullptr;
#endif
    }
    return nullptr;
}

std::atomic<const KernelTable*> g_table{nullptr};
std::once_flag g_init;

Isa best_isa() {
    const auto all = supported_isas();
    return all.back();
}

void init_once() {
    std::call_once(g_init, [] {
        if (g_table.load() != nullptr) return;
        g_table.store(table_for(best_isa()));
        try {
            init_isa_from_env();
        } catch (const std::invalid_argument&) {
            // Reported by init_isa_from_env() when called explicitly (at Python import); keep the best ISA.
        }
    });
}

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::generic: return "generic";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
    for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
        if (name == isa_name(isa)) {
            *out = isa;
            return true;
        }
    }
    return false;
}

bool isa_compiled(Isa isa) { return table_for(isa) != nullptr; }

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
        if (isa_compiled(isa) && cpu_supports(isa)) out.push_back(isa);
    return out;
}

void select_isa(Isa isa) {
    if (!isa_compiled(isa))
        throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not compiled into this build");
    if (!cpu_supports(isa))
        throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
    g_table.store(table_for(isa));
}

void init_isa_from_env() {
    const char* env = std::getenv("CNNFAST_ISA");
    if (!env || !*env) return;
    Isa isa;
    if (!parse_isa(env, &isa))
        throw std::invalid_argument(std::string("CNNFAST_ISA='") + env + "' is not one of generic, avx2, avx512");
    try {
        select_isa(isa);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("CNNFAST_ISA='") + env + "': " + e.what());
    }
}

const KernelTable& kernels() {
    const KernelTable* t = g_table.load(std::memory_order_acquire);
    if (t) return *t;
    init_once();
    return *g_table.load(std::memory_order_acquire);
}

Isa current_isa() { return kernels().isa; }

// Public entry points.
ConvPrepared conv2d_prepare_f32(const Conv2dShape& s, const float* w, ConvAlgorithm algo) {
    const KernelTable& k = kernels();
    ConvPrepared p;
    p.isa = static_cast<int>(k.isa);
    p.oc = s.oc;
    p.c = s.c;
    p.kh = s.kh;
    p.kw = s.kw;
    p.groups = s.groups;
    p.kind = k.conv2d_prepack_kind(s, algo);
    p.floats = k.conv2d_prepack_floats(s, p.kind);
    if (p.floats == 0) {
        p.kind = kPrepackNone;
        return p;
    }
    float* data = static_cast<float*>(aligned_fresh(static_cast<std::size_t>(p.floats) * sizeof(float)));
    p.data = std::shared_ptr<float>(data, [](float* q) { std::free(q); });
    k.conv2d_prepack(s, p.kind, w, data);
    return p;
}

void conv2d_f32(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y, Activation a,
                ConvAlgorithm algo, const ConvPrepared* prepared, const float* residual) {
    const KernelTable& k = kernels();
    const float* packed = nullptr;
    if (prepared && prepared->data && prepared->isa == static_cast<int>(k.isa) && prepared->oc == s.oc &&
        prepared->c == s.c && prepared->kh == s.kh && prepared->kw == s.kw && prepared->groups == s.groups &&
        prepared->kind == k.conv2d_prepack_kind(s, algo))
        packed = prepared->data.get();
    k.conv2d(s, x, w, b, y, a, algo, packed, residual);
}

bool conv2d_winograd_applies(const Conv2dShape& s) {
    return (s.kh == 3 || s.kh == 5) && s.kw == s.kh && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 && s.groups == 1;
}
void pool2d_f32(PoolKind kind, const Pool2dShape& s, const float* x, float* y) { kernels().pool2d(kind, s, x, y); }
void global_avg_pool_f32(index_t planes, index_t hw, const float* x, float* y) {
    kernels().global_avg_pool(planes, hw, x, y);
}
void add_f32(index_t count, const float* a, const float* b, float* y, Activation act) {
    kernels().add(count, a, b, y, act);
}
LinearPrepared linear_prepare_f32(index_t in, index_t out, const float* w) {
    const KernelTable& k = kernels();
    LinearPrepared p;
    p.isa = static_cast<int>(k.isa);
    p.in = in;
    p.out = out;
    p.floats = k.linear_prepack_floats(in, out);
    if (p.floats == 0) return p;
    float* data = static_cast<float*>(aligned_fresh(static_cast<std::size_t>(p.floats) * sizeof(float)));
    p.data = std::shared_ptr<float>(data, [](float* q) { std::free(q); });
    k.linear_prepack(in, out, w, data);
    return p;
}

void linear_f32(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* b, float* y,
                Activation act, const LinearPrepared* prepared) {
    const KernelTable& k = kernels();
    const float* packed = nullptr;
    if (prepared && prepared->data && prepared->isa == static_cast<int>(k.isa) && prepared->in == in &&
        prepared->out == out)
        packed = prepared->data.get();
    k.linear(batch, in, out, x, w, b, y, act, packed);
}
void box_iou_f32(index_t na, const float* a, index_t nb, const float* b, float* iou) {
    kernels().box_iou(na, a, nb, b, iou);
}
index_t nms_f32(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids,
                const NmsOptions& opt, std::int64_t* keep) {
    return kernels().nms(n, boxes, scores, class_ids, opt, keep);
}

void conv2d_backward_input_f32(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
    kernels().conv2d_backward_input(s, dy, w, dx);
}
void conv2d_backward_weight_f32(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* db) {
    kernels().conv2d_backward_weight(s, x, dy, dw, db);
}
void pool2d_backward_f32(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx) {
    kernels().pool2d_backward(kind, s, x, dy, dx);
}
void global_avg_pool_backward_f32(index_t planes, index_t hw, const float* dy, float* dx) {
    kernels().global_avg_pool_backward(planes, hw, dy, dx);
}
void linear_backward_f32(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* dy,
                         float* dx, float* dw, float* db) {
    kernels().linear_backward(batch, in, out, x, w, dy, dx, dw, db);
}
void relu_backward_f32(index_t count, const float* dy, const float* y, float* dx) { kernels().relu_backward(count, dy, y, dx); }

}  // namespace cnnfast
