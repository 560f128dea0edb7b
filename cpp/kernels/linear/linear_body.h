// Internal: the fully connected layer y = x @ W.T + b, float32, compiled once per ISA. A few rows: one
// dot product per output (bandwidth-bound on W). More: the packed GEMM with W.T packed block by block.
#pragma once

#include <omp.h>

#include "../gemm/gemm_body.h"

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

constexpr index_t kGemvRows = 4;

}  // namespace

void linear(index_t batch, index_t in, index_t out, const float* x, const float* w, const float* bias, float* y,
            Activation act) {
    if (batch == 0 || out == 0) return;
    const bool relu = act == Activation::relu;
    const int threads = get_num_threads();
    if (batch <= kGemvRows || in == 0) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (index_t o = 0; o < out; ++o) {
            const float* wr = w + o * in;
            for (index_t b = 0; b < batch; ++b) {
                const float* xr = x + b * in;
                float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                for (index_t k = 0; k < in; ++k) acc += wr[k] * xr[k];
                if (bias) acc += bias[o];
                y[b * out + o] = relu ? relu1(acc) : acc;
            }
        }
        return;
    }
    const GemmSplit split = split_gemm(1, batch, out, threads);
    const index_t tasks = split.n_blocks * split.m_chunks;
    Epilogue ep;
    ep.bias_col = bias;
    ep.relu = relu;
#pragma omp parallel num_threads(threads)
    {
        DenormalsOff ftz;
        Scratch b_buf(static_cast<std::size_t>(KC * NC));
        TransposedPacker pk{w, in};
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            const index_t mc = t % split.m_chunks, nb = t / split.m_chunks;
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(batch, m0 + split.m_chunk_rows);
            const index_t n0 = nb * NC, nc = imin(NC, out - n0);
            gemm_block(batch, m0, m1, n0, nc, in, x, in, pk, b_buf.p, y, out, ep);
        }
    }
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
        if (out == 0) {
            for (index_t i = 0; i < batch * in; ++i) dx[i] = 0.f;
        } else {
            const GemmSplit split = split_gemm(1, batch, in, threads);
            const index_t tasks = split.n_blocks * split.m_chunks;
#pragma omp parallel num_threads(threads)
            {
                DenormalsOff ftz;
                Scratch b_buf(static_cast<std::size_t>(KC * NC));
                DensePacker pk{w, in};
#pragma omp for schedule(static)
                for (index_t t = 0; t < tasks; ++t) {
                    const index_t mc = t % split.m_chunks, nb = t / split.m_chunks;
                    const index_t m0 = mc * split.m_chunk_rows, m1 = imin(batch, m0 + split.m_chunk_rows);
                    const index_t n0 = nb * NC, nc = imin(NC, in - n0);
                    gemm_block(batch, m0, m1, n0, nc, out, dy, out, pk, b_buf.p, dx, in, ep);
                }
            }
        }
    }
    if (dw && out > 0 && in > 0) {
        if (batch == 0) {
            for (index_t i = 0; i < out * in; ++i) dw[i] = 0.f;
            return;
        }
        Scratch dyt(static_cast<std::size_t>(out * batch));  // dy transposed: A rows are outputs
        for (index_t b = 0; b < batch; ++b)
            for (index_t o = 0; o < out; ++o) dyt.p[o * batch + b] = dy[b * out + o];
        const GemmSplit split = split_gemm(1, out, in, threads);
        const index_t tasks = split.n_blocks * split.m_chunks;
#pragma omp parallel num_threads(threads)
        {
            DenormalsOff ftz;
            Scratch b_buf(static_cast<std::size_t>(KC * NC));
            DensePacker pk{x, in};
#pragma omp for schedule(static)
            for (index_t t = 0; t < tasks; ++t) {
                const index_t mc = t % split.m_chunks, nb = t / split.m_chunks;
                const index_t m0 = mc * split.m_chunk_rows, m1 = imin(out, m0 + split.m_chunk_rows);
                const index_t n0 = nb * NC, nc = imin(NC, in - n0);
                gemm_block(out, m0, m1, n0, nc, batch, dyt.p, batch, pk, b_buf.p, dw, in, ep);
            }
        }
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
