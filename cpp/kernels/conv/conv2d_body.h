// Internal: float32 NCHW convolution, compiled once per ISA.
//  - general case: an indirect GEMM per (image, group): the weights (OIHW rows) as A, B read in place from a
//    zero-padded, stride-phase-split copy of the input (no im2col matrix, no packing of B);
//  - 1x1, stride 1, no padding: the same, reading the input itself;
//  - one input channel per group (depthwise): a direct kernel, since the GEMM would have M = 1.
#pragma once

#include <omp.h>
#include <type_traits>

#include "../gemm/gemm_body.h"
#include "../parallel.h"
#include "phases.h"
#include "../task_runs.h"
#include "pixel_major_body.h"
#include "oc_vectors_body.h"
#include "winograd_body.h"
#include "winograd_phases.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// Output columns [lo, hi) of a row whose input column ow * stride + off falls inside [0, W).
struct ColRange {
    index_t lo, hi;
};
inline ColRange valid_cols(index_t off, index_t stride, index_t W, index_t OW) {
    const index_t lo = off >= 0 ? 0 : ceil_div(-off, stride);
    const index_t hi = imin(OW, off >= W ? 0 : ceil_div(W - off, stride));
    return {lo, hi};
}

// A run of output pixels of one output row inside one packed panel.
struct Segment {
    index_t oh, ow, len, t;  // output row and first column, length, offset in the panel
};

// im2col packer for one (image, group): B[k][q] = x[ci][oh*sh - pt + ki*dh][ow*sw - pl + kj*dw], with
// k = (ci, ki, kj) and q = oh * OW + ow.
struct Im2colPacker {
    const float* x;  // first channel of this group
    index_t H, W, KH, KW, SH, SW, PT, PL, DH, DW, OW;

    void operator()(float* dst, index_t pc, index_t kc, index_t n0, index_t nc) const {
        const index_t panels = ceil_div(nc, NR);
        // The panels' row segments do not depend on k: find them once per block.
        Segment segs[NC / NR * (NR + 1)];
        index_t seg_begin[NC / NR + 1];
        index_t ns = 0;
        for (index_t p = 0; p < panels; ++p) {
            seg_begin[p] = ns;
            const index_t q0 = n0 + p * NR, count = imin(NR, nc - p * NR);
            index_t oh = q0 / OW, ow = q0 % OW, t = 0;
            while (t < count) {
                const index_t len = imin(count - t, OW - ow);
                segs[ns++] = Segment{oh, ow, len, t};
                t += len;
                ow = 0;
                ++oh;
            }
        }
        seg_begin[panels] = ns;
        for (index_t k = pc; k < pc + kc; ++k) {
            const index_t ci = k / (KH * KW), r = k % (KH * KW), ki = r / KW, kj = r % KW;
            const float* plane = x + ci * H * W;
            const index_t dh = ki * DH - PT, dw = kj * DW - PL;
            for (index_t p = 0; p < panels; ++p) {
                float* d = dst + p * kc * NR + (k - pc) * NR;
                index_t end = 0;
                for (index_t i = seg_begin[p]; i < seg_begin[p + 1]; ++i) {
                    const Segment& sg = segs[i];
                    gather_row(d + sg.t, sg.len, plane, H, W, sg.oh * SH + dh, sg.ow * SW + dw, SW);
                    end = sg.t + sg.len;
                }
                for (index_t t = end; t < NR; ++t) d[t] = 0.f;
            }
        }
    }
};


// C rows [m0, m1) x columns [n0, n0 + nc) of the indirect GEMM for one (image, group). C is y itself when the
// columns are y's pixels (ldc = P), else a scratch block (ldc = NC) that compact_block() copies into y.
// a_packed: A packed whole (BlockedPanels(M, K)), or null to pack or read A block by block.
// tail: scratch for the last, partial panel of B (kKcDirect x NR), or null when the rows may be read up to a
// vector past the block (the phase buffer's slack), in which case that panel is read in place.
// exact: the columns are exact (Columns::exact; OW and E = Wph - OW given), else grid columns q' of rows[k].
// b_copy: scratch for B's full panels (kCopiedBlockK x NC floats), or null: in K blocks of at most
// kCopiedBlockK rows, a block's full panels are all copied there (kc x NR each): at its start, row by row, or
// with AVX2 by the first micro-panel's tile on each panel.
// k_begin, k_end: only the K blocks of rows [k_begin, k_end) (whole blocks of direct_k_step; all of K by default),
// the others done before or after; C accumulates from row 0 on, and the epilogue comes with the block ending at K.
// NOTE: every K block of direct_k_step's where A has more than four micro-panels fits (kKcResident blocks, or
// one of up to kKcResidentWhole rows); the longer blocks of the others are not copied.
constexpr index_t kCopiedBlockK = kKcResidentWhole;
struct ExactColumns {
    bool on;
    index_t OW, E;
};
// Micro-panels [m0, m1) of A packed whole (the first at a, the next a_stride apart) against one copied B panel
// (kc x NR at b), into C from c (row stride ldc); streamed: asking for each next micro-panel as it goes, the
// last asking for a_first.
// NOTE: with AVX2, out of line with the microkernel inlined into it (CNNFAST_TILE_LOOP), as Winograd's panels:
// called tile by tile from indirect_block's loops, the microkernel was an out-of-line call there for several
// of its sources. In turns in one process on an AMD EPYC (Zen 3), same bits, batch 1, one / two threads:
// ResNet-50's stride-2 3x3 128 -> 128 on 56x56 0.97x / 0.95x the time, 1x1 1024 -> 256 on 14x14 0.97x /
// 0.98x, 2048 -> 512 on 7x7 0.96x / 0.96x, 512 -> 128 on 28x28 0.98-0.99x / 0.97x, GoogLeNet's 480 -> 192 on
// 14x14 0.97x / 0.96x, Inception's 192 -> 16 0.98-0.99x; 64 -> 256 and 256 -> 64 on 56x56, 256 -> 1024 on
// 14x14, 1x1/2 256 -> 512 1.00x; forward passes (ResNet-50, GoogLeNet) 0.99x, within the noise.
CNNFAST_TILE_LOOP void copied_panel_tiles(index_t kc, const float* a, index_t a_stride, index_t M, index_t m0,
                                          index_t m1, bool streamed, const float* a_first, const float* b, float* c,
                                          index_t ldc, bool accumulate, bool last, const Epilogue& ep) {
    for (index_t ir = m0; ir < m1; ir += MR, a += a_stride, c += MR * ldc) {
        const int mv = static_cast<int>(imin(MR, M - ir));
        if (streamed)
            ukernel_any(kc, StreamedA{a, ir + MR < m1 ? a + a_stride : a_first}, PackedB{b}, c, ldc, mv, NR,
                        accumulate, last, ep, ir, 0);
        else
            ukernel_any(kc, PackedA{a}, PackedB{b}, c, ldc, mv, NR, accumulate, last, ep, ir, 0);
    }
}

void indirect_block(index_t M, index_t m0, index_t m1, index_t n0, index_t nc, index_t K, const float* A,
                    const float* a_packed, const float* const* rows, float* tail, float* C, index_t ldc,
                    const Epilogue& ep, ExactColumns exact = {false, 0, 0}, float* b_copy = nullptr,
                    index_t k_begin = 0, index_t k_end = -1) {
    // With A packed whole and more than four micro-panels, each B panel stays in L1 while all micro-panels
    // pass over it (panels outer, micro-panels inner, K blocks of kKcResident); otherwise each micro-panel of
    // A stays in L1 while the B panels stream past it from L2. The first order was 3-11% faster on 1x1 layers
    // with K > 160 (ResNet-50's and GoogLeNet's, batch 1 and 8, one and two threads) and 7-9% on ResNet-50's
    // stride-2 3x3 128 -> 128, whose phase images do not fit L2 beside everything else; with four micro-panels
    // (Inception's 5x5 16 -> 32) it was 1-6% slower. The order does not change the bits; the K blocks are
    // the same either way (direct_k_step).
    // With AVX2 (MR = 4), three or four micro-panels in one K block take the first order too: a B panel of up to
    // 2 KC rows and the 16 rows of A fit L1 together, where the other order streams the B block from L2 once
    // per micro-panel. In turns in one process on an AMD EPYC (Zen 3: L1d 32 KiB, L2 512 KiB), one thread:
    // Inception's 1x1 192 -> 16 on 28x28 0.90-0.91x the time, 480 -> 16 on 14x14 0.96x, 832 -> 16 on 7x7 and
    // 512 -> 24 on 14x14 0.99-1.00x; in groups of 4 or 8 micro-panels, larger layers gained nothing (1x1
    // 64 -> 256 and 256 -> 64 on 56x56 1.01-1.07x).
    // With AVX2 the first order also serves a K of one block wherever the B panels are copied (1x1 layers up to
    // kKcResidentWhole input channels; shifted images of as short a K, none in the suite, were not timed): each
    // copied panel then stays in L1 while every micro-panel passes over it, where the other order read the
    // block's copies (up to 8 panels, 48 KiB at K = 64) back from L2 for every micro-panel. In turns in one
    // process on an AMD EPYC (Zen 3), same bits, batch 1, one / two threads:
    // ResNet-50's 1x1 64 -> 256 on 56x56 0.92x / 0.92x the time (0.93x at batch 8), 64 -> 64 0.95x / 0.94-0.95x,
    // 128 -> 512 on 28x28 0.95x / 0.95x, 256 -> 128 on 56x56 0.97x / 0.96x, 256 -> 64 0.98x / 0.97x, 256 -> 1024
    // on 14x14 0.98x / 0.97x, 1x1/2 256 -> 512 from 56x56 0.97x / 0.97x, Inception's 192 -> 64 and 192 -> 96 on
    // 28x28 0.97-0.98x / 0.98x; forward passes of ResNet-50 0.99x and GoogLeNet 0.98-1.00x on one thread. B read
    // in place (VGG-16's first layer, 3x3 3 -> 64, K = 27) took 1.10x the time that way, so it keeps the other.
    const BlockedPanels blocked(M, K);
    const index_t kstep = blocked.kstep;
    constexpr bool kCopyInTile = CNNFAST_VEC_BYTES == 32;
    const bool b_outer = a_packed && ((m1 - m0 > 4 * MR && (kstep < K || (kCopyInTile && b_copy))) ||
                                      (CNNFAST_VEC_BYTES == 32 && m1 - m0 > 2 * MR && m1 - m0 <= 4 * MR));
    const index_t full = nc / NR * NR, nt = nc - full;
    ExactPanel panels[NC / NR + 1];
    if (exact.on)
        for (index_t jr = 0; jr < nc; jr += NR) panels[jr / NR] = exact_panel(n0 + jr, exact.OW, exact.E);
    for (index_t pc = k_begin; pc < (k_end < 0 ? K : k_end); pc += kstep) {
        const index_t kc = imin(kstep, K - pc);
        const bool accumulate = pc > 0, last = pc + kc == K;
        // B's rows [pc, pc + kc), row by row: the full panels copied (copy_of) and the last, partial one packed
        // into `tail`, zero-padded, so that nothing past the block is read.
        // NOTE: row by row, each row gives its nc columns (up to 24 lines of one channel plane) in order, which
        // the hardware prefetchers follow; copied panel by panel, each panel took three lines from each of kc
        // pages in turn, and the B-panel-outer order copied each panel into one slot just before its use. In
        // turns in one process, same bits, on an Intel Xeon (Ice Lake, model 106), one thread: in ResNet-50's
        // first stage run as a network runs it (each layer's input just written by the one before), 256 -> 64 on
        // 56x56 0.86-0.89x the time, 64 -> 256 with the residual 0.90-0.98x; back to back, 256 -> 64 0.95x
        // (1.00x on two threads), 480 -> 192 on 14x14 0.93x, the other 1x1 layers 0.97-1.01x.
        // With AVX2 the full panels are instead copied by the first micro-panel's tile on each (CopyingRowsB),
        // which reads the rows in place as it computes, asking for the rows a few k steps ahead, and stores what
        // it reads; the other micro-panels read the copy. The copy then costs stores among the FMAs rather than
        // a pass of its own, which matters where few rows of A share each B panel. In turns in one process,
        // same bits, on an AMD EPYC (Zen 3), one thread, the input pushed out of L2 before each call: Inception's
        // 1x1 192 -> 16 on 28x28 0.92-0.95x the time, 256 -> 32 on 28x28 0.92-0.93x, 192 -> 64 0.96x, 528 -> 32
        // on 14x14 0.97-0.98x, ResNet-50's 256 -> 64 on 56x56 0.95-0.96x, the larger layers (1024 -> 256 on
        // 14x14, the stride-2 3x3 128 -> 128) 0.99-1.00x; back to back, two threads: 256 -> 64 on 56x56 0.92-0.93x,
        // 192 -> 64 on 28x28 0.93x, 1024 -> 256 on 14x14 0.99x. Without asking ahead it gained about half of that.
        // Whole forward passes (GoogLeNet, ResNet-50, batch 1) moved within this host's noise (0.99-1.02x).
        const bool copied = b_copy && kc <= kCopiedBlockK, pack_tail = nt > 0 && tail;
        // NOTE: every full panel has a slot of its own, though in the B-panel-outer order with AVX2 a copy is
        // read only right after it is made: one slot for all of them, or two in turn, took 1.00-1.07x the time
        // (Inception's 1x1 192 -> 16 and 192 -> 64, ResNet-50's 256 -> 64 and 1024 -> 256, its 3x3/2 128 -> 128;
        // one thread, separate processes in turns, AMD EPYC, Zen 3).
        auto copy_of = [&](index_t jr) { return b_copy + jr * kc; };
        for (index_t k = 0; k < kc && ((copied && !kCopyInTile) || pack_tail); ++k) {
            const float* const src = rows[pc + k] + n0;
            if (copied && !kCopyInTile)
                for (index_t jr = 0; jr < full; jr += NR)
                    for (int j = 0; j < NR; j += VL) vstore(copy_of(jr) + k * NR + j, vload(src + jr + j));
            if (pack_tail) {
                float* const d = tail + k * NR;
                for (index_t j = 0; j < nt; ++j) d[j] = src[full + j];
                for (index_t j = nt; j < NR; ++j) d[j] = 0.f;
            }
        }
        // the tile of panel jr (nv columns): B in place (the partial panel's last vector reading past the
        // block), from its copy (made by the first micro-panel's tile with AVX2), or the partial panel from its
        // packed copy
        auto tile = [&](const auto& a, float* c, int mv, index_t ir, index_t jr, int nv) {
            if (kCopyInTile && copied && jr < full && ir == m0)
                ukernel_any(kc, a, CopyingRowsB{rows + pc, n0 + jr, copy_of(jr), K - pc}, c + jr, ldc, mv, nv,
                            accumulate, last, ep, ir, 0);
            else if (copied && jr < full)
                ukernel_any(kc, a, PackedB{copy_of(jr)}, c + jr, ldc, mv, nv, accumulate, last, ep, ir, 0);
            else if (nv < NR && tail)
                ukernel_any(kc, a, PackedB{tail}, c + jr, ldc, mv, nv, accumulate, last, ep, ir, 0);
            else if (exact.on && exact.OW % VL != 0)
                ukernel_any(kc, a, ExactB<true>(rows + pc, panels[jr / NR], exact.E), c + jr, ldc, mv, nv,
                            accumulate, last, ep, ir, 0);
            else if (exact.on)
                ukernel_any(kc, a, ExactB<false>(rows + pc, panels[jr / NR], exact.E), c + jr, ldc, mv, nv,
                            accumulate, last, ep, ir, 0);
            else
                ukernel_any(kc, a, RowsB{rows + pc, n0 + jr}, c + jr, ldc, mv, nv, accumulate, last, ep, ir, 0);
        };
        // A last panel of up to kLaneTailCols columns (packed in `tail`) against packed A goes the other way
        // round (lane_tail): several micro-panels at a time after the others when A is packed whole, else one.
        const bool lane_tail_on = tail && nt > 0 && nt <= kLaneTailCols;
        const float* const a_block = a_packed ? blocked.at(a_packed, 0, pc) : nullptr;
        const index_t a_stride = blocked.stride(pc);  // between micro-panels of the block
        auto panel_row = [&](const auto& a, float* c, int mv, index_t ir) {
            for (index_t jr = 0; jr < full; jr += NR) tile(a, c, mv, ir, jr, NR);
            if (nt == 0 || (lane_tail_on && a_block)) return;
            if constexpr (std::is_same_v<std::decay_t<decltype(a)>, PackedA>)
                if (lane_tail_on)
                    return lane_tail(static_cast<int>(nt), kc, a.p, 0, tail, c + full, ldc, mv, accumulate, last, ep,
                                     ir);
            tile(a, c, mv, ir, full, static_cast<int>(nt));
        };
        // NOTE: packing A costs MR x kc copies per micro-panel: worth it only when several B panels reuse it.
        const bool pack = full / NR + (nt > 0 ? 1 : 0) > 2;
        if (b_outer) {
            const float* const a_first = blocked.at(a_packed, m0, pc);
            for (index_t jr = 0; jr < nc; jr += NR) {
                if (jr == full && lane_tail_on) break;
                // a copied panel: its first micro-panel's tile copies it (CopyingRowsB) here, the others read the
                // copy in copied_panel_tiles
                const bool rest_from_copy = kCopyInTile && copied && jr < full;
                const index_t ir_end = rest_from_copy ? imin(m1, m0 + MR) : m1;
                for (index_t ir = m0; ir < ir_end; ir += MR) {
                    const int mv = static_cast<int>(imin(MR, M - ir));
                    const float* a = blocked.at(a_packed, ir, pc);
                    // NOTE: the first B panel's pass brings A's block from memory, asking for the next
                    // micro-panel as it goes (StreamedA); the later passes find the block in L2, where asking again
                    // only took issue slots: in turns in one process on an Intel Xeon (Ice Lake), one / two
                    // threads, 1x1 layers 0.96-1.00x the time (1024 -> 256 on 14x14 0.97x / 0.99x, 256 -> 128
                    // on 56x56 0.99x / 0.96x), 3x3/2 128 -> 128 on 56x56 0.99x.
                    float* const c = C + (ir - m0) * ldc;
                    const int nv = static_cast<int>(imin(NR, nc - jr));
                    if (jr > 0)
                        tile(PackedA{a}, c, mv, ir, jr, nv);
                    else
                        tile(StreamedA{a, ir + MR < m1 ? a + a_stride : a_first}, c, mv, ir, jr, nv);
                }
                if (ir_end < m1)
                    copied_panel_tiles(kc, blocked.at(a_packed, ir_end, pc), a_stride, M, ir_end, m1, jr == 0, a_first,
                                       copy_of(jr), C + (ir_end - m0) * ldc + jr, ldc, accumulate, last, ep);
            }
        } else {
            for (index_t ir = m0; ir < m1; ir += MR) {
                const int mv = static_cast<int>(imin(MR, M - ir));
                float* c = C + (ir - m0) * ldc;
                if (a_packed) {
                    const float* a = blocked.at(a_packed, ir, pc);
                    panel_row(StreamedA{a, ir + MR < m1 ? a + a_stride : a}, c, mv, ir);
                } else if (pack) {
                    alignas(64) float a[MR * kKcDirect];
                    pack_a(A + ir * K + pc, K, mv, kc, a);
                    panel_row(PackedA{a}, c, mv, ir);
                } else {
                    panel_row(RowsA(A + ir * K + pc, K, mv), c, mv, ir);
                }
            }
        }
        if (lane_tail_on && a_block)
            lane_tail(static_cast<int>(nt), kc, blocked.at(a_packed, m0, pc), a_stride, tail, C + full, ldc,
                      static_cast<int>(m1 - m0), accumulate, last, ep, m0);
    }
}

// Copies the valid columns (ow < OW) of a scratch block into y; with a residual (laid out as y), stores
// act(block + residual) instead.
void compact_block(const Conv2dShape& s, const PhaseGeometry& g, index_t m0, index_t m1, index_t n0, index_t nc,
                   const float* __restrict cblk, float* __restrict y, const float* __restrict residual, bool relu) {
    const index_t P = s.oh * s.ow;
    for (index_t o = m0; o < m1; ++o) {
        const float* src = cblk + (o - m0) * NC;
        float* dst = y + o * P;
        index_t q = n0;
        while (q < n0 + nc) {
            const index_t oh = q / g.Wph, ow = q % g.Wph;
            const index_t run = imin(n0 + nc - q, g.Wph - ow);
            const index_t valid = imax(0, imin(run, s.ow - ow));
            const float* sp = src + (q - n0);
            float* dp = dst + oh * s.ow + ow;
            if (residual) {
                const float* rp = residual + o * P + oh * s.ow + ow;
                for (index_t t = 0; t < valid; ++t) dp[t] = relu ? relu1(sp[t] + rp[t]) : sp[t] + rp[t];
            } else {
                for (index_t t = 0; t < valid; ++t) dp[t] = sp[t];
            }
            q += run;
        }
    }
}

// Output rows [oh0, oh1), channels [m0, m1) of one (image, group), stored straight into y (row stride P):
// each output row is its own run of panels starting at column oh * Wph, so the Wph - OW padding columns
// between rows are never computed. The last panel of a row reads up to a vector past the row's end (inside
// the phase buffer and its slack) and stores only the row's columns.
void rows_block(index_t M, index_t m0, index_t m1, index_t oh0, index_t oh1, index_t OW, index_t Wph, index_t K,
                const float* A, const float* a_packed, const float* const* rows, float* y, index_t P,
                const Epilogue& ep) {
    const BlockedPanels blocked(M, K);
    const index_t kstep = blocked.kstep;
    const bool pack = !a_packed && (oh1 - oh0) * ceil_div(OW, NR) > 2;
    for (index_t pc = 0; pc < K; pc += kstep) {
        const index_t kc = imin(kstep, K - pc);
        const bool accumulate = pc > 0, last = pc + kc == K;
        for (index_t ir = m0; ir < m1; ir += MR) {
            const int mv = static_cast<int>(imin(MR, M - ir));
            auto run = [&](const auto& a) {
                for (index_t oh = oh0; oh < oh1; ++oh)
                    for (index_t jr = 0; jr < OW; jr += NR)
                        ukernel_any(kc, a, RowsB{rows + pc, oh * Wph + jr}, y + ir * P + oh * OW + jr, P, mv,
                                    static_cast<int>(imin(NR, OW - jr)), accumulate, last, ep, ir, 0);
            };
            if (a_packed) {
                const float* a = blocked.at(a_packed, ir, pc);
                run(StreamedA{a, ir + MR < m1 ? a + blocked.stride(pc) : a});
            } else if (pack) {
                alignas(64) float a[MR * kKcDirect];
                pack_a(A + ir * K + pc, K, mv, kc, a);
                run(PackedA{a});
            } else {
                run(RowsA(A + ir * K + pc, K, mv));
            }
        }
    }
}

// a_prepared: A packed whole per group (conv2d_prepack's kPrepackPanels), or null. residual: laid out as y,
// added before the activation, or null.
void conv2d_indirect(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act,
                     const float* a_prepared, const float* residual) {
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G, K = cg * s.kh * s.kw, P = s.oh * s.ow, HW = s.h * s.w;
    const PhaseGeometry g = direct_geometry(s);
    const bool in_place = phases_are_input(s);  // then Wph == OW: columns are the output's pixels, in order
    // The output's columns: exact (y's order) wherever rows hold a vector or more, else rows or grid blocks,
    // whichever wastes fewer lanes (column_layout).
    const Columns layout = column_layout(s, g);
    const bool by_rows = layout == Columns::rows, exact = layout == Columns::exact;
    const bool direct_store = g.Wph == s.ow || exact;  // the GEMM's columns are y's pixels
    const int threads = get_num_threads();
    const index_t per_image = s.c * g.per_channel;
    // Slabs: where one image's phase images pass 512 KiB per thread (and a layer of several taps has several K
    // blocks), they are built a slab of K blocks at a time (the channels those rows read, up to 512 KiB per
    // thread), just before the GEMM's passes over those rows, which then find them in L2 instead of L3. The K
    // blocks, and so the bits, stay the same; y accumulates across slabs as across K blocks.
    // NOTE: in turns in one process, same bits, Intel Xeon (Ice Lake, model 106): ResNet-50's 3x3/2 128 -> 128
    // on 56x56 0.92-0.94x the time on one thread (0.91-0.93x at batch 8), 0.97-0.99x on two, where slabs of
    // 512 KiB (not per thread: a barrier per K block) took 1.02-1.04x; AlexNet's 11x11/4 1.00x. 1x1 layers
    // copy their B panels per K block anyway: 1x1/2 256 -> 512 on 56x56 1.02-1.04x slabbed, so they are not.
    const BlockedPanels blocked(ocg, K);  // the K blocks, and the weights packed whole
    const index_t taps = s.kh * s.kw, kstep = blocked.kstep;
    const index_t slab_floats = threads * (index_t(128) << 10);
    index_t slab_k = K;
    if (!in_place && G == 1 && taps > 1 && direct_store && !by_rows && K > kstep && per_image > slab_floats)
        slab_k = imax(1, slab_floats / (ceil_div(kstep, taps) * g.per_channel)) * kstep;
    const bool slabbed = slab_k < K;
    const index_t slab_channels = imin(s.c, ceil_div(slab_k, taps) + 1);  // a slab's rows read at most these
    // Images whose phase buffers are built together: up to ~8 MiB of them, at least one (one when slabbed).
    const index_t chunk = in_place ? s.n : slabbed ? 1 : imax(1, imin(s.n, (index_t(2) << 20) / imax(1, per_image)));
    // N blocks: NC columns of the input-in-place GEMM, or whole output rows (about NC columns) otherwise.
    // NOTE: row blocks differ by a row at most, spread evenly (block b: rows [b * OH / B, (b + 1) * OH / B)),
    // so that threads taking runs of blocks get equal rows: ResNet-50's 7x7/2 stem (112 rows in 38 blocks)
    // gave two threads 57 and 55 rows as 37 blocks of 3 and one of 1.
    const index_t row_blocks = ceil_div(s.oh, imax(1, NC / s.ow));
    const index_t n_cols = by_rows ? row_blocks * NC : exact ? P : g.N;
    GemmSplit split = split_gemm(chunk * G, ocg, n_cols, threads, !by_rows);
    // A (the weights, ocg x K) larger than B (K x n_cols): see split_m_across_threads
    if (ocg > n_cols) split = split_m_across_threads(split, chunk * G, ocg, threads);
    split = cap_m_chunk(split, ocg, kstep);
    // NOTE: the slack covers reads past the last phase image, in columns that are not stored.
    const index_t slack = g.Wph + NR;
    const index_t phase_floats = slabbed ? slab_channels * g.per_channel : chunk * per_image;
    Scratch phases(in_place ? 0 : static_cast<std::size_t>(phase_floats + slack));
    // NOTE: when every micro-panel of A would be packed again for several N blocks, pack all of A once
    // (it is the size of the weights; above 8 MiB the per-block packing stays).
    const index_t a_floats = blocked.floats();
    const bool prepack = !a_prepared && split.n_blocks * imin(chunk, s.n) >= 3 && G * a_floats <= (index_t(2) << 20);
    Scratch a_packed(prepack ? static_cast<std::size_t>(G * a_floats) : 0);
    const float* const a_whole = a_prepared ? a_prepared : prepack ? a_packed.p : nullptr;
    Epilogue ep;
    ep.relu = act == Activation::relu;
    // NOTE: where one image's output (for one group) passes 512 KiB, a tile's lines of y have left L2 (first K
    // block: never been there) by the time the tile is stored, and the k loop is long enough to bring them
    // meanwhile. In turns in one process on an AMD EPYC (Zen 3), one thread: 1x1 64 -> 256 and 256 -> 64 on
    // 56x56 0.84-0.92x the time, 256 -> 512 on 28x28 0.89-0.95x, 1x1/2 256 -> 512 from 56x56 0.89-0.94x, 256 ->
    // 1024 on 14x14 0.86-0.93x; two threads 0.86-1.04x. Smaller outputs, which stay in L2, gained nothing
    // (3x3/2 128 -> 128 on 56x56 0.94-1.00x, 256 -> 256 on 28x28 1.00-1.06x) or lost (2048 -> 512 on 7x7, every
    // tile's lines in L1 already: 1.02-1.10x).
    ep.prefetch_c = ocg * P > (index_t(128) << 10);
    const bool compact = !by_rows && !direct_store;  // through a scratch block, which compact_block() copies
    if (residual && compact) {
        ep.relu = false;  // compact_block() adds the residual, then applies the ReLU
    } else if (residual) {
        ep.residual = residual;
        ep.c_origin = y;
    }

    PerThread<float> cblks(threads, !compact ? 0 : static_cast<std::size_t>(split.m_chunk_rows * NC));
    // The last, partial panel of an N block is packed (indirect_block's `tail`) where the input is read in
    // place, and where grid columns take lane_tail (phase copies have slack to read it in place otherwise:
    // packed, a last panel of 16 columns cost ResNet-50's 3x3/2 128 -> 128 on 56x56 3-4% on an AMD EPYC, Zen 3).
    const bool pack_tail = !by_rows && (in_place || (!exact && kLaneTailCols > 0));
    // NOTE: a 1x1 layer reads B's rows in place (or, strided, from its phase image), a channel plane apart,
    // each in another 4 KiB page: the hardware prefetchers, which follow a few dozen pages at most, miss them,
    // and planes a multiple of 1 KiB (16x16, 32x32, 64x64 images) also put a panel's rows in at most four sets
    // of L1 (48 lines, not the 384 of a B panel of kKcResident rows). So its B panels are copied (b_copy of
    // indirect_block) before the micro-panels pass over them, each panel contiguous, so it stays in L1. In turns
    // in one process, same bits, on an Intel Xeon (Ice Lake, model 106): 64 -> 256 on 56x56 0.66-0.86x the
    // time on one thread and 0.71x on two (0.72x at batch 8), 256 -> 64 on 56x56 0.84x / 0.80x, 256 -> 256 and
    // 512 -> 128 on 28x28 0.86x / 0.83x, 128 -> 512 on 28x28 0.82x, 1024 -> 256 on 14x14 0.97x / 0.92x, 480 ->
    // 192 on 14x14 0.94x, 7x7 images (one panel) and Inception's 192 -> 16 0.99-1.01x; strided, ResNet-50's
    // downsampling 256 -> 512 from 56x56 0.86x on one thread and 0.90x at batch 8, 512 -> 1024 from 28x28
    // 0.96-1.00x, 1024 -> 2048 from 14x14 0.97-0.99x. On an AMD EPYC (Zen 5), with 1 KiB planes: 256 -> 256 on
    // 32x32 0.88-0.94x, 1024 -> 256 on 16x16 0.92-0.93x, 64 -> 256 on 64x64 0.83-0.89x (other planes, which
    // read at 80-89% of the FMA probe there, were not measured copied). Layers of several taps read through
    // shifted images (direct_geometry: rows contiguous in y's order, as a 1x1 layer's) are copied too: in turns
    // on the Xeon, one / two threads, ResNet-50's 3x3/2 128 -> 128 on 56x56 0.90-0.95x / 0.90x the time
    // (0.92x / 0.88x at batch 8), 64 -> 128 on 112x112 0.93x / 0.92x, 256 -> 256 on 56x56 0.91x; with a
    // residual, or few channels (32 -> 64 on 224x224), 1.00x. The phase images (padded grid or exact columns)
    // stay in place: copied, the 7x7/2 stem took 1.08x the time.
    const bool copy_panels = direct_store && !exact && (s.kh * s.kw == 1 || g.shifted);
    // Sized to the layer: a K block holds at most K rows, an N block at most n_cols columns (a call of a 1x1
    // 16 -> 16 on 8x8 took 288.1 KiB of scratch with these sized for the largest blocks, 5.6 KiB sized so).
    const index_t k_rows = imin(K, kKcDirect), b_cols = imin(NC, n_cols);
    PerThread<float> tails(threads, pack_tail ? static_cast<std::size_t>(k_rows * NR) : 0);
    PerThread<float> b_copies(threads, copy_panels ? static_cast<std::size_t>(imin(K, kCopiedBlockK) * b_cols) : 0);
    PerThread<const float*> row_tables(threads, static_cast<std::size_t>(K));
    TaskRuns task_runs;
    parallel(threads, [&] {
        DenormalsOff ftz;
        float* const cblk = cblks.get();
        float* const tail = pack_tail ? tails.get() : nullptr;
        float* const b_copy = copy_panels ? b_copies.get() : nullptr;
        const float** const rows = row_tables.get();
        if (prepack) {
#pragma omp for schedule(static)
            for (index_t t = 0; t < G * blocked.panels(); ++t) blocked.pack_task(w, ocg, t, a_packed.p);
        }
        for (index_t n_begin = 0; n_begin < s.n; n_begin += chunk) {
            const index_t n_count = imin(chunk, s.n - n_begin);
            // rows [k0, k1) of the GEMM: its channels [c0, c1) (all of them unless slabbed)
            for (index_t k0 = 0; k0 < K; k0 += slab_k) {
                const index_t k1 = imin(K, k0 + slab_k), c0 = slabbed ? k0 / taps : 0, c1 = ceil_div(k1, taps);
                if (slabbed)
                    build_phases_of_channels(s, g, x, n_begin * s.c + c0, n_begin * s.c + c1, phases.p);
                else if (!in_place)
                    build_phases_of_images(s, g, x, n_begin, n_count, phases.p);
                const index_t tasks = n_count * G * split.n_blocks * split.m_chunks;
                task_runs.run(tasks, [&](index_t t) {
                    const GemmTask task = gemm_task(t, split);
                    const index_t mc = task.m_chunk, nb = task.n_block, gi = task.outer % G, ni = task.outer / G;
                    const index_t n = n_begin + ni;
                    if (slabbed)  // rows [c0 * taps, c1 * taps) only, channel c0 first in the slab
                        phase_rows(s, g, phases.p, (c1 - c0) * taps, rows + c0 * taps);
                    else if (in_place)
                        phase_rows(s, g, x + (n * s.c + gi * cg) * HW, K, rows);
                    else
                        phase_rows(s, g, phases.p + (ni * s.c + gi * cg) * g.per_channel, K, rows);
                    Epilogue e = ep;
                    e.bias_row = bias ? bias + gi * ocg : nullptr;
                    const index_t m0 = mc * split.m_chunk_rows, m1 = imin(ocg, m0 + split.m_chunk_rows);
                    float* yg = y + n * conv2d_y_image(s) + gi * ocg * P;
                    const float* wg = w + gi * ocg * K;
                    const float* ag = a_whole ? a_whole + gi * a_floats : nullptr;
                    if (by_rows) {
                        const index_t oh0 = nb * s.oh / row_blocks, oh1 = (nb + 1) * s.oh / row_blocks;
                        rows_block(ocg, m0, m1, oh0, oh1, s.ow, g.Wph, K, wg, ag, rows, yg, P, e);
                        return;
                    }
                    const index_t n0 = split.n_begin(nb), nc = split.n_begin(nb + 1) - n0;
                    float* const block_tail = in_place || nc % NR <= kLaneTailCols ? tail : nullptr;  // see pack_tail
                    if (direct_store) {
                        indirect_block(ocg, m0, m1, n0, nc, K, wg, ag, rows, block_tail, yg + m0 * P + n0, P, e,
                                       ExactColumns{exact, s.ow, g.Wph - s.ow}, b_copy, k0, k1);
                    } else {
                        indirect_block(ocg, m0, m1, n0, nc, K, wg, ag, rows, block_tail, cblk, NC, e);
                        compact_block(s, g, m0, m1, n0, nc, cblk, yg, residual ? residual + (yg - y) : nullptr,
                                      act == Activation::relu);
                    }
                });
            }
        }
    });
}

// The im2col-packing GEMM: for geometries whose padded, phase-split copy would be much larger than the input
// and output themselves (padding or stride far larger than the image).
void conv2d_packed(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act) {
    const index_t G = s.groups, cg = s.c / G, ocg = s.oc / G, K = cg * s.kh * s.kw, P = s.oh * s.ow, HW = s.h * s.w;
    const int threads = get_num_threads();
    const GemmSplit split = split_gemm(s.n * G, ocg, P, threads);
    const index_t tasks = s.n * G * split.n_blocks * split.m_chunks;
    PerThread<float> b_bufs(threads, static_cast<std::size_t>(KC * NC));
    parallel(threads, [&] {
        DenormalsOff ftz;
        float* const b_buf = b_bufs.get();
#pragma omp for schedule(static)
        for (index_t t = 0; t < tasks; ++t) {
            const GemmTask task = gemm_task(t, split);
            const index_t mc = task.m_chunk, nb = task.n_block, gi = task.outer % G, n = task.outer / G;
            Epilogue e;
            e.relu = act == Activation::relu;
            e.bias_row = bias ? bias + gi * ocg : nullptr;
            const index_t m0 = mc * split.m_chunk_rows, m1 = imin(ocg, m0 + split.m_chunk_rows);
            const index_t n0 = split.n_begin(nb), nc = split.n_begin(nb + 1) - n0;
            Im2colPacker pk{x + (n * s.c + gi * cg) * HW, s.h, s.w, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_t, s.pad_l,
                            s.dil_h, s.dil_w, s.ow};
            gemm_block(ocg, m0, m1, n0, nc, K, w + gi * ocg * K, K, pk, b_buf, y + (n * s.oc + gi * ocg) * P, P, e);
        }
    });
}

// One input channel per group: out channel o reads input channel o / (OC / C).
void conv2d_depthwise(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                      Activation act) {
    const index_t mult = s.oc / s.c, planes = s.n * s.oc, P = s.oh * s.ow;
    const int threads = get_num_threads();
    parallel(threads, [&] {
        DenormalsOff ftz;
#pragma omp for schedule(static)
        for (index_t pl = 0; pl < planes; ++pl) {
            const index_t n = pl / s.oc, o = pl % s.oc, ci = o / mult;
            const float* xp = x + (n * s.c + ci) * s.h * s.w;
            const float* wp = w + o * s.kh * s.kw;
            float* yp = y + pl * P;
            const float b = bias ? bias[o] : 0.f;
            for (index_t oh = 0; oh < s.oh; ++oh) {
                float* yr = yp + oh * s.ow;
                for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = b;
                for (index_t ki = 0; ki < s.kh; ++ki) {
                    const index_t ih = oh * s.stride_h - s.pad_t + ki * s.dil_h;
                    if (ih < 0 || ih >= s.h) continue;
                    const float* xr = xp + ih * s.w;
                    for (index_t kj = 0; kj < s.kw; ++kj) {
                        const float wv = wp[ki * s.kw + kj];
                        const index_t off = kj * s.dil_w - s.pad_l;  // iw = ow * sw + off
                        const auto [lo, hi] = valid_cols(off, s.stride_w, s.w, s.ow);
                        if (s.stride_w == 1) {
#pragma omp simd
                            for (index_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow + off];
                        } else {
                            for (index_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * s.stride_w + off];
                        }
                    }
                }
                if (act == Activation::relu)
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = relu1(yr[ow]);
            }
        }
    });
}

}  // namespace

namespace {

enum class ConvPath { winograd, winograd_phases, depthwise, linear, im2col, pixel_major, oc_vectors, indirect };

// prepared: whether the call has its weights prepared (conv2d_prepare), which makes Winograd pay sooner.
ConvPath conv_path(const Conv2dShape& s, ConvAlgorithm algo, bool prepared) {
    if (algo == ConvAlgorithm::winograd || (algo == ConvAlgorithm::automatic && winograd_profitable(s, prepared)))
        return ConvPath::winograd;
    if (algo == ConvAlgorithm::automatic && prepared && winograd_phases_pay(s)) return ConvPath::winograd_phases;
    const index_t G = s.groups, cg = s.c / G;
    if (cg == 1 && G > 1) return ConvPath::depthwise;
    // A kernel covering the whole unpadded image (LeNet's C5, a classifier written as a convolution) is a
    // fully connected layer over the batch: one GEMM instead of one tiny GEMM per image.
    if (G == 1 && s.oh == 1 && s.ow == 1 && s.kh == s.h && s.kw == s.w && s.pad_t == 0 && s.pad_l == 0)
        return ConvPath::linear;
    if (!phases_fit(s)) return ConvPath::im2col;
    // Channels as lanes first: where both pay, it reads the input in place, with neither A' to pack nor C'
    // to transpose (LeNet-5's 6 -> 16 5x5 at batch 64: 0.30 ms, 0.74 pixel-major).
    if (oc_vectors_pays(s)) return ConvPath::oc_vectors;
    // NOTE: packing B' is a transpose of the weights, which costs more than the layout saves unless prepared.
    if (prepared && pixel_major_pays(s)) return ConvPath::pixel_major;
    return ConvPath::indirect;
}

// Weights packed for the GEMM's A, per group: G x ceil(ocg / MR) micro-panels of MR x K, K block by K block
// (BlockedPanels).
index_t panels_floats(const Conv2dShape& s) {
    const index_t G = s.groups, ocg = s.oc / G, K = (s.c / G) * s.kh * s.kw;
    return G * BlockedPanels(ocg, K).floats();
}

}  // namespace

int conv2d_prepack_kind(const Conv2dShape& s, ConvAlgorithm algo) {
    switch (conv_path(s, algo, true)) {
        case ConvPath::winograd: {
            const int tm = wino_tile(s);
            return tm == 2 ? kPrepackWinograd2x2 : tm == 6 ? kPrepackWinograd6x6 : kPrepackWinograd;
        }
        case ConvPath::winograd_phases:
            return phase_tile(s) == 7 ? kPrepackWinogradPhases7x7 : kPrepackWinogradPhases;
        case ConvPath::indirect: return kPrepackPanels;
        case ConvPath::pixel_major:
        case ConvPath::oc_vectors: return kPrepackTransposed;
        default: return kPrepackNone;
    }
}

// Whether a kind holds stride-1 Winograd's transformed filters (their layout told apart by wino_tile).
inline bool winograd_kind(int kind) {
    return kind == kPrepackWinograd || kind == kPrepackWinograd2x2 || kind == kPrepackWinograd6x6;
}

index_t conv2d_prepack_floats(const Conv2dShape& s, int kind) {
    if (kind == kPrepackPanels) return panels_floats(s);
    if (winograd_kind(kind)) return winograd_filters_floats(s);
    if (kind == kPrepackWinogradPhases || kind == kPrepackWinogradPhases7x7) return winograd_phases_floats(s);
    if (kind == kPrepackTransposed) return pixel_major_b_floats(s);
    return 0;
}

void conv2d_prepack(const Conv2dShape& s, int kind, const float* w, float* dst) {
    if (winograd_kind(kind)) return winograd_prepack(s, w, dst);
    if (kind == kPrepackWinogradPhases || kind == kPrepackWinogradPhases7x7) return winograd_phases_prepack(s, w, dst);
    if (kind == kPrepackTransposed) return pixel_major_pack_b(s, w, dst);
    if (kind != kPrepackPanels) return;
    const index_t G = s.groups, ocg = s.oc / G, K = (s.c / G) * s.kh * s.kw;
    const BlockedPanels blocked(ocg, K);
    parallel_for(get_num_threads(), G * blocked.panels(), [&](index_t t) { blocked.pack_task(w, ocg, t, dst); });
}

void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act,
            ConvAlgorithm algo, const float* prepacked, const float* residual) {
    if (s.n == 0 || s.oc == 0 || s.oh == 0 || s.ow == 0) return;
    // a thread per 512K multiply-adds at most, so that the smallest layers do not wait on a team (threads.cpp)
    const ThreadLimit limit(threads_for_work(s.n * s.oc * s.oh * s.ow * (s.c / s.groups) * s.kh * s.kw));
    // NOTE: the dispatcher passes `prepacked` only when it is of the kind conv2d_prepack_kind(s, algo) gives.
    const ConvPath path = conv_path(s, algo, prepacked != nullptr);
    // y's images further apart than its size (a channel slice of a larger array): the direct and Winograd
    // paths store there themselves; the others, and calls with a residual, write a packed copy first.
    const index_t packed = s.oc * s.oh * s.ow;
    if (conv2d_y_image(s) != packed &&
        (residual || (path != ConvPath::indirect && path != ConvPath::winograd))) {
        Conv2dShape sp = s;
        sp.y_image = 0;
        Scratch tmp(static_cast<std::size_t>(s.n * packed));
        conv2d(sp, x, w, bias, tmp.p, act, algo, prepacked, residual);
        const index_t stride = conv2d_y_image(s);
        parallel_for(get_num_threads(), s.n, [&](index_t n) {
            std::memcpy(y + n * stride, tmp.p + n * packed, sizeof(float) * packed);
        });
        return;
    }
    if (path == ConvPath::indirect) return conv2d_indirect(s, x, w, bias, y, act, prepacked, residual);
    // The other paths add a residual in a pass of their own over y (add_<isa>.cpp).
    const Activation first = residual ? Activation::none : act;
    switch (path) {
        case ConvPath::pixel_major: conv2d_pixel_major(s, x, w, bias, y, first, prepacked); break;
        case ConvPath::winograd: conv2d_winograd(s, x, w, bias, y, first, prepacked); break;
        case ConvPath::winograd_phases: conv2d_winograd_phases(s, x, bias, y, first, prepacked); break;
        case ConvPath::depthwise: conv2d_depthwise(s, x, w, bias, y, first); break;
        case ConvPath::linear: linear(s.n, s.c * s.h * s.w, s.oc, x, w, bias, y, first, nullptr); break;  // linear_<isa>.cpp
        case ConvPath::im2col: conv2d_packed(s, x, w, bias, y, first); break;
        case ConvPath::oc_vectors: conv2d_oc_vectors(s, x, w, bias, y, first, prepacked); break;
        default: break;
    }
    if (residual) add(s.n * s.oc * s.oh * s.ow, y, residual, y, act);
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
