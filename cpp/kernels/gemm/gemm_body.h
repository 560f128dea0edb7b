// Internal: a packed single-precision GEMM in the BLIS style, C (M x N, row stride ldc) = A (M x K) * B (K x N),
// with bias, ReLU and K-blocked accumulation fused into the store. A is packed per micro-panel (MR x KC,
// reused across an N block); B is packed per (N block, K block) by a caller-supplied packer, which is where convolution does its im2col gather, so no
// full im2col matrix ever exists.
#pragma once

#include <type_traits>

#include "../simd.h"
#include "../parallel.h"
#include "runtime/kernel_table.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Register tile: MR rows of A times NV vectors of B.
#if CNNFAST_VEC_BYTES == 64
constexpr int MR = 8, NV = 3;  // 24 zmm accumulators
#elif CNNFAST_VEC_BYTES == 32
constexpr int MR = 4, NV = 3;  // 12 ymm accumulators
#else
constexpr int MR = 4, NV = 2;  // 8 xmm accumulators
#endif
constexpr int NR = NV * VL;
constexpr index_t KC = 256;     // K block: MR rows of A (MR x KC) stay in L1
constexpr index_t NC = 8 * NR;  // N block: the packed B block (KC x NC) stays in L2
// K blocks of the direct convolutions, which read B in place rather than from a packed block. Where A has
// more than four micro-panels (M > 4 MR) and K > 1.25 kKcResident, blocks of at most kKcResident rows, over
// which the paths that have A packed whole keep each B panel in L1 while every micro-panel passes over it:
// 128 x NR is 24 KiB with AVX-512, up to 32 KiB with the extra lines of rows that are not 64-byte aligned (a
// 14x14 image's channels are 784 bytes apart); blocks of 192 rows lost the gain there. With AVX2 (NR = 24)
// a panel of 256 rows takes the same 24 KiB, and half as many blocks store and reload C half as often: in
// turns in one process on an AMD EPYC (Zen 3), one / two threads, against blocks of 128, 1x1 layers of
// ResNet-50 and GoogLeNet 0.94-0.99x / 0.94-0.99x the time (1024 -> 256 on 14x14 0.97x / 0.95x, 1x1/2 256 ->
// 512 from 56x56 0.96x / 0.98x), 3x3/2 128 -> 128 on 56x56 0.96-0.97x / 0.97-0.98x, 2048 -> 512 and 512 ->
// 2048 on 7x7, 1x1/2 1024 -> 2048 from 14x14 1.00-1.01x; blocks of 320 or 384 rows gained less. Otherwise K
// up to 2 KC in one block (K = 400, Inception's 5x5 on 16 channels: 0.185 -> 0.182 ms), longer K in blocks
// of equal size up to 1.5 KC (2304 in six: blocks of 2 KC were 1-2% slower there). A block that does not end
// K stores C, which the next one reloads; MR x 2 KC of A, 16 KiB, stays in L1.
// NOTE: the blocks depend on the shape alone (never on threads or on whether the weights are prepared), and
// every path of one shape uses them, so a layer gives the same bits whichever way it runs.
constexpr index_t kKcDirect = KC * 2;  // the longest block
constexpr index_t kKcResident = CNNFAST_VEC_BYTES == 32 ? 256 : 128;
constexpr index_t kKcResidentWhole = kKcResident * 5 / 4;  // up to this, such a K stays one block
inline index_t direct_k_step(index_t K, index_t M) {
    if (M > 4 * MR && K > kKcResidentWhole) return ceil_div(K, ceil_div(K, kKcResident));
    return K <= kKcDirect ? K : ceil_div(K, ceil_div(K, KC * 3 / 2));
}

struct Epilogue {
    const float* bias_row = nullptr;  // indexed by the row of C (conv: output channel)
    const float* bias_col = nullptr;  // indexed by the column of C (linear: output feature)
    // An array laid out as C's destination (conv: y), added before the ReLU: the element stored at c gets
    // residual[c - c_origin]. Both null when there is none.
    const float* residual = nullptr;
    const float* c_origin = nullptr;
    bool relu = false;
    // Ask for the tile's lines of C (for writing) as the tile starts, so that they arrive while its k loop runs:
    // set where C's block falls out of L2 between the passes over it (see conv2d_indirect).
    bool prefetch_c = false;
};

// A micro-panel: rows [0, rows) of A (row stride lda), columns [0, kc), stored k-major with MR floats per k
// and zero rows past `rows`. Packed per (row block, K block) and reused across a whole N block.
inline void pack_a(const float* __restrict A, index_t lda, index_t rows, index_t kc, float* __restrict dst) {
    for (index_t i = 0; i < rows; ++i) {
        const float* src = A + i * lda;
        for (index_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
    }
    for (index_t i = rows; i < MR; ++i)
        for (index_t k = 0; k < kc; ++k) dst[k * MR + i] = 0.f;
}

// A (M x K, row stride lda) packed whole for the direct convolutions' GEMM, K block by K block (the blocks of
// direct_k_step(K, M)): block [pc, pc + kc) holds its ceil(M / MR) micro-panels of MR x kc one after another
// (pack_a), from pc * Mpad floats on (Mpad = ceil(M / MR) * MR; every block before it is kstep long).
// NOTE: a pass over a K block then reads one contiguous run, which the L2 prefetchers follow; with whole-K
// micro-panels it read kc x MR floats of every MR x K, and the prefetchers also brought the other blocks'
// halves. In one process, in turns, on an AMD EPYC (Zen 3), one thread: the microkernel over 128 micro-panels
// of kc 128 read at a stride of two blocks ran at 0.95x the rate of contiguous ones (91 against 96 GFLOP/s).
struct BlockedPanels {
    index_t K, kstep, Mpad;
    BlockedPanels(index_t M, index_t K_) : K(K_), kstep(direct_k_step(K_, M)), Mpad(ceil_div(M, MR) * MR) {}
    index_t floats() const { return Mpad * K; }
    // micro-panel of rows [ir, ir + MR) in the K block starting at pc
    const float* at(const float* packed, index_t ir, index_t pc) const {
        return packed + pc * Mpad + (ir / MR) * MR * imin(kstep, K - pc);
    }
    // the micro-panel stride within the K block starting at pc
    index_t stride(index_t pc) const { return MR * imin(kstep, K - pc); }
    index_t panels() const { return Mpad / MR; }
    // Packs task t of G x panels(): micro-panel t % panels() of group t / panels(), from weights w of G groups
    // of M x K (row stride K) into dst, G x floats() floats.
    void pack_task(const float* w, index_t M, index_t t, float* dst) const {
        const index_t gi = t / panels(), panel = t % panels();
        const float* A = w + (gi * M + panel * MR) * K;
        float* const d = dst + gi * floats();
        for (index_t pc = 0; pc < K; pc += kstep)
            pack_a(A + pc, K, imin(MR, M - panel * MR), imin(kstep, K - pc), d + pc * Mpad + panel * stride(pc));
    }
};

// Where the microkernel finds row k of its B panel: packed (kc x NR, contiguous) ...
// Each source gives the microkernel row(k), and vec(row(k), j), vector j of that row.
struct PackedB {
    const float* p;
    const float* row(index_t k) const { return p + k * NR; }
    vf vec(const float* r, int j) const { return vload(r + j * VL); }
    void prefetch(index_t) const {}
};
// ... packed and streamed from memory once per call (Winograd's transformed filters, the pixel-major path's
// transposed weights): while reading row k of its panel, the microkernel asks for row k of the panel it
// reads next (`next`, same layout) into L2, a panel ahead, so the loads find it there (the hardware
// prefetchers start afresh on every 4 KiB page and leave the loop waiting on memory) ...
struct StreamedB : PackedB {
    const float* next;
    void prefetch(index_t k) const {
        for (int j = 0; j < NR; j += kLineFloats) __builtin_prefetch(next + k * NR + j, 0, 2);
    }
};
// ... or the same, shared by several calls on one panel (Winograd's task of several tile panels, the
// pixel-major path's first pixel panels), each asking for its own part of the next panel: kPerK lines per k,
// from `next`.
template <int kPerK = 1>
struct StreamedBLines : PackedB {
    const float* next;
    void prefetch(index_t k) const {
        for (int j = 0; j < kPerK; ++j) __builtin_prefetch(next + (k * kPerK + j) * kLineFloats, 0, 2);
    }
};
template <class B>
struct streamed_lines : std::false_type {};
template <int kPerK>
struct streamed_lines<StreamedBLines<kPerK>> : std::true_type {};
// n calls on a kc-row block that share asking for the block at `next` (kc rows of NR floats, `total` lines):
// call i gets, as its B source, its own run of lines, one per k, where those cover it; else (AVX-512, three
// lines per row, n = 2) the first two lines per k and the others one; else each all of them.
struct SharedNext {
    index_t kc, n, total, lines;
    SharedNext(index_t kc_, index_t n_)
        : kc(kc_), n(n_), total((kc_ * NR + kLineFloats - 1) / kLineFloats), lines((total + n_ - 1) / n_) {}
    // f called with call i's B source on the block at b
    template <class F>
    decltype(auto) operator()(const float* b, const float* next, index_t i, F&& f) const {
        if (lines <= kc) return f(StreamedBLines<>{{b}, next + i * lines * kLineFloats});
        if (n > 1 && total <= (n + 1) * kc) {
            if (i == 0) return f(StreamedBLines<2>{{b}, next});
            return f(StreamedBLines<>{{b}, next + (i + 1) * kc * kLineFloats});
        }
        return f(StreamedB{{b}, next});
    }
};
template <class F>
decltype(auto) with_shared_next(index_t kc, const float* b, const float* next, index_t i, index_t n, F&& f) {
    return SharedNext(kc, n)(b, next, i, std::forward<F>(f));
}
// ... or packed and read once, front to back, as one stream (a fully connected layer's prepared weights
// against a batch of one micro-panel): while reading row k, the microkernel asks for row k + kAhead into L1.
template <index_t kAhead>
struct AheadB : PackedB {
    void prefetch(index_t k) const {
        for (int j = 0; j < NR; j += kLineFloats) __builtin_prefetch(p + (k + kAhead) * NR + j, 0, 3);
    }
};
// ... or in place, one pointer per row (indirect convolution: rows of the padded input).
struct RowsB {
    const float* const* rows;
    index_t col;
    const float* row(index_t k) const { return rows[k] + col; }
    vf vec(const float* r, int j) const { return vload(r + j * VL); }
    void prefetch(index_t) const {}
};
// ... or in place as RowsB, each row's NR floats also stored into a packed panel (kc x NR) as they are read,
// for the tiles after this one to read from there (PackedB): the first micro-panel's pass over a B panel
// makes its copy. Asks for row k + kAhead (below `rows_left`) into L1 while reading row k.
struct CopyingRowsB {
    const float* const* rows;
    index_t col;
    float* dst;
    index_t rows_left;
    static constexpr index_t kAhead = 4;
    struct Row {
        const float* src;
        float* dst;
    };
    Row row(index_t k) const { return {rows[k] + col, dst + k * NR}; }
    vf vec(const Row& r, int j) const {
        const vf v = vload(r.src + j * VL);
        vstore(r.dst + j * VL, v);
        return v;
    }
    // NOTE: the last rows ask for row rows_left - 1 again rather than nothing: GCC 12 left no prefetch at all in
    // the microkernel's loop when they skipped it (`if (k + kAhead < rows_left)`). Asking on every row, in
    // separate processes in turns on an AMD EPYC (Zen 3), same bits, one / two threads: Inception's 1x1 192 -> 16
    // on 28x28 0.97x / 0.93-0.97x the time, 256 -> 32 0.98x / 0.97x, ResNet-50's 64 -> 256 and 256 -> 64 on
    // 56x56 0.97-0.98x / 0.98x, 1024 -> 256 on 14x14 1.00x / 0.96-0.99x. Asking 8, 12 or 20 rows ahead instead of
    // 4: 0.97-1.00x on one thread, within the noise.
    void prefetch(index_t k) const {
        const float* p = rows[k + kAhead < rows_left ? k + kAhead : rows_left - 1] + col;
        __builtin_prefetch(p, 0, 3);
        __builtin_prefetch(p + NR - 1, 0, 3);
    }
};

// Whether a B source reads with masked loads (a static constexpr bool kMaskedLoads member; see ukernel's store).
template <class B, class = void>
struct masked_loads : std::false_type {};
template <class B>
struct masked_loads<B, std::void_t<decltype(B::kMaskedLoads)>> : std::bool_constant<B::kMaskedLoads> {};

// One tile: C[0:mv, 0:nv] (+)= A (packed micro-panel, MR x kc) * B (kc x NVT vectors), with the epilogue on
// the last K block.
// Where it finds A: a packed micro-panel (MR floats per k) ...
struct PackedA {
    const float* p;
    float at(index_t k, int i) const { return p[k * MR + i]; }
    void prefetch(index_t) const {}
};
// ... or a micro-panel of A packed whole (prepared weights, read from memory once per call), asking for row k
// of the micro-panel it reads next (`next`) into L2 as it reads its own: a few percent of a 1x1 layer on a
// 14x14 image when a network's other layers have pushed its weights out of the caches. (Asking for the
// micro-panel two ahead instead: 1x1 layers on 7x7 to 28x28 images, the caches flushed between calls,
// 0.98-1.03x the time on an Intel Xeon, model 167, one thread.) ...
struct StreamedA {
    const float* p;
    const float* next;
    float at(index_t k, int i) const { return p[k * MR + i]; }
    void prefetch(index_t k) const { __builtin_prefetch(next + k * MR, 0, 2); }
};
// ... or Rows rows in place (worth it when the panel would be used for one or two B panels only): MR, or two
// micro-panels' 2 MR for a tile of one vector (see winograd_body.h's wino_gemm_panel). Rows past the valid ones
// repeat the last valid row; they are computed and never stored.
template <int Rows>
struct RowsAOf {
    const float* r[Rows];
    RowsAOf(const float* a, index_t lda, int mv) {
        for (int i = 0; i < Rows; ++i) r[i] = a + (i < mv ? i : mv - 1) * lda;
    }
    float at(index_t k, int i) const { return r[i][k]; }
    void prefetch(index_t) const {}
};
using RowsA = RowsAOf<MR>;

// The store of a whole MRT x NVT tile, as ukernel's general store does it (the same operations in the same
// order, so the same bits), with the flags (accumulate, last, a residual, the ReLU) decided once per tile.
// NOTE: the general store tests them per vector, which costs a tile of few k steps about a tenth of its time:
// the direct convolutions call the microkernel out of line, and a copy of their 1x1 64 -> 256 on 56x56 with it
// inlined, its flags known, ran its tiles in 0.86x the time (AMD EPYC Zen 3). In turns in one process there,
// same bits, one and two threads: 1x1 64 -> 256 on 56x56 0.89-0.90x the time (with the residual 0.90x),
// 128 -> 512 on 28x28 0.92-0.94x, 256 -> 1024 on 14x14 0.96-0.99x; the stride-2 3x3 128 -> 128 1.01-1.02x and
// Winograd's layers 0.99-1.03x, whose tiles do not take it (code placement, not measured elsewhere).
template <int MRT, int NVT, bool ACC, bool LAST, bool RES, bool RELU>
inline void full_tile_store_as(const vf (&acc)[MRT][NVT], float* __restrict C, index_t ldc, const Epilogue& ep,
                               index_t row0) {
#pragma GCC unroll 8
    for (int i = 0; i < MRT; ++i) {
        float* c = C + i * ldc;
        const vf brow = LAST && ep.bias_row ? vbroadcast(ep.bias_row[row0 + i]) : vf{};
#pragma GCC unroll 4
        for (int j = 0; j < NVT; ++j) {
            vf v = acc[i][j];
            if constexpr (ACC) v += vload(c + j * VL);
            if constexpr (LAST) {
                v += brow;
                if constexpr (RES) v += vload(ep.residual + (c + j * VL - ep.c_origin));
                if constexpr (RELU) v = vrelu(v);
            }
            vstore(c + j * VL, v);
        }
    }
}
template <int MRT, int NVT>
inline void full_tile_store(const vf (&acc)[MRT][NVT], float* __restrict C, index_t ldc, bool accumulate, bool last,
                            const Epilogue& ep, index_t row0) {
    if (!last)
        return accumulate ? full_tile_store_as<MRT, NVT, true, false, false, false>(acc, C, ldc, ep, row0)
                          : full_tile_store_as<MRT, NVT, false, false, false, false>(acc, C, ldc, ep, row0);
    const int flags = (accumulate ? 4 : 0) | (ep.residual ? 2 : 0) | (ep.relu ? 1 : 0);
    switch (flags) {
        case 0: return full_tile_store_as<MRT, NVT, false, true, false, false>(acc, C, ldc, ep, row0);
        case 1: return full_tile_store_as<MRT, NVT, false, true, false, true>(acc, C, ldc, ep, row0);
        case 2: return full_tile_store_as<MRT, NVT, false, true, true, false>(acc, C, ldc, ep, row0);
        case 3: return full_tile_store_as<MRT, NVT, false, true, true, true>(acc, C, ldc, ep, row0);
        case 4: return full_tile_store_as<MRT, NVT, true, true, false, false>(acc, C, ldc, ep, row0);
        case 5: return full_tile_store_as<MRT, NVT, true, true, false, true>(acc, C, ldc, ep, row0);
        case 6: return full_tile_store_as<MRT, NVT, true, true, true, false>(acc, C, ldc, ep, row0);
        default: return full_tile_store_as<MRT, NVT, true, true, true, true>(acc, C, ldc, ep, row0);
    }
}

// MRT rows are computed: fewer than MR where a tile has fewer rows (Winograd on a 7x7 image has 4 tiles), to
// skip the FMAs of the rows it does not store; 2 MR for a tile of one vector read through RowsAOf<2 MR>.
template <int NVT, class BSrc, class ASrc = PackedA, int MRT = MR>
inline void ukernel(index_t kc, const ASrc A, const BSrc B, float* __restrict C, index_t ldc, int mv, int nv,
                    bool accumulate, bool last, const Epilogue& ep, index_t row0, index_t col0) {
    vf acc[MRT][NVT];
#pragma GCC unroll 8
    for (int i = 0; i < MRT; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < NVT; ++j) acc[i][j] = vf{};
    // the residual tile, read by the store after the k loop, is asked for now so that it arrives meanwhile
    // NOTE: asking as well for the next micro-panel's (one or two tiles ahead), or for its lines of C, did not
    // gain: ResNet-50's 1x1 64 -> 256 on 56x56, 128 -> 512 on 28x28 and 256 -> 1024 on 14x14 with the residual,
    // inputs and residuals cycled through 16 copies as a network's layers find theirs, 0.99-1.13x the time (one
    // thread, separate processes in turns, AMD EPYC, Zen 3).
    if (last && ep.residual)
        for (int i = 0; i < mv; ++i)
            for (int j = 0; j < nv; j += static_cast<int>(kLineFloats))
                __builtin_prefetch(ep.residual + (C + i * ldc + j - ep.c_origin), 0, 3);
    if (ep.prefetch_c)
        for (int i = 0; i < mv; ++i) {
            for (int j = 0; j < nv; j += kLineFloats) __builtin_prefetch(C + i * ldc + j, 1, 3);
            __builtin_prefetch(C + i * ldc + nv - 1, 1, 3);
        }

    // NOTE: AVX2's k loop, two k steps a turn: its 12 FMAs took about 26 instructions a step, the counter,
    // pointers and branch among them. In turns in one process, same bits (AMD EPYC Zen 3), one / two threads:
    // Winograd's 3x3 layers 0.87-0.96x / 0.90-1.01x the time (512 -> 512 on 14x14 0.87x / 0.90x, 256 -> 256 on
    // 14x14 0.92x / 0.87x), its 5x5 192 -> 32 0.92x / 1.00x, the 1x1 layers 0.98-0.99x / 0.90-1.00x (256 -> 1024
    // on 14x14 0.99x / 0.90x), Inception's 192 -> 16 0.91x / 0.99x, the 7x7/2 stem 0.97x / 0.97x, AlexNet's
    // 11x11/4 0.95x / 1.01-1.03x, VGG-16's first layer (27 k steps) 1.01-1.03x. Unrolled by four: the same.
    // AVX-512's loop, whose 24 sums leave few registers, keeps one step a turn. In a model of the loop with B
    // in L1 (Intel Xeon, model 167: two 512-bit FMA units, probe 229 GFLOP/s per core), one step a turn
    // ran at 181-191 GFLOP/s, two or four at 182-192; tiles of 6 x 4 and 12 x 2 vectors 183-185, 4 x 6 165.
    // Its FMAs alone reached 222-229, with only B's loads 211, with only A's broadcasts 216: the loads, not
    // the tile's shape or the loop's counters, hold it at about 80% of the probe there.
#if CNNFAST_VEC_BYTES == 32
#pragma GCC unroll 2
#endif
    for (index_t k = 0; k < kc; ++k) {
        vf b[NVT];
        const auto br = B.row(k);
#pragma GCC unroll 4
        for (int j = 0; j < NVT; ++j) b[j] = B.vec(br, j);
        B.prefetch(k);
        A.prefetch(k);
#pragma GCC unroll 8
        for (int i = 0; i < MRT; ++i) {
            const vf av = vbroadcast(A.at(k, i));
#pragma GCC unroll 4
            for (int j = 0; j < NVT; ++j) acc[i][j] += av * b[j];
        }
    }

    // A whole tile without a column bias (the direct convolutions' almost every tile) is stored by code made
    // for its flags, so that no flag is tested per vector (full_tile_store).
    // (Not for the streamed B panels of Winograd and the pixel-major path, whose callers inline the microkernel
    // and lost more to its size than they gained: Winograd's 64 -> 64 on 56x56 took 1.06-1.11x the time on
    // two threads.)
    // (Nor for B sources that load through AVX-512 masked loads, whose builtins GCC 12 does not move stores
    // past: handing the sums to full_tile_store by reference made them memory, stored on every k step. Without
    // it, in turns in one process on an Intel Xeon (AVX-512, two FMA units), same bits, one / two threads:
    // the direct 5x5 16 -> 32 on 28x28 0.48x / 0.52x the time, 192 -> 32 0.50x / 0.51x, LeNet-5's first
    // layer at batch 64 0.67x / 0.70x.)
    if constexpr (!std::is_same_v<BSrc, StreamedB> && !streamed_lines<BSrc>::value &&
                  !masked_loads<BSrc>::value)
        if (mv == MRT && nv == NVT * VL && !(last && ep.bias_col))
            return full_tile_store<MRT, NVT>(acc, C, ldc, accumulate, last, ep, row0);
    // Full vectors go through vector code whatever mv is; only a last partial vector is stored lane by lane.
    const vf bias_zero{};
#pragma GCC unroll 8
    for (int i = 0; i < MRT; ++i) {
        if (i >= mv) break;
        float* c = C + i * ldc;
        const vf brow = (last && ep.bias_row) ? vbroadcast(ep.bias_row[row0 + i]) : bias_zero;
#pragma GCC unroll 4
        for (int j = 0; j < NVT; ++j) {
            const int col = j * VL;
            if (col >= nv) break;
            vf v = acc[i][j];
            if (col + VL <= nv) {
                if (accumulate) v += vload(c + col);
                if (last) {
                    v += brow;
                    if (ep.bias_col) v += vload(ep.bias_col + col0 + col);
                    if (ep.residual) v += vload(ep.residual + (c + col - ep.c_origin));
                    if (ep.relu) v = vrelu(v);
                }
                vstore(c + col, v);
            } else {
                alignas(64) float t[VL];
                *reinterpret_cast<vf*>(t) = v;
                for (int l = 0; l < nv - col; ++l) {
                    float e = t[l];
                    if (accumulate) e += c[col + l];
                    if (last) {
                        if (ep.bias_row) e += ep.bias_row[row0 + i];
                        if (ep.bias_col) e += ep.bias_col[col0 + col + l];
                        if (ep.residual) e += ep.residual[c + col + l - ep.c_origin];
                        if (ep.relu) e = e < 0.f ? 0.f : e;
                    }
                    c[col + l] = e;
                }
            }
        }
    }
}

// A loop of tiles over one B panel (Winograd's wino_gemm_panel, the direct convolutions' copied_panel_tiles):
// with AVX2 out of line, with the microkernel inlined into it (flatten), so that the loop's counters and
// pointers stay in registers and no call is made per tile; with AVX-512, where it was not measured, inline.
#if CNNFAST_VEC_BYTES == 32
#define CNNFAST_TILE_LOOP __attribute__((noinline, flatten))
#else
#define CNNFAST_TILE_LOOP inline
#endif

template <class BSrc, class ASrc = PackedA>
inline void ukernel_any(index_t kc, const ASrc A, const BSrc B, float* C, index_t ldc, int mv, int nv,
                        bool accumulate, bool last, const Epilogue& ep, index_t row0, index_t col0) {
    const int vectors = static_cast<int>(ceil_div(nv, VL));
    constexpr int kHalf = MR > 4 ? MR / 2 : MR, kThreeQuarters = MR > 4 ? 3 * MR / 4 : MR;
    if (kHalf < MR && mv <= kHalf && vectors >= NV)
        return ukernel<NV, BSrc, ASrc, kHalf>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
    // 6 rows of 8 (LeNet-5's first layer has 6 output channels): a quarter of the FMAs saved
    if (kThreeQuarters < MR && mv <= kThreeQuarters && vectors >= NV)
        return ukernel<NV, BSrc, ASrc, kThreeQuarters>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
    // 7 rows of 8 (pixel panels of a 7x7 image): an eighth of the FMAs saved
    if (MR == 8 && mv == MR - 1 && vectors >= NV)
        return ukernel<NV, BSrc, ASrc, MR - 1>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
    if (vectors >= NV)
        ukernel<NV>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
    else if (NV > 2 && vectors == 2)
        ukernel<(NV > 2 ? 2 : NV)>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
    else
        ukernel<1>(kc, A, B, C, ldc, mv, nv, accumulate, last, ep, row0, col0);
}

// A last panel of a few columns (at most kLaneTailCols, packed kc x NR) against P packed micro-panels of A, the
// other way round: a panel's MR rows of A at one k are the lanes of a half-width vector (AVX-512: 8 rows in
// 256 bits; AVX2: 4 rows in 128 bits), and each column of B is broadcast. ukernel<1> computes such a tile as MR
// broadcasts times a whole vector of which a few lanes are used (a 14x14 image: 196 = 4 x 48 + 4 with AVX-512,
// 8 x 24 + 4 with AVX2; a 7x7 image: 49 = 2 x 24 + 1); here it costs NT half-width FMAs per panel and k, which
// cores with 256-bit FMA units (Zen 4) issue at twice the rate of full ones, and P x NT independent sums keep
// the FMA units busy where ukernel<1>'s MR = 4 sums of AVX2 wait on each other's latency. Every element sums
// its products in k order, one FMA each, as ukernel does: the results are the same bits.
#if CNNFAST_VEC_BYTES == 64 || CNNFAST_VEC_BYTES == 32
#if CNNFAST_VEC_BYTES == 64
constexpr int kLaneTailCols = 8;
typedef float vh __attribute__((vector_size(32)));
typedef float vh_u __attribute__((vector_size(32), aligned(4), may_alias));
inline vh hbroadcast(float s) { return (vh)_mm256_set1_ps(s); }
// P micro-panels at a time: 4 x 8 sums and 4 rows of A fit the 32 registers
constexpr int lane_tail_panels(int) { return 4; }
#else
// NOTE: with 16 registers, P x NT sums, P rows of A and a broadcast must fit: four panels up to two columns,
// two panels for three or four. Five columns and more gain nothing over ukernel<1> (their broadcasts cost
// what its vector loads do).
constexpr int kLaneTailCols = 4;
typedef float vh __attribute__((vector_size(16)));
typedef float vh_u __attribute__((vector_size(16), aligned(4), may_alias));
inline vh hbroadcast(float s) { return (vh)_mm_set1_ps(s); }
constexpr int lane_tail_panels(int nt) { return nt <= 2 ? 4 : 2; }
#endif
static_assert(sizeof(vh) == MR * sizeof(float), "the lane tail holds one micro-panel's rows in a half vector");

// How the lane tail loads its micro-panels' rows at one k: one micro-panel in a half-width vector ...
struct HalfRows {
    typedef vh V;
    static constexpr int kPanels = 1;
    static V load(const float* a, index_t, index_t k) { return *reinterpret_cast<const vh_u*>(a + k * MR); }
    static V broadcast(float s) { return hbroadcast(s); }
};
#if CNNFAST_VEC_BYTES == 32
// ... or, with AVX2, two micro-panels in a whole vector (the second panel's four rows inserted into its upper
// half), so each FMA does a full vector's work, which on cores whose half-width FMAs go no faster than full
// ones (Zen 3) HalfRows' do not. Q pairs at a time: Q x NT sums, Q rows of A and a broadcast in the 16
// registers; the panels left over (fewer than 2 Q) take HalfRows. In turns in one process on an AMD EPYC
// (Zen 3), same bits, one / two threads: 1x1 layers on 14x14 images (a last panel of 4 columns) 0.98-1.00x /
// 0.96-1.00x the time (480 -> 192 0.96-0.97x on two), on 7x7 (one column) 0.98-1.02x, noise.
struct PairRows {
    typedef vf V;
    static constexpr int kPanels = 2;
    static V load(const float* a, index_t a_step, index_t k) {
        const float* lo = a + k * MR;
        return (vf)_mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(lo + a_step), 1);
    }
    static V broadcast(float s) { return vbroadcast(s); }
};
constexpr int lane_pair_count(int nt) { return nt == 1 ? 6 : nt == 2 ? 4 : nt == 3 ? 3 : 2; }
#endif

// Rows [0, mv) (up to P x Rows::kPanels micro-panels, panel p's rows at a + p * a_step) and columns [0, NT)
// of C. The epilogue's row bias, residual and ReLU apply; a column bias does not (the direct convolutions alone
// call this).
template <class Rows, int P, int NT>
inline void ukernel_lane_tail(index_t kc, const float* a, index_t a_step, const float* b, float* __restrict C,
                              index_t ldc, int mv, bool accumulate, bool last, const Epilogue& ep, index_t row0) {
    typedef typename Rows::V V;
    constexpr int L = Rows::kPanels * MR;  // rows per vector
    V acc[P][NT] = {};
    for (index_t k = 0; k < kc; ++k) {
        V av[P];
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) av[p] = Rows::load(a + p * Rows::kPanels * a_step, a_step, k);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            const V bv = Rows::broadcast(b[k * NR + t]);
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) acc[p][t] += av[p] * bv;
        }
    }
    for (int p = 0; p < P; ++p)
        for (int t = 0; t < NT; ++t) {
            alignas(32) float lanes[L];
            *reinterpret_cast<V*>(lanes) = acc[p][t];
            for (int i = 0; i < L && p * L + i < mv; ++i) {
                const index_t row = p * L + i;
                float* c = C + row * ldc + t;
                float e = lanes[i];
                if (accumulate) e += *c;
                if (last) {
                    if (ep.bias_row) e += ep.bias_row[row0 + row];
                    if (ep.residual) e += ep.residual[c - ep.c_origin];
                    if (ep.relu) e = relu1(e);
                }
                *c = e;
            }
        }
}

template <int NT>
inline void lane_tail_rows(index_t kc, const float* a, index_t a_step, const float* b, float* C, index_t ldc, int mv,
                           bool accumulate, bool last, const Epilogue& ep, index_t row0) {
    constexpr int P = lane_tail_panels(NT);
    int i = 0;
#if CNNFAST_VEC_BYTES == 32
    constexpr int Q = lane_pair_count(NT);
    for (; mv - i > (2 * Q - 1) * MR; i += 2 * Q * MR)
        ukernel_lane_tail<PairRows, Q, NT>(kc, a + (i / MR) * a_step, a_step, b, C + i * ldc, ldc, mv - i, accumulate,
                                           last, ep, row0 + i);
#endif
    for (; mv - i > (P - 1) * MR; i += P * MR)
        ukernel_lane_tail<HalfRows, P, NT>(kc, a + (i / MR) * a_step, a_step, b, C + i * ldc, ldc, mv - i, accumulate,
                                           last, ep, row0 + i);
    for (; i < mv; i += MR)
        ukernel_lane_tail<HalfRows, 1, NT>(kc, a + (i / MR) * a_step, 0, b, C + i * ldc, ldc, imin(MR, mv - i),
                                           accumulate, last, ep, row0 + i);
}

// Rows [0, mv) of C, columns [0, nt) (1..kLaneTailCols): micro-panel p of A at a + p * a_step.
inline void lane_tail(int nt, index_t kc, const float* a, index_t a_step, const float* b, float* C, index_t ldc, int mv,
                      bool accumulate, bool last, const Epilogue& ep, index_t row0) {
    switch (nt) {
#define CNNFAST_LANE_TAIL(NT) \
    case NT: return lane_tail_rows<NT>(kc, a, a_step, b, C, ldc, mv, accumulate, last, ep, row0);
        CNNFAST_LANE_TAIL(1)
        CNNFAST_LANE_TAIL(2)
        CNNFAST_LANE_TAIL(3)
        CNNFAST_LANE_TAIL(4)
#if CNNFAST_VEC_BYTES == 64
        CNNFAST_LANE_TAIL(5)
        CNNFAST_LANE_TAIL(6)
        CNNFAST_LANE_TAIL(7)
        CNNFAST_LANE_TAIL(8)
#endif
#undef CNNFAST_LANE_TAIL
        default: break;
    }
}
#else
constexpr int kLaneTailCols = 0;  // a micro-panel's rows are not a half vector: ukernel_any serves
inline void lane_tail(int, index_t, const float*, index_t, const float*, float*, index_t, int, bool, bool,
                      const Epilogue&, index_t) {}
#endif

// Rows [m_begin, m_end) and columns [n0, n0 + nc) of C (+)= A (M x K, row stride lda) * B; C is added to when
// accumulate_into_c. pack_b(dst, pc, kc, n0, nc) must fill ceil(nc / NR) panels of kc x NR floats (panel p at
// dst + p * kc * NR), zero beyond nc.
template <class PackB>
void gemm_block(index_t M, index_t m_begin, index_t m_end, index_t n0, index_t nc, index_t K, const float* A,
                index_t lda, PackB& pack_b, float* Bbuf, float* C, index_t ldc, const Epilogue& ep,
                bool accumulate_into_c = false) {
    // K blocks of equal size, so the last one is not a sliver
    const index_t kblocks = ceil_div(K, KC), kstep = ceil_div(K, kblocks);
    for (index_t pc = 0; pc < K; pc += kstep) {
        const index_t kc = imin(kstep, K - pc);
        pack_b(Bbuf, pc, kc, n0, nc);
        const bool accumulate = accumulate_into_c || pc > 0, last = pc + kc == K;
        // NOTE: packing A costs MR x kc copies per micro-panel: worth it only when several B panels reuse it.
        const bool pack = ceil_div(nc, NR) > 2;
        for (index_t ir = m_begin; ir < m_end; ir += MR) {
            const int mv = static_cast<int>(imin(MR, M - ir));
            if (pack) {
                alignas(64) float a[MR * KC];
                pack_a(A + ir * lda + pc, lda, mv, kc, a);
                for (index_t jr = 0; jr < nc; jr += NR)
                    ukernel_any(kc, PackedA{a}, PackedB{Bbuf + (jr / NR) * kc * NR}, C + ir * ldc + n0 + jr, ldc, mv,
                                static_cast<int>(imin(NR, nc - jr)), accumulate, last, ep, ir, n0 + jr);
            } else {
                const RowsA a(A + ir * lda + pc, lda, mv);
                for (index_t jr = 0; jr < nc; jr += NR)
                    ukernel_any(kc, a, PackedB{Bbuf + (jr / NR) * kc * NR}, C + ir * ldc + n0 + jr, ldc, mv,
                                static_cast<int>(imin(NR, nc - jr)), accumulate, last, ep, ir, n0 + jr);
            }
        }
    }
}

// B is a plain row-major matrix (K x ldb), e.g. the input of a 1x1 convolution with stride 1 and no padding.
struct DensePacker {
    const float* b;
    index_t ldb;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        for (index_t k = pc; k < pc + kc; ++k) {
            const float* src = b + k * ldb + n0;
            for (index_t p = 0; p < panels; ++p) {
                float* d = dst + p * kc * NR + (k - pc) * NR;
                const index_t count = imin(NR, nc - p * NR);
                std::memcpy(d, src + p * NR, sizeof(float) * count);
                for (index_t t = count; t < NR; ++t) d[t] = 0.f;
            }
        }
    }
};

// How to split one GEMM of M x N (repeated `outer` times) into tasks for `threads` threads: N in blocks of
// whole NR panels (at most NC columns, sizes differing by one panel at most), and M in chunks of whole MR
// panels when there are too few N blocks to keep every thread busy.
struct GemmSplit {
    index_t n, n_blocks, n_panels, m_chunks, m_chunk_rows;
    bool m_outer = false;  // tasks numbered with the N block fastest (see gemm_task)
    // Columns [n_begin(b), n_begin(b + 1)) form N block b.
    index_t n_begin(index_t b) const { return imin(n, (b * n_panels / n_blocks) * NR); }
};

// Task t of outer * n_blocks * m_chunks: M chunk fastest, then N block, then the outer index; or, with
// m_outer, N block fastest, then M chunk.
struct GemmTask {
    index_t m_chunk, n_block, outer;
};
inline GemmTask gemm_task(index_t t, const GemmSplit& split) {
    if (split.m_outer) {
        const index_t per = split.n_blocks * split.m_chunks, r = t % per;
        return {r / split.n_blocks, r % split.n_blocks, t / per};
    }
    const index_t r = t / split.m_chunks;
    return {t % split.m_chunks, r % split.n_blocks, r / split.n_blocks};
}

// The busiest thread's work when `threads` threads take the tasks of `split` (outer repeats) as
// schedule(static) deals them out, in contiguous runs of equal length (the first runs one longer), a task
// costing (micro-panels + 1/2) x its columns' vectors, in halves: a last panel of a few columns costs what
// its vectors do (a 14x14 image's 196 = 4 x 48 + 4 columns: 13 vectors, not 5 panels' 15), so 96 + 100
// columns count as the even split they are.
inline index_t busiest_thread_work(const GemmSplit& split, index_t outer, index_t m_panels, int threads) {
    const index_t ppc = split.m_chunk_rows / MR, tasks = outer * split.n_blocks * split.m_chunks;
    const index_t q = tasks / threads, extra = tasks % threads;
    index_t busiest = 0, t = 0;
    for (int i = 0; i < threads; ++i) {
        index_t work = 0;
        for (const index_t end = t + q + (i < extra ? 1 : 0); t < end; ++t) {
            const GemmTask task = gemm_task(t, split);
            const index_t mp = imin(ppc, m_panels - task.m_chunk * ppc);
            const index_t cols = split.n_begin(task.n_block + 1) - split.n_begin(task.n_block);
            work += (2 * mp + 1) * ceil_div(cols, VL);
        }
        busiest = imax(busiest, work);
    }
    return busiest;
}

// NOTE: tasks are dealt out in order (schedule(static)), so a call lasts as long as its busiest thread's
// ceil(tasks / threads) tasks. The M chunk size is the one that minimizes that, counting half a panel of
// overhead per task (every chunk reads B again), the largest on ties. Even N blocks matter as much: 896
// columns as 384 + 384 + 128 leave one of two threads idle a third of the time; 336 + 288 + 288 do not.
inline GemmSplit split_gemm(index_t outer, index_t M, index_t N, int threads, bool refine_n = false) {
    GemmSplit s;
    s.n = N;
    s.n_panels = ceil_div(N, NR);
    s.n_blocks = ceil_div(s.n_panels, NC / NR);
    const index_t panels = ceil_div(M, MR), units = outer * s.n_blocks, t = imax(1, threads);
    index_t best_ppc = panels, best_cost = -1;
    for (index_t ppc = panels; ppc >= 1; --ppc) {
        const index_t chunks = ceil_div(panels, ppc), cost = ceil_div(units * chunks, t) * (2 * ppc + 1);
        if (best_cost < 0 || cost < best_cost) best_cost = cost, best_ppc = ppc;
    }
    s.m_chunk_rows = best_ppc * MR;
    s.m_chunks = ceil_div(panels, best_ppc);
    // NOTE: N blocks differ by a panel, and the M chunk last in a run may be short: with few tasks, the order
    // in which they are numbered decides how even the threads' shares are. Inception's 5x5 16 -> 32 on 28x28
    // at two threads: N blocks of 5, 6 and 6 panels, two M chunks; M fastest gives the threads 16 and 18
    // panels' work, N fastest 17 and 17.
    if (t > 1 && units * s.m_chunks <= 16 * t) {  // (with more tasks per thread, either order is about even)
        GemmSplit n_fastest = s;
        n_fastest.m_outer = true;
        if (busiest_thread_work(n_fastest, outer, panels, static_cast<int>(t)) <
            busiest_thread_work(s, outer, panels, static_cast<int>(t)))
            s = n_fastest;
    }
    // NOTE: M chunks cost more than the half panel counted above: every chunk reads its N block of B again
    // (on another core, whose L2 then holds a copy), and a chunk of four micro-panels or fewer misses the
    // order that keeps B panels in L1 (indirect_block). Where the caller can take any number of N blocks, whole
    // M over a few more, smaller N blocks (a multiple of the threads) wins unless it leaves the busiest thread
    // 10% more work. Two threads, 1x1 layers on an input just written by both (as in a network): ResNet-50's
    // 256 -> 64 on 56x56 1.01 -> 0.57 ms (9 N blocks as 2 x 9 tasks before, 10 blocks now), 256 -> 128 on
    // 56x56 0.77x, 512 -> 128 on 28x28 0.85x. 1024 -> 256 on 14x14 (columns 96 + 100, counted by vectors):
    // 0.92x the time of two M chunks on an input just written by both threads, 1.00x on a warm one (AMD
    // EPYC Zen 5, in turns in one process).
    if (refine_n && t > 1 && s.m_chunks > 1) {
        GemmSplit w = s;
        w.m_outer = false;
        w.m_chunk_rows = panels * MR;
        w.m_chunks = 1;
        while (w.n_blocks < s.n_panels && (outer * w.n_blocks) % t != 0) ++w.n_blocks;
        if ((outer * w.n_blocks) % t == 0 &&
            busiest_thread_work(w, outer, panels, static_cast<int>(t)) * 10 <=
                busiest_thread_work(s, outer, panels, static_cast<int>(t)) * 11)
            s = w;
    }
    return s;
}

// Where `split` gives each thread one N block and the whole of A (one task each), a split of M among the
// threads instead, each over every N block (m_outer): each thread then reads 1/threads of A and all of B
// rather than all of A and 1/threads of B, which the caller chooses when A is the larger. The split is
// returned unchanged where it has other tasks or M has fewer micro-panels than threads.
// NOTE: batch 1, two threads, 1x1 layers on a 14x14 image, whose 1 MiB of weights a network brings from
// memory (its other layers' weights have pushed them out of L3), each thread reading all of them: in turns
// in one process on an AMD EPYC (Zen 3), caches flushed between calls, 1024 -> 512 0.90-0.93x the time,
// 512 -> 1024 0.92-0.94x, 1024 -> 256 0.95-0.97x, 256 -> 1024 0.86-1.04x, 1x1/2 512 -> 1024 from 28x28
// 0.81-0.86x; ResNet-50's forward pass 0.95-0.96x. Warm, the weights in L2 and L3 from the call before, the
// 14x14 layers took 0.95-1.09x.
inline GemmSplit split_m_across_threads(GemmSplit s, index_t outer, index_t M, int threads) {
    const index_t panels = ceil_div(M, MR);
    if (threads < 2 || s.m_chunks != 1 || outer * s.n_blocks != threads || panels < threads) return s;
    s.m_chunk_rows = ceil_div(panels, threads) * MR;
    s.m_chunks = ceil_div(M, s.m_chunk_rows);
    s.m_outer = true;  // thread i: M chunk i, N blocks 0, 1, ...
    return s;
}

// M chunks whose K block of A (rows x kc) passes kMaxABlockBytes, cut into equal chunks that fit (whole micro-
// panels): the B-panel-outer order (indirect_block) passes all of a chunk's K block over each B panel, and a
// block larger than L2 comes from L3 on every pass but the first. Each chunk then packs or copies its
// B panels again, a small part of its work.
// NOTE: AVX2 only, where it was measured (L2 of 512 KiB; AVX-512 cores have 1-2 MiB). In turns in one process on
// an AMD EPYC (Zen 3), caches flushed between calls, batch 1: ResNet-50's 1x1 512 -> 2048 on 7x7 (4 chunks of 512
// rows) 0.82-0.99x the time on one thread and 0.86-0.97x on two, 1x1/2 1024 -> 2048 from 14x14 0.91-0.98x, 256 ->
// 1024 on 14x14 0.94-0.98x / 0.99-1.05x; at batch 8 0.88-1.13x, about even. That was with K blocks of 128 rows
// and chunks of 256 KiB (512 rows); with blocks of 256 rows (kKcResident), chunks of 512 KiB keep the rows and
// took 0.98-1.00x the time of 256 KiB ones on one thread (1x1/2 1024 -> 2048 from 14x14 0.98x, 512 -> 2048 and
// 2048 -> 512 on 7x7 0.99x), 1.00x on two (0.99-1.02x), caches flushed; warm 0.98x / 0.97-1.01x; batch 8
// 0.97-0.99x on one and two threads.
#if CNNFAST_VEC_BYTES == 32
constexpr index_t kMaxABlockBytes = index_t(512) << 10;
#else
constexpr index_t kMaxABlockBytes = 0;  // no cap
#endif
inline GemmSplit cap_m_chunk(GemmSplit s, index_t M, index_t kc) {
    if (kMaxABlockBytes == 0) return s;
    const index_t cap = imax(4 * MR, kMaxABlockBytes / index_t(sizeof(float)) / kc / MR * MR);
    if (s.m_chunk_rows <= cap) return s;
    const index_t per = ceil_div(s.m_chunk_rows, cap);
    s.m_chunk_rows = ceil_div(ceil_div(s.m_chunk_rows, per), MR) * MR;
    s.m_chunks = ceil_div(M, s.m_chunk_rows);
    return s;
}

// C (M x N, ldc) = A (M x K, lda) * B on `threads` threads, B packed by a copy of `packer` per thread.
template <class PackB>
void gemm_parallel(index_t M, index_t N, index_t K, const float* A, index_t lda, const PackB& packer, float* C,
                   index_t ldc, const Epilogue& ep, int threads) {
    const GemmSplit split = split_gemm(1, M, N, threads);
    const index_t tasks = split.n_blocks * split.m_chunks;
    PerThread<float> b_bufs(threads, static_cast<std::size_t>(KC * NC));
    parallel(threads, [&] {
        DenormalsOff ftz;
        float* const b_buf = b_bufs.get();
        PackB pk = packer;
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            const GemmTask task = gemm_task(t, split);
            const index_t mc = task.m_chunk, nb = task.n_block;
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(M, m0 + split.m_chunk_rows);
            const index_t n0 = split.n_begin(nb), nc = split.n_begin(nb + 1) - n0;
            gemm_block(M, m0, m1, n0, nc, K, A, lda, pk, b_buf, C, ldc, ep);
        }
    });
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
