// Scratch memory and output buffers, served from one cache of freed blocks; a process-wide peak counter for
// the scratch memory, so benchmarks and tests can state what a call used.
//
// NOTE: freed blocks are kept (up to the cache limit, 512 MiB unless set) and handed out again: large blocks
// otherwise come fresh from mmap on every call, and faulting their pages in costs as much as a small layer
// (GoogLeNet's 3x3 160 -> 320 convolution took 5 ms instead of 2 on the page faults of its 6.6 MB of
// scratch; ResNet-50 at batch 8 on two threads took 360 ms instead of 300 while its outputs came from
// malloc, which unmapped and re-mapped them). Block capacities are rounded up to size classes (2^k, 1.25,
// 1.5 and 1.75 x 2^k, so at most a quarter more than asked), which makes the blocks of different calls
// interchangeable: a network's calls reuse a few blocks instead of cycling through as many sizes as it has
// layers. Blocks of every size are kept: freeing mid-sized ones (a 49 KB panel tail) to malloc let it trim
// the heap's top, and the next call faulted those pages in again (Inception's 1x1 192 -> 16 on 28x28: 62 us
// a call instead of 52); small ones taken from aligned_alloc and freed on every call cost a 1x1 convolution of
// 16K multiply-adds 2.1K of its 19.8K instructions a call (callgrind), from the cache 0.9K.
#include "cnnfast/runtime.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include <pthread.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cnnfast {

namespace {
std::atomic<std::size_t> g_in_use{0};
std::atomic<std::size_t> g_peak{0};
constexpr std::size_t kAlign = 64;
// NOTE: 512 MiB holds VGG-16's activations at batch 8 (two of 103 MB, in 117 MB blocks, beside the smaller
// ones): with 256 MiB they were freed and mapped afresh on every pass, and after another library had used
// and freed a few GB, faulting in their huge pages took direct compaction: a two-thread pass took 830 ms
// instead of 380-430 (AMD EPYC Zen 5, right after ONNX Runtime's pass; 512 MiB: 435 ms).
constexpr std::size_t kDefaultLimit = std::size_t(512) << 20;

struct Block {
    void* p;
    std::size_t capacity;
};

struct Cache {
    std::mutex mu;
    std::vector<Block> blocks;  // oldest first
    std::size_t bytes = 0;
    std::size_t limit = kDefaultLimit;

    // Frees the oldest blocks until `room` more bytes fit under the limit. Holds mu.
    void evict_for(std::size_t room) {
        std::size_t n = 0;
        while (n < blocks.size() && bytes + room > limit) {
            std::free(blocks[n].p);
            bytes -= blocks[n].capacity;
            ++n;
        }
        blocks.erase(blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(n));
    }
};

Cache& cache() {
    static Cache* c = new Cache();  // never destroyed: may be used by threads during exit
    return *c;
}

// NOTE: fork() copies the cache's mutex as it is; had another thread held it at that moment, the child's
// first allocation would wait forever. The forking thread takes it across fork(), so both sides get it free.
void lock_for_fork() { cache().mu.lock(); }
void unlock_after_fork() { cache().mu.unlock(); }
[[maybe_unused]] const bool g_atfork_registered = [] {
    return pthread_atfork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork) == 0;
}();

std::size_t round_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Blocks of a transparent huge page and more are aligned to one, marked for them (aligned_fresh) and made of
// whole ones, so that no part of them is left on 4 KiB pages: ResNet-50's 3.2 MB activations on 56x56 were on
// 4 KiB pages while blocks took huge pages from 4 MiB up; its 1x1 64 -> 256 on 56x56 writing such an output
// (and reading such a residual) on huge pages took 0.93x the time (0.96x with the residual; one thread, in
// turns in one process, Intel Xeon, Ice Lake).
constexpr std::size_t kHuge = std::size_t(2) << 20;

// The smallest block: a smaller request gets one of this size, so that a call's small scratch (a table of row
// pointers, a panel's packed tail) is reused as the large is.
constexpr std::size_t kCachedMinBytes = 256;

// The capacity a request of `bytes` gets: a size class from kCachedMinBytes up, each a multiple of kAlign; from
// kHuge up, whole huge pages (at most 2 MiB more).
std::size_t capacity_for(std::size_t bytes) {
    const std::size_t aligned = round_up(bytes);
    if (aligned <= kCachedMinBytes) return kCachedMinBytes;
    std::size_t p = kCachedMinBytes;
    while (p * 2 <= aligned) p *= 2;  // p <= aligned < 2p
    const std::size_t quarter = p / 4;
    const std::size_t c = (aligned + quarter - 1) / quarter * quarter;  // p, 1.25p, 1.5p, 1.75p or 2p
    return c >= kHuge ? (c + kHuge - 1) / kHuge * kHuge : c;
}

void* take_cached(std::size_t capacity) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    // The most recently freed block of this class: its pages are the likeliest to be in cache.
    for (std::size_t i = c.blocks.size(); i-- > 0;)
        if (c.blocks[i].capacity == capacity) {
            void* p = c.blocks[i].p;
            c.bytes -= capacity;
            c.blocks.erase(c.blocks.begin() + static_cast<std::ptrdiff_t>(i));  // keeps the others in age order
            return p;
        }
    return nullptr;
}

bool give_back(void* p, std::size_t capacity) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    if (capacity > c.limit) return false;
    c.evict_for(capacity);
    c.blocks.push_back({p, capacity});
    c.bytes += capacity;
    return true;
}

}  // namespace

void* aligned_fresh(std::size_t bytes) {
    void* p = nullptr;
    if (bytes < kHuge) {
        p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    } else if (posix_memalign(&p, kHuge, bytes) != 0) {
        p = nullptr;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // whole huge pages only; advice is a hint (a kernel without THP refuses it, and that is fine)
    if (p && bytes >= kHuge) madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);
#endif
    if (!p) throw std::bad_alloc();
    return p;
}

void* buffer_alloc(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t capacity = capacity_for(bytes);
    void* p = take_cached(capacity);
    return p ? p : aligned_fresh(capacity);
}

void buffer_free(void* p, std::size_t bytes) {
    if (!p) return;
    const std::size_t capacity = capacity_for(bytes);
    if (!give_back(p, capacity)) std::free(p);
}

void* workspace_alloc(std::size_t bytes) {
    void* p = buffer_alloc(bytes);
    const std::size_t now = g_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t peak = g_peak.load(std::memory_order_relaxed);
    while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
}

void workspace_free(void* p, std::size_t bytes) {
    if (!p) return;
    g_in_use.fetch_sub(bytes, std::memory_order_relaxed);
    buffer_free(p, bytes);
}

std::size_t workspace_in_use() { return g_in_use.load(std::memory_order_relaxed); }
std::size_t workspace_peak() { return g_peak.load(std::memory_order_relaxed); }
void workspace_reset_peak() { g_peak.store(g_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

std::size_t cached_bytes() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    return c.bytes;
}

std::size_t cache_limit() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    return c.limit;
}

void set_cache_limit(std::size_t bytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.limit = bytes;
    c.evict_for(0);
}

}  // namespace cnnfast
