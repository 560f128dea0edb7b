// Scratch memory with a process-wide peak counter, so benchmarks and tests can state what a call used.
#include "cnnfast/runtime.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace cnnfast {

namespace {
std::atomic<std::size_t> g_in_use{0};
std::atomic<std::size_t> g_peak{0};
constexpr std::size_t kAlign = 64;
}  // namespace

void* workspace_alloc(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, rounded);
    if (!p) throw std::bad_alloc();
    const std::size_t now = g_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::size_t peak = g_peak.load(std::memory_order_relaxed);
    while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
}

void workspace_free(void* p, std::size_t bytes) {
    if (!p) return;
    std::free(p);
    g_in_use.fetch_sub(bytes, std::memory_order_relaxed);
}

std::size_t workspace_in_use() { return g_in_use.load(std::memory_order_relaxed); }
std::size_t workspace_peak() { return g_peak.load(std::memory_order_relaxed); }
void workspace_reset_peak() { g_peak.store(g_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace cnnfast
