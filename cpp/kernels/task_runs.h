// Internal: tasks dealt out to the threads of a parallel region in contiguous runs, with the last tasks of a
// run taken by a thread that has finished its own, compiled once per ISA (as the kernels that use it).
#pragma once

#include <atomic>
#include <cstdint>
#include <omp.h>

#include "simd.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Tasks [0, n) in one run per thread, as schedule(static) deals them (the first n % threads runs one longer);
// each thread takes its own run front to back, then the last task left in another's, back to front, until
// every run is done. Which thread runs a task does not change its result.
// NOTE: where the cores run at different speeds (a virtual machine's vCPUs, slowed by turns by work outside
// it), a static loop lasts as long as the slowest thread's share: on a 2-vCPU AMD EPYC (Zen 3) KVM guest, the
// two threads spent 264 and 176 us on the equal halves of Inception's 5x5 16 -> 32 on 28x28. Taking the
// others' last tasks brings a loop close to the threads' mean share, while the runs keep each thread's tasks
// together, as the static split that the callers' task sizes were chosen for (neighbouring N blocks, tile
// blocks in order), but for the few taken at the end. In turns in one process on that guest, two threads,
// the direct convolutions' GEMM tasks and Winograd's tile blocks taken this way against schedule(static):
// the 7x7/2 stem 0.82-1.00x the time, VGG-16's Winograd 64 -> 64 on 224x224 0.89-0.96x; whole networks at
// batch 1, VGG-16 0.90-0.98x (median 0.94x), GoogLeNet 0.95-1.02x (0.98x), ResNet-50 0.95-1.13x (1.00x),
// AlexNet 0.95-1.02x, ResNet-50 at batch 8 0.94x and 1.00x; small layers, whose tasks are one a thread,
// 1.00-1.03x.
//
// A run's state is one word: epoch (16 bits) | end (24) | next (24). Its owner takes `next` and a thief
// takes `end - 1`, each by compare-and-swap, so no task is run twice; the epoch (a count of the loops so far,
// the same on every thread) keeps a thief out of a run its owner has not yet restarted for the current loop.
class TaskRuns {
public:
    // Called by every thread of the team, inside the parallel region (as `omp for` would be): runs f(t) once
    // for each task t of [0, n), then waits for the whole team (the barrier an `omp for` ends with).
    template <class F>
    void run(index_t n, F&& f) {
        const int me = omp_get_thread_num(), team = omp_get_num_threads();
        if (team == 1 || team > kMaxThreads || n >= kMaxTasks) {  // (past what the runs hold: static)
#pragma omp for schedule(static)
            for (index_t t = 0; t < n; ++t) f(t);
            return;
        }
        Run& own = runs_[me];
        const std::uint64_t epoch = ++own.epoch & kMask16;
        const index_t q = n / team, extra = n % team;
        const index_t begin = me * q + imin(me, extra), end = begin + q + (me < extra ? 1 : 0);
        own.word.store(pack(epoch, end, begin), std::memory_order_release);
        for (;;) {  // own run, front to back
            std::uint64_t w = own.word.load(std::memory_order_acquire);
            const index_t next = next_of(w);
            if (next >= end_of(w)) break;
            if (own.word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) f(next);
        }
        for (int i = 1; i < team; ++i) {  // then the others' last tasks
            Run& other = runs_[(me + i) % team];
            for (;;) {
                std::uint64_t w = other.word.load(std::memory_order_acquire);
                const index_t last = end_of(w);
                if ((w >> 48) != epoch || next_of(w) >= last) break;
                if (other.word.compare_exchange_weak(w, w - (std::uint64_t(1) << 24), std::memory_order_acq_rel))
                    f(last - 1);
            }
        }
#pragma omp barrier
    }

private:
    static constexpr std::uint64_t kMask16 = 0xffff, kMask24 = 0xffffff;
    static constexpr index_t kMaxTasks = index_t(1) << 24;
    static constexpr int kMaxThreads = 64;
    static std::uint64_t pack(std::uint64_t epoch, index_t end, index_t next) {
        return epoch << 48 | static_cast<std::uint64_t>(end) << 24 | static_cast<std::uint64_t>(next);
    }
    static index_t next_of(std::uint64_t w) { return static_cast<index_t>(w & kMask24); }
    static index_t end_of(std::uint64_t w) { return static_cast<index_t>((w >> 24) & kMask24); }
    struct alignas(64) Run {  // one cache line per thread's run
        std::atomic<std::uint64_t> word{0};
        std::uint64_t epoch = 0;  // the owner's count of loops (read and written by the owner only)
    };
    Run runs_[kMaxThreads];  // on the caller's stack: 4 KiB
};

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
