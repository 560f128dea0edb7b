// Scratch memory with a process-wide peak counter, so benchmarks and tests can state what a call used.
//
// NOTE: freed blocks are kept in a small cache (at most kCacheBytes) and handed out again: large blocks
// otherwise come fresh from mmap on every call, and faulting their pages in cost as much as a small layer.
#include "cnnfast/runtime.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace cnnfast {

namespace {
std::atomic<std::size_t> g_in_use{0};
std::atomic<std::size_t> g_peak{0};
constexpr std::size_t kAlign = 64;
constexpr std::size_t kCacheBytes = std::size_t(64) << 20;
constexpr std::size_t kMinCached = std::size_t(64) << 10;  // smaller blocks come cheaply from malloc

struct Block {
    void* p;
    std::size_t capacity;
};

struct Cache {
    std::mutex mu;
    std::vector<Block> blocks;
    std::size_t bytes = 0;
};

Cache& cache() {
    static Cache* c = new Cache();  // never destroyed: may be used by threads during exit
    return *c;
}

std::size_t round_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

void* take_cached(std::size_t capacity) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    std::size_t best = c.blocks.size();
    for (std::size_t i = 0; i < c.blocks.size(); ++i)
        if (c.blocks[i].capacity >= capacity && c.blocks[i].capacity <= 2 * capacity &&
            (best == c.blocks.size() || c.blocks[i].capacity < c.blocks[best].capacity))
            best = i;
    if (best == c.blocks.size()) return nullptr;
    void* p = c.blocks[best].p;
    c.bytes -= c.blocks[best].capacity;
    c.blocks[best] = c.blocks.back();
    c.blocks.pop_back();
    return p;
}

bool give_back(void* p, std::size_t capacity) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    while (c.bytes + capacity > kCacheBytes && !c.blocks.empty()) {  // evict the oldest
        std::free(c.blocks.front().p);
        c.bytes -= c.blocks.front().capacity;
        c.blocks.erase(c.blocks.begin());
    }
    if (capacity > kCacheBytes) return false;
    c.blocks.push_back({p, capacity});
    c.bytes += capacity;
    return true;
}

}  // namespace

void* workspace_alloc(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t capacity = round_up(bytes);
    void* p = capacity >= kMinCached ? take_cached(capacity) : nullptr;
    if (!p) p = std::aligned_alloc(kAlign, capacity);
    if (!p) throw std::bad_alloc();
    const std::size_t now = g_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t peak = g_peak.load(std::memory_order_relaxed);
    while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
}

void workspace_free(void* p, std::size_t bytes) {
    if (!p) return;
    g_in_use.fetch_sub(bytes, std::memory_order_relaxed);
    const std::size_t capacity = round_up(bytes);
    if (capacity < kMinCached || !give_back(p, capacity)) std::free(p);
}

std::size_t workspace_in_use() { return g_in_use.load(std::memory_order_relaxed); }
std::size_t workspace_peak() { return g_peak.load(std::memory_order_relaxed); }
void workspace_reset_peak() { g_peak.store(g_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace cnnfast
