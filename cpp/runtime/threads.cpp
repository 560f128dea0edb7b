// Thread count. Kernels ask get_num_threads() and pass it to every parallel region, so the count set
// here holds for calls made from any Python thread (omp_set_num_threads alone is per calling thread).
//
// NOTE: GNU OpenMP's thread pool does not survive fork(): a parallel region in the child of a process that
// had used it waits forever for threads that no longer exist. A child of fork therefore runs the kernels on
// one thread (a team of one needs no pool), which keeps multiprocessing's default start method working.
//
// NOTE: where the team fills every CPU the calling thread may run on (two threads on two CPUs), the worker
// threads are kept off the caller's current CPU: each pinned to one of the others, re-pinned when the
// caller turns up on a worker's CPU (a check of sched_getcpu() per call; the caller itself is never
// pinned). Without it, a worker woken after a pause longer than its spin (GOMP_SPINCOUNT, about 4 ms) was
// often queued on the caller's own CPU: in a KVM guest the scheduler takes a halted vCPU for a busy one, so
// the worker waited behind the caller, which had finished its half and spun at the barrier for it. After
// 0.1 s idle, on two threads (AMD EPYC Zen 5, 2 vCPUs): the 7x7/2 stem took 10.7 ms unpinned, 1.0 ms pinned
// (1.5 on one thread); a 1x1 192 -> 64 on 28x28 3.8-6.1 ms and 0.28 ms (0.08 in a loop); GoogLeNet's
// forward pass at batch 1, forwards 0.15 s apart, alternated in one process, about 13 ms and 9.5. Off with
// CNNFAST_PIN_THREADS=0, and wherever the user binds threads (OMP_PROC_BIND, OMP_PLACES,
// GOMP_CPU_AFFINITY) or the team is smaller or larger than the CPUs allowed.
#include "cnnfast/runtime.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>
#include <pthread.h>
#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cnnfast {

namespace {
std::atomic<int> g_threads{0};  // 0: follow OpenMP's own setting
std::atomic<bool> g_forked{false};
thread_local int t_limit = 0;  // ThreadLimit's, on this thread (0: none)
// NOTE: a team costs a call microseconds to start and to end (on a 2-vCPU AMD EPYC, Zen 3, KVM guest, a 1x1
// 16 -> 16 on 8x8 took 15.4 us on two threads, 7.7 on one), which the smallest layers do not win back: there,
// prepared, two threads against one, 1x1 layers of 64K multiply-adds 1.31x the time, 256K 0.94x, 1M 0.84x;
// 3x3 layers of 147K 1.39x, 590K 1.23-1.24x, 2.4M 0.86-1.20x (two runs). So a convolution takes a thread
// per 512K.
std::atomic<long long> g_min_work{1LL << 19};

void on_fork_child() { g_forked.store(true, std::memory_order_relaxed); }

const bool g_atfork_registered = [] { return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0; }();

#if defined(__linux__)
bool env_set(const char* name) {
    const char* v = std::getenv(name);
    return v && *v;
}

bool pinning_allowed() {
    static const bool allowed = [] {
        const char* v = std::getenv("CNNFAST_PIN_THREADS");
        if (v && std::strcmp(v, "0") == 0) return false;
        return !env_set("OMP_PROC_BIND") && !env_set("OMP_PLACES") && !env_set("GOMP_CPU_AFFINITY");
    }();
    return allowed;
}

// The calling thread's team: its workers' thread ids (registered once per team size) and the CPU each is
// pinned to (-1: not pinned).
struct TeamPins {
    int threads = 0;
    std::vector<pid_t> tids;  // [1, threads): workers
    std::vector<int> cpus;
    std::vector<int> allowed;  // the CPUs the caller may run on, when registered
};
thread_local TeamPins t_pins;

void pin_to(pid_t tid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(tid, sizeof(set), &set);  // a worker that has exited: ESRCH, ignored
}

void keep_workers_off_caller_cpu(int threads) {
    if (threads < 2 || !pinning_allowed() || omp_in_parallel()) return;
    TeamPins& t = t_pins;
    if (t.threads != threads) {
        // a new team size: free the workers pinned for the old one (GNU OpenMP keeps them in its pool)
        if (!t.tids.empty()) {
            cpu_set_t all;
            CPU_ZERO(&all);
            for (int c : t.allowed) CPU_SET(c, &all);
            for (std::size_t i = 1; i < t.tids.size(); ++i) sched_setaffinity(t.tids[i], sizeof(all), &all);
        }
        t = TeamPins{};
        t.threads = threads;
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) t.allowed.push_back(c);
        if (static_cast<int>(t.allowed.size()) != threads) return;  // others may take spare CPUs: leave them be
        t.tids.assign(static_cast<std::size_t>(threads), 0);
        t.cpus.assign(static_cast<std::size_t>(threads), -1);
        pid_t* tids = t.tids.data();
        int team = 0;
#pragma omp parallel num_threads(threads)
        {
            tids[omp_get_thread_num()] = static_cast<pid_t>(syscall(SYS_gettid));
            if (omp_get_thread_num() == 0) team = omp_get_num_threads();
        }
        // a smaller team than asked (OMP_THREAD_LIMIT, ...): leave it be; a tid of 0 would name the caller
        if (team != threads) t.tids.clear();
    }
    if (t.tids.empty()) return;
    const int me = sched_getcpu();
    bool clash = false;
    for (std::size_t i = 1; i < t.cpus.size(); ++i) clash |= t.cpus[i] == me || t.cpus[i] < 0;
    if (!clash) return;
    // the allowed CPUs but the caller's, one per worker
    std::size_t next = 0;
    for (int i = 1; i < threads; ++i) {
        while (next < t.allowed.size() && t.allowed[next] == me) ++next;
        if (next == t.allowed.size()) return;
        t.cpus[static_cast<std::size_t>(i)] = t.allowed[next];
        pin_to(t.tids[static_cast<std::size_t>(i)], t.allowed[next++]);
    }
}
#else
void keep_workers_off_caller_cpu(int) {}
#endif
}  // namespace

void set_num_threads(int n) {
    g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
    if (n > 0 && !g_forked.load(std::memory_order_relaxed)) omp_set_num_threads(n);
}

int get_num_threads() {
    (void)g_atfork_registered;
    if (g_forked.load(std::memory_order_relaxed)) return 1;
    int n = g_threads.load(std::memory_order_relaxed);
    if (n <= 0) n = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    if (t_limit > 0 && n > t_limit) n = t_limit;
    keep_workers_off_caller_cpu(n);
    return n;
}

ThreadLimit::ThreadLimit(int n) : saved_(t_limit) {
    if (n > 0 && (saved_ == 0 || n < saved_)) t_limit = n;
}

ThreadLimit::~ThreadLimit() { t_limit = saved_; }

int threads_for_work(long long macs) {
    const long long per = g_min_work.load(std::memory_order_relaxed);
    if (per <= 0) return 0;
    const long long n = macs / per;
    return n < 1 ? 1 : n > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : static_cast<int>(n);
}

void set_min_work_per_thread(long long macs) { g_min_work.store(macs > 0 ? macs : 0, std::memory_order_relaxed); }

long long get_min_work_per_thread() { return g_min_work.load(std::memory_order_relaxed); }

bool workers_pinned() {
#if defined(__linux__)
    return !t_pins.tids.empty() && t_pins.threads == get_num_threads();
#else
    return false;
#endif
}

bool in_forked_child() { return g_forked.load(std::memory_order_relaxed); }

}  // namespace cnnfast
