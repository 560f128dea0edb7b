// Internal: the fully connected layer y = x @ W.T + b, float32, compiled once per ISA. With W^T prepared
// (linear_prepack): up to 3 rows, one pass streaming the prepared panels (for very long rows of W, the passes
// over W below instead); 4 rows or more, one GEMM streaming them. Otherwise, up to 32 rows: passes over W,
// each serving up to 8 rows of x (bandwidth-bound on W); more: the packed GEMM with W.T packed block by block.
#pragma once

#include <omp.h>

#include "../gemm/gemm_body.h"
#include "../parallel.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// B[k][n] = W[n][k]: the transposed weight, packed panel by panel.
struct TransposedPacker {
    const float* w;
    index_t in;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        for (index_t p = 0; p < panels; ++p) {
            float* d = dst + p * kc * NR;
            const index_t count = imin(NR, nc - p * NR);
            for (index_t j = 0; j < count; ++j) {
                const float* src = w + (n0 + p * NR + j) * in + pc;
                for (index_t k = 0; k < kc; ++k) d[k * NR + j] = src[k];
            }
            for (index_t j = count; j < NR; ++j)
                for (index_t k = 0; k < kc; ++k) d[k * NR + j] = 0.f;
        }
    }
};

// Vector registers, and the batch rows one pass over W serves: B x R accumulators, R rows of W and a row of x
// must fit in registers. Up to 8 rows of W at a time: more streams in flight (4096 x 4096 at batch 1 on one
// thread: 2.45 -> 2.11 ms with 8 instead of 4).
constexpr int kVecRegs = CNNFAST_VEC_BYTES == 64 ? 32 : 16;
constexpr int kGemvBatch = kVecRegs == 32 ? 8 : 4;
// Up to this batch, passes over W (one per kGemvBatch rows of x) beat the GEMM, which packs W transposed.
constexpr index_t kGemvMaxBatch = 32;
// Below these multiply-adds (batch x in x out), a call runs on one thread: a layer as small as LeNet-5's 120
// -> 84 is over before a second thread has started. One each for the passes over W (gemv), over the prepared
// panels (panel_gemv) and the GEMM on them (linear_packed), which also packs x.
// NOTE: two threads against one, in turns in one process on an Intel Xeon (model 167), batch 1: gemv 10K
// multiply-adds (120 -> 84) 1.14x the time, 48K (400 -> 120) 0.88x, 64K 0.77x, 256K 0.62x; panel_gemv 10K
// 1.27x, 48K 1.06x, 64K 0.94x, 128K 0.89x, 256K 0.70x, 1M (GoogLeNet's 1024 -> 1000) 0.51x; linear_packed
// 40K (120 -> 84 at batch 4) 1.31x, 128K 1.01x, 256K 0.81x, 512K 0.74x. (Both prepared paths had kept one
// thread up to 1M.)
constexpr index_t kGemvOneThreadMacs = index_t(1) << 15;
constexpr index_t kPanelOneThreadMacs = index_t(1) << 16;
constexpr index_t kPackedOneThreadMacs = index_t(1) << 17;
constexpr int gemv_rows_of_w(int B) {
    const int r = (kVecRegs - 1) / (B + 1);
    return r > 8 ? 8 : r < 1 ? 1 : r;
}

inline float hsum(vf v) {
    float s = 0.f;
    for (int i = 0; i < VL; ++i) s += v[i];
    return s;
}

// How far ahead of its loads each row stream of gemv asks for W: 1 KiB.
// NOTE: in turns in one process on an Intel Xeon (model 167), same bits, batch 1, against no asking: 25088 ->
// 4096 (411 MB from DRAM) 0.93x / 0.94x the time on one / two threads, 9216 -> 4096 0.96x / 0.93x, 4096 ->
// 4096 0.97x / 0.99x, at batch 8 and 16 0.90x and 0.92x; with the weights in L3 (4096 -> 2048 and smaller)
// 1.00x; with AVX2 forced, one thread, in turns of processes: 9216 -> 4096 at batch 8 0.75x, 4096 -> 4096 and
// smaller 0.97-1.01x. Half or twice as far ahead gained less: on 25088 -> 4096, against panel_gemv
// (rows_beat_panels), 0.95-0.96x the time where 1 KiB took 0.82-0.89x. On an AMD EPYC (Zen 3), one thread,
// batch 1, separate processes in turns: asking into L2 instead, half as far ahead, or once per line, 0.99-1.16x
// the time on 25088 -> 4096 and 4096 -> 4096, none a gain.
constexpr index_t kGemvAheadFloats = 1024 / sizeof(float);

// y (B x out) = x (B x in) @ W.T for a batch of B <= kGemvBatch: bound by reading W once. Each task takes R
// rows of W at a time, so that R streams of W are in flight (one stream per core leaves DRAM bandwidth
// unused), each read once for the whole batch.
template <int B>
void gemv(index_t in, index_t out, const float* __restrict x, const float* __restrict w, const float* bias,
          float* __restrict y, bool relu, int threads) {
    constexpr int R = gemv_rows_of_w(B);
    const index_t blocks = ceil_div(out, R);
    if (B * in * out < kGemvOneThreadMacs) threads = 1;
    parallel_for(threads, blocks, [&](index_t blk) {
        DenormalsOff ftz;
        const index_t o0 = blk * R;
        const int rows = static_cast<int>(imin(R, out - o0));
        const float* wr[R];
        for (int r = 0; r < R; ++r) wr[r] = w + (o0 + (r < rows ? r : rows - 1)) * in;  // repeats are not stored
        vf acc[B][R];
        for (int b = 0; b < B; ++b)
            for (int r = 0; r < R; ++r) acc[b][r] = vf{};
        index_t k = 0;
        for (; k + VL <= in; k += VL) {
            vf wv[R];
            for (int r = 0; r < R; ++r) {
                prefetch_ahead(wr[r] + k, kGemvAheadFloats);  // past the row's end near its end
                wv[r] = vload(wr[r] + k);
            }
            for (int b = 0; b < B; ++b) {
                const vf xv = vload(x + b * in + k);
                for (int r = 0; r < R; ++r) acc[b][r] += wv[r] * xv;
            }
        }
        for (int b = 0; b < B; ++b)
            for (int r = 0; r < rows; ++r) {
                float sum = hsum(acc[b][r]);
                for (index_t t = k; t < in; ++t) sum += wr[r][t] * x[b * in + t];
                if (bias) sum += bias[o0 + r];
                y[b * out + o0 + r] = relu ? relu1(sum) : sum;
            }
    });
}

// W^T packed whole: ceil(out / NR) panels of in x NR floats (panel p, row k: W[p * NR + j][k], zero past out).
void linear_prepack_impl(index_t in, index_t out, const float* w, float* dst) {
    const index_t panels = ceil_div(out, NR);
    constexpr index_t kBlock = 64;  // k rows per pass: NR rows of W stay in cache while transposed
    parallel_for(get_num_threads(), panels, [&](index_t p) {
        float* d = dst + p * in * NR;
        const index_t count = imin(NR, out - p * NR);
        for (index_t k0 = 0; k0 < in; k0 += kBlock) {
            const index_t k1 = imin(in, k0 + kBlock);
            for (index_t j = 0; j < NR; ++j) {
                const float* src = w + (p * NR + j) * in;
                for (index_t k = k0; k < k1; ++k) d[k * NR + j] = j < count ? src[k] : 0.f;
            }
        }
    });
}

// Rows of a prepared panel that a single stream over it asks for ahead of the one it reads (AheadB, panel_gemv).
constexpr index_t kAheadRows = 16;  // 3 KiB of a panel with AVX-512, 1.5 KiB with AVX2

// y (batch x out) = x @ W.T + b with W^T prepared (linear_prepack_impl): each thread streams its run of
// panels once, front to back (a panel is contiguous: in x NR floats), against x packed whole (MR-row
// micro-panels over all of K). One MR panel of x (batch <= MR): no K blocks, so each panel is one sequential
// stream; more: K blocks, so that a panel's block is read from memory once for all of x's panels, while
// the passes over it ask for the next block into L2, each pass for its share of the lines.
// NOTE: without the asking, the first pass over a block waited on memory and the others computed with memory
// idle: AlexNet's 9216 -> 4096 at batch 8 took 12.5 ms where streaming its 151 MB alone (batch 1) takes 6.4
// and the multiplies alone about 6. In turns in one process on an AMD EPYC (Zen 3, AVX2: batch 8 is two
// micro-panels), same bits, one / two threads: 9216 -> 4096 at batch 8 0.78-0.81x / 0.84x the time, 4096 ->
// 4096 0.78-0.79x, at batch 16 0.81x; asking a block further ahead gained less (0.80x), and every pass asking
// for all of it, 0.84-0.89x.
// A single pass (batch <= MR) asks for its row kAheadRows on into L1 as it reads a row (AheadB), as
// panel_gemv does: on an Intel Xeon (model 167, AVX-512), the hardware prefetchers alone left one thread at
// 10 GB/s where the batch-1 pass over the same weights reads 17. In turns in one process there, same bits,
// one / two threads: 9216 -> 4096 at batch 8 (151 MB from DRAM) 14.5 -> 9.6 ms / 7.4 -> 4.8 ms (0.63-0.67x
// the time), at batch 4 0.72x / 0.78x, 25088 -> 4096 at batch 8 0.68x / 0.68x, 2048 -> 1000 (in L3) 0.93x /
// 0.99x; asking 8 rows ahead gained about as much, 24 to 64 rows less (0.75-0.80x). (On the AMD EPYC, the
// same single pass asking 512 rows ahead into L2 had taken 1.10x.) The K-blocked passes of larger batches
// gained nothing on the Xeon from the same asking in their first pass (9216 -> 4096 at batch 16 and 32, one
// thread: beside the asking for the next block 0.96-1.05x the time, instead of it 1.26-1.40x).
void linear_packed(index_t batch, index_t in, index_t out, const float* x, const float* wp, const float* bias,
                   float* y, bool relu) {
    const index_t panels = ceil_div(out, NR);
    const int threads = batch * in * out < kPackedOneThreadMacs ? 1 : static_cast<int>(imin(get_num_threads(), panels));
    const index_t mpanels = ceil_div(batch, MR);
    const index_t kblocks = mpanels == 1 ? 1 : ceil_div(in, KC), kstep = ceil_div(in, kblocks);
    Scratch a_packed(static_cast<std::size_t>(mpanels * MR * in));
    Epilogue ep;
    ep.bias_col = bias;
    ep.relu = relu;
    parallel(threads, [&] {
        DenormalsOff ftz;
#pragma omp for schedule(static)
        for (index_t im = 0; im < mpanels; ++im)
            pack_a(x + im * MR * in, in, imin(MR, batch - im * MR), in, a_packed.p + im * MR * in);
        const int t = omp_get_thread_num();
        const index_t p0 = t * panels / threads, p1 = (t + 1) * panels / threads;
        for (index_t p = p0; p < p1; ++p) {
            const float* panel = wp + p * in * NR;
            const int nv = static_cast<int>(imin(NR, out - p * NR));
            for (index_t pc = 0; pc < in; pc += kstep) {
                const index_t kc = imin(kstep, in - pc);
                const float* const b = panel + pc * NR;
                // the next block, a whole one (the next panel's first after the last), if this thread reads it
                const bool ask = mpanels > 1 && (p + 1 < p1 || pc + 2 * kc <= in);
                // NOTE: each micro-panel asks for one line per k of its part of the next block; at batch 16 with
                // AVX-512 (two micro-panels, three lines per row) that leaves a quarter of the block to the
                // hardware prefetchers, and covering all of it (with_shared_next: two lines per k for the first)
                // gained nothing: 9216 -> 4096 at batch 16, in turns in one process on an Intel Xeon (model 167),
                // same bits, 1.05x / 0.97x the time on one / two threads.
                const index_t lines = ceil_div(ceil_div(kc * NR, kLineFloats), mpanels);
                for (index_t im = 0; im < mpanels; ++im) {
                    const PackedA a{a_packed.p + im * MR * in + pc * MR};
                    float* const c = y + im * MR * out + p * NR;
                    const int mv = static_cast<int>(imin(MR, batch - im * MR));
                    if (ask)
                        ukernel_any(kc, a, StreamedBLines<>{{b}, b + kc * NR + im * lines * kLineFloats}, c, out, mv, nv,
                                    pc > 0, pc + kc == in, ep, im * MR, p * NR);
                    else if (mpanels == 1)
                        ukernel_any(kc, a, AheadB<kAheadRows>{{b}}, c, out, mv, nv, pc > 0, pc + kc == in, ep, im * MR,
                                    p * NR);
                    else
                        ukernel_any(kc, a, PackedB{b}, c, out, mv, nv, pc > 0, pc + kc == in, ep, im * MR, p * NR);
                }
            }
        }
    });
}

// y (B x out) = x @ W.T + b for a few rows (B <= 3) with W^T prepared: each thread walks its run of panels S
// at a time, each panel one sequential stream, every k of a panel (NR floats) multiplied by x[b][k]
// broadcast, and each stream asks for its row kAheadRows on into L1 as it reads a row. Fewer, longer streams
// than passes over W itself, whose R rows of W are R streams of a few KiB (ResNet-50's 2048 -> 1000 on one
// thread, the weights in L3: 8.2 MB in 118 us as 8 row streams, 88 us as 3 panel streams; 4096 -> 4096 from
// DRAM: 2.39 -> 1.76 ms).
// NOTE: one core reaches DRAM's bandwidth only with many requests in flight: more streams (as many as the
// accumulators allow) and the prefetch both add to them. Against 3 streams (2 with AVX2) with two accumulator
// sets over alternate k and no prefetch, in turns in one process on an Intel Xeon (Ice Lake, model 106), one /
// two threads, prepared weights on huge pages: batch 1, 25088 -> 4096 (VGG-16's first, 411 MB) 0.83x / 0.82-0.85x
// the time (12.6 -> 15.3 GB/s on one thread), 4096 -> 4096 0.86x / 0.85x, 2048 -> 1000 (in L3) 0.98x / 0.91x;
// batch 2 (2 -> 4 streams) 0.77x / 0.73x, batch 3 (2 -> 3) 0.75x / 0.75x; AVX2, batch 1 (2 -> 4 streams)
// 0.84x / 0.76x on 25088 -> 4096, 0.75x / 0.70x on 4096 -> 4096. In a model of the loop, prefetching into L2
// instead gained less (0.90x at batch 1), and 8 rows ahead instead of 16 about the same; the batch-4+ GEMM's
// single stream per thread (AlexNet's 9216 -> 4096 at batch 8) gained nothing from the same prefetch there
// (it does on a later Xeon: see linear_packed).
constexpr int panel_streams(int B) {
    return kVecRegs == 32 ? (B == 1 ? 6 : B == 2 ? 4 : 3) : (B == 1 ? 4 : B == 2 ? 2 : 1);
}

template <int B>
void panel_gemv(index_t in, index_t out, const float* __restrict x, const float* __restrict wp, const float* bias,
                float* __restrict y, bool relu, int threads) {
    constexpr int S = panel_streams(B);
    const index_t panels = ceil_div(out, NR);
    threads = B * in * out < kPanelOneThreadMacs ? 1 : static_cast<int>(imin(threads, panels));
    parallel(threads, [&] {
        DenormalsOff ftz;
        const int t = omp_get_thread_num();
        const index_t p0 = t * panels / threads, p1 = (t + 1) * panels / threads;
        for (index_t p = p0; p < p1; p += S) {
            AheadB<kAheadRows> panel[S];  // past p1, the last panel again: computed, not stored
            for (int s = 0; s < S; ++s) panel[s].p = wp + imin(p + s, p1 - 1) * in * NR;
            vf acc[S][B][NV];
            for (int s = 0; s < S; ++s)
                for (int b = 0; b < B; ++b)
                    for (int v = 0; v < NV; ++v) acc[s][b][v] = vf{};
            for (index_t k = 0; k < in; ++k) {
                vf xb[B];
                for (int b = 0; b < B; ++b) xb[b] = vbroadcast(x[b * in + k]);
                for (int s = 0; s < S; ++s) {
                    const float* const row = panel[s].row(k);
                    panel[s].prefetch(k);
                    for (int v = 0; v < NV; ++v) {
                        const vf wv = panel[s].vec(row, v);
                        for (int b = 0; b < B; ++b) acc[s][b][v] += xb[b] * wv;
                    }
                }
            }
            for (int s = 0; s < S && p + s < p1; ++s) {
                const index_t j0 = (p + s) * NR, count = imin(NR, out - j0);
                for (int b = 0; b < B; ++b) {
                    alignas(64) float tile[NR];
                    for (int v = 0; v < NV; ++v) vstore(tile + v * VL, acc[s][b][v]);
                    for (index_t j = 0; j < count; ++j) {
                        const float e = tile[j] + (bias ? bias[j0 + j] : 0.f);
                        y[b * out + j0 + j] = relu ? relu1(e) : e;
                    }
                }
            }
        }
    });
}

// Whether passes over W itself (gemv) beat the prepared panels (panel_gemv) for a batch of at most 3 rows:
// where a row of W is long and the batch leaves registers for 6 row streams or more.
// NOTE: each row stream of gemv starts cold, where a panel stream runs for all of K; past 16K floats a row is
// long enough to pay for it. In turns in one process on an Intel Xeon (model 167), same bits, gemv against
// panel_gemv, one / two threads: 25088 -> 4096 at batch 1 (VGG-16's first, 411 MB) 0.82-0.89x / 0.88x the
// time, at batch 2 0.87x (2 threads), at batch 3 0.86-0.91x / 0.91x; 25088 -> 2048 and 25088 -> 1024 0.87-0.88x,
// 16384 -> 4096 0.97x / 0.97x; 9216 -> 4096 1.08-1.09x / 1.11x, 4096 -> 4096 1.10x. With AVX2 forced: 25088 ->
// 4096 at batch 1 (7 rows of W) 0.89x, at batch 2 (5) 1.08x, at batch 3 (3) 1.13x.
inline bool rows_beat_panels(index_t batch, index_t in) {
    constexpr index_t kLongRow = index_t(1) << 14;
    const int rows = gemv_rows_of_w(static_cast<int>(batch));
    return batch <= 3 && in >= kLongRow && rows >= 6;
}

}  // namespace

index_t linear_prepack_floats(index_t in, index_t out) { return ceil_div(out, NR) * NR * in; }

void linear_prepack(index_t in, index_t out, const float* w, float* dst) { linear_prepack_impl(in, out, w, dst); }

// prepacked: linear_prepack()'s panels of W^T, or null.
void linear(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* bias, float* y,
            Activation act, const float* prepacked) {
    if (batch == 0 || out == 0) return;
    const bool relu = act == Activation::relu;
    const int threads = get_num_threads();
    if (in == 0) {
        for (index_t b = 0; b < batch; ++b)
            for (index_t o = 0; o < out; ++o) {
                const float v = bias ? bias[o] : 0.f;
                y[b * out + o] = relu ? relu1(v) : v;
            }
        return;
    }
    // NOTE: with the prepared panels, up to 3 rows stream them once as a matrix-vector product; from 4 up
    // the GEMM streams them once, against x packed once, instead of passes that each re-read the rows of x
    // for every few rows of W (AlexNet's 9216 -> 4096 at batch 8: 12 -> 8 ms).
    if (prepacked && batch >= 4) return linear_packed(batch, in, out, x, prepacked, bias, y, relu);
    if (prepacked && !rows_beat_panels(batch, in)) {
        switch (batch) {
            case 1: return panel_gemv<1>(in, out, x, prepacked, bias, y, relu, threads);
            case 2: return panel_gemv<2>(in, out, x, prepacked, bias, y, relu, threads);
            default: return panel_gemv<3>(in, out, x, prepacked, bias, y, relu, threads);
        }
    }
    if (batch <= kGemvMaxBatch) {
        for (index_t b0 = 0; b0 < batch; b0 += kGemvBatch) {
            const float* xb = x + b0 * in;
            float* yb = y + b0 * out;
            switch (imin(kGemvBatch, batch - b0)) {
                case 1: gemv<1>(in, out, xb, w, bias, yb, relu, threads); break;
                case 2: gemv<2>(in, out, xb, w, bias, yb, relu, threads); break;
                case 3: gemv<3>(in, out, xb, w, bias, yb, relu, threads); break;
                case 4: gemv<4>(in, out, xb, w, bias, yb, relu, threads); break;
#if CNNFAST_VEC_BYTES == 64
                case 5: gemv<5>(in, out, xb, w, bias, yb, relu, threads); break;
                case 6: gemv<6>(in, out, xb, w, bias, yb, relu, threads); break;
                case 7: gemv<7>(in, out, xb, w, bias, yb, relu, threads); break;
                case 8: gemv<8>(in, out, xb, w, bias, yb, relu, threads); break;
#endif
                default: break;
            }
        }
        return;
    }
    Epilogue ep;
    ep.bias_col = bias;
    ep.relu = relu;
    gemm_parallel(batch, out, in, x, in, TransposedPacker{w, in}, y, out, ep, threads);
}

// dx = dy @ W, dw = dy.T @ x, db = dy summed over the batch; each output may be null (not wanted).
void linear_backward(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db) {
    const int threads = get_num_threads();
    if (db) {
        for (index_t o = 0; o < out; ++o) db[o] = 0.f;
        for (index_t b = 0; b < batch; ++b)
            for (index_t o = 0; o < out; ++o) db[o] += dy[b * out + o];
    }
    const Epilogue ep;
    if (dx && batch > 0 && in > 0) {
        if (out == 0)
            for (index_t i = 0; i < batch * in; ++i) dx[i] = 0.f;
        else
            gemm_parallel(batch, in, out, dy, out, DensePacker{w, in}, dx, in, ep, threads);
    }
    if (dw && out > 0 && in > 0) {
        if (batch == 0) {
            for (index_t i = 0; i < out * in; ++i) dw[i] = 0.f;
            return;
        }
        Scratch dyt(static_cast<std::size_t>(out * batch));  // dy transposed: A rows are outputs
        for (index_t b = 0; b < batch; ++b)
            for (index_t o = 0; o < out; ++o) dyt.p[o * batch + b] = dy[b * out + o];
        gemm_parallel(out, in, batch, dyt.p, batch, DensePacker{x, in}, dw, in, ep, threads);
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
