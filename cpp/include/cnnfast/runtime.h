// cnnfast runtime: which instruction set the kernels use, how many threads they run on, and how much
// scratch memory they hold.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace cnnfast {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "generic" | "avx2" | "avx512"; returns false for anything else.
bool parse_isa(const std::string& name, Isa* out);

// What this CPU (and OS, for the register state) can run, and what this build contains.
bool cpu_supports(Isa isa);
bool isa_compiled(Isa isa);
// Whether the cores run 512-bit FMAs at the full rate, two a cycle (AMD Zen 5 and later, Intel's AVX-512
// server cores), rather than as two 256-bit halves (AMD Zen 4): arithmetic then costs half as much against
// memory traffic, which moves the kernels' trade-offs between the two (Winograd's tile size).
bool cpu_full_width_avx512();
std::vector<Isa> supported_isas();  // compiled and runnable, best last

// The kernels in use. Chosen once, on first use: CNNFAST_ISA if set, else the best supported.
// select_isa() throws std::invalid_argument for an ISA this CPU or build cannot run.
Isa current_isa();
void select_isa(Isa isa);
// Applies CNNFAST_ISA (if set) now; throws std::invalid_argument with a readable message if it names an
// unknown or unsupported ISA.
void init_isa_from_env();

// Threads: 0 means "follow OpenMP" (OMP_NUM_THREADS, threadpoolctl); n > 0 fixes the count. In a child
// process created by fork() the count is 1 (GNU OpenMP cannot restart its pool there).
void set_num_threads(int n);
int get_num_threads();
// Limits get_num_threads() on the calling thread for the object's life (nested limits: the smaller; 0: none),
// so that a kernel call too small to share runs on fewer threads than set rather than wake a team for it.
class ThreadLimit {
public:
    explicit ThreadLimit(int n);
    ~ThreadLimit();
    ThreadLimit(const ThreadLimit&) = delete;
    ThreadLimit& operator=(const ThreadLimit&) = delete;

private:
    int saved_;
};
// The limit for a call of `macs` multiply-adds: a thread per get_min_work_per_thread() of them, at least one
// (0, no limit, where that setting is 0).
int threads_for_work(long long macs);
void set_min_work_per_thread(long long macs);  // 0: every call on the threads set
long long get_min_work_per_thread();
// True in the child of a fork() (the kernels then run on one thread: see threads.cpp).
bool in_forked_child();
// True where the calling thread's worker threads are kept off its CPU (a team that fills every CPU it may
// run on: see threads.cpp).
bool workers_pinned();

// The FP32 fused multiply-add peak in GFLOP/s for the ISA in use, measured now (about 0.1 s): the best of
// several timed runs of a register-only FMA loop on `threads` threads at once (the total of them).
double measure_fma_peak_gflops(int threads = 1);

// Scratch memory. Kernels take their workspace through these calls so the peak can be reported.
void* workspace_alloc(std::size_t bytes);
void workspace_free(void* p, std::size_t bytes);
std::size_t workspace_in_use();
std::size_t workspace_peak();
void workspace_reset_peak();

// Memory for results (the arrays the bindings return): 64-byte aligned, from the same cache of freed blocks
// as the scratch memory, not counted in the workspace figures. buffer_free() takes the size given to
// buffer_alloc().
void* buffer_alloc(std::size_t bytes);
void buffer_free(void* p, std::size_t bytes);

// Fresh memory, 64-byte aligned, for buffers and prepared weights; from 4 MiB up, aligned to 2 MiB and marked
// for transparent huge pages (as NumPy marks its large arrays), so that streaming it does not miss the TLB
// every 4 KiB. Free with std::free.
void* aligned_fresh(std::size_t bytes);

// Freed blocks are kept for reuse up to a limit, 512 MiB unless set; 0 keeps none.
// Lowering the limit frees the oldest blocks at once.
std::size_t cached_bytes();
std::size_t cache_limit();
void set_cache_limit(std::size_t bytes);

// RAII scratch buffer, 64-byte aligned.
template <class T>
class Workspace {
public:
    explicit Workspace(std::size_t count) : bytes_(count * sizeof(T)), p_(static_cast<T*>(workspace_alloc(bytes_))) {}
    ~Workspace() { workspace_free(p_, bytes_); }
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    T* get() const { return p_; }

private:
    std::size_t bytes_;
    T* p_;
};

}  // namespace cnnfast

namespace cnnfast {
// Flush-to-zero / denormals-are-zero for the calling thread; kernels set it inside each parallel region
// and restore the caller's mode after. Returns the previous mode.
unsigned denormals_off();
void denormals_restore(unsigned previous);

struct DenormalsOff {
    DenormalsOff() : prev(denormals_off()) {}
    ~DenormalsOff() { denormals_restore(prev); }
    unsigned prev;
};
}  // namespace cnnfast
