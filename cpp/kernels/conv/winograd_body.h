// Internal: 3x3 and 5x5 stride-1 convolution by Winograd's minimal filtering (Lavin & Gray, 2016), compiled
// once per ISA. F(4x4, 3x3): each 6x6 input tile and 3x3 filter is transformed into 36 points; the
// convolution becomes 36 independent GEMMs (tiles x in_channels) * (in_channels x out_channels), 4x fewer
// multiplies than direct convolution, then each 36-point product is transformed back into a 4x4 output tile.
// Images of few tiles (ResNet-50's 7x7 at batch 1: 4 tiles) take F(2x2, 3x3) instead: 4x4 tiles, 16 points,
// 2.25x fewer multiplies, but 4x as many tiles for the GEMMs' rows and 16 instead of 36 transformed filter
// matrices to stream (at 512 channels, 17 MB instead of 38 MB per call). 5x5 kernels take F(4x4, 5x5): 8x8
// tiles on eight points (64 points), 6.25x fewer multiplies; calls of few tiles F(2x2, 5x5), 6x6 tiles on
// the same points as F(4x4, 3x3) (so the same input transform), 2.8x fewer. F(5x5, 2x2), on those
// six points too, serves the 2x2 convolution over the stride phases of a 3x3 stride-2 layer
// (winograd_phases.h), whose input transform then reads those phases from the input in place (PhaseRows2);
// so does F(7x7, 2x2), on F(4x4, 5x5)'s eight points, where it has enough tiles; and F(5x5, 4x4), on those
// eight too, the 4x4 convolution over the stride phases of a 7x7 stride-2 layer. With AVX2, 3x3 layers on
// large images take F(6x6, 3x3) on those eight points (64 points for 36 outputs, 5.06x fewer multiplies).
//
// Layout: filters U[xi][panel][c][NR] (packed for the GEMM's B), inputs V[xi][tile][c], products
// M[xi][tile][o]; the transforms are vectorized across channels (inputs) and output channels (filters,
// outputs). Tiles of all images form one list, processed in blocks so U, V and M stay within a bounded
// workspace (14 MiB in all, plus a 24 KiB staging buffer per thread).
//
// Accuracy: the transforms' constants (1/4, 1/6, 1/24, 8...) cost precision; tests bound the error against
// the float64 reference (see tests/test_winograd.py and the README).
#pragma once

#include <omp.h>

#include <cstring>
#include <type_traits>

#include "../gemm/gemm_body.h"
#include "../parallel.h"
#include "../task_runs.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// o = B^T d (A -> A points: 6 for F(4x4, 3x3), F(2x2, 5x5) and F(5x5, 2x2), which share their points 0, +-1,
// +-2 and infinity, so their input transform; 4 for F(2x2, 3x3); 8 for F(4x4, 5x5) and F(7x7, 2x2), +-1/2
// added)
template <int A>
inline void wino_bt(const vf* d, vf* o) {
    if constexpr (A == 8) {  // F(4x4, 5x5), F(7x7, 2x2): points 0, +-1, +-2, +-1/2 and infinity, rows paired by sign
        const vf c525 = vbroadcast(5.25f), c425 = vbroadcast(4.25f), c25 = vbroadcast(2.5f), c125 = vbroadcast(1.25f),
                 half = vbroadcast(0.5f), quarter = vbroadcast(0.25f), two = vbroadcast(2.f), four = vbroadcast(4.f),
                 five = vbroadcast(5.f);
        o[0] = d[0] - d[6] + c525 * (d[4] - d[2]);
        o[7] = d[7] - d[1] + c525 * (d[3] - d[5]);
        const vf e1 = d[2] + d[6] - c425 * d[4], o1 = d[1] + d[5] - c425 * d[3];
        o[1] = e1 + o1;
        o[2] = e1 - o1;
        const vf e2 = quarter * d[2] - c125 * d[4] + d[6], o2 = half * d[1] - c25 * d[3] + two * d[5];
        o[3] = e2 + o2;
        o[4] = e2 - o2;
        const vf eh = four * d[2] - five * d[4] + d[6], oh = two * d[1] - c25 * d[3] + half * d[5];
        o[5] = eh + oh;
        o[6] = eh - oh;
    } else if constexpr (A == 4) {
        o[0] = d[0] - d[2];
        o[1] = d[1] + d[2];
        o[2] = d[2] - d[1];
        o[3] = d[1] - d[3];
    } else {
        const vf four = vbroadcast(4.f), five = vbroadcast(5.f), two = vbroadcast(2.f);
        o[0] = four * d[0] - five * d[2] + d[4];
        o[1] = d[3] + d[4] - four * (d[1] + d[2]);
        o[2] = four * (d[1] - d[2]) + d[4] - d[3];
        o[3] = two * (d[3] - d[1]) + d[4] - d[2];
        o[4] = two * (d[1] - d[3]) + d[4] - d[2];
        o[5] = four * d[1] - five * d[3] + d[5];
    }
}

// o = G g (R taps -> TM + R - 1 points)
template <int TM, int R>
inline void wino_g(const vf* g, vf* o) {
    if constexpr (TM + R == 9) {  // eight points (F(7x7, 2x2), F(5x5, 4x4), F(4x4, 5x5)): wino_bt<8>'s, scaled
        // as its rows are; the taps' sums over the points, even and odd powers apart
        vf e1 = g[0], o1 = g[1], e2 = g[0], o2 = vbroadcast(2.f) * g[1], eh = g[0], oh = vbroadcast(0.5f) * g[1];
        for (int k = 2; k < R; ++k) {
            const vf p = vbroadcast(float(1 << k)), q = vbroadcast(1.f / float(1 << k));
            if (k % 2) {
                o1 = o1 + g[k];
                o2 = o2 + p * g[k];
                oh = oh + q * g[k];
            } else {
                e1 = e1 + g[k];
                e2 = e2 + p * g[k];
                eh = eh + q * g[k];
            }
        }
        const vf n29 = vbroadcast(-2.f / 9.f), s90 = vbroadcast(1.f / 90.f), s45 = vbroadcast(32.f / 45.f);
        o[0] = g[0];
        o[1] = n29 * (e1 + o1);
        o[2] = n29 * (e1 - o1);
        o[3] = s90 * (e2 + o2);
        o[4] = s90 * (e2 - o2);
        o[5] = s45 * (eh + oh);
        o[6] = s45 * (eh - oh);
        o[7] = g[R - 1];
    } else if constexpr (R == 2) {  // F(5x5, 2x2): the F(4x4, 3x3) rows cut to two taps (the phase images' 2x2)
        const vf q = vbroadcast(0.25f), s6 = vbroadcast(1.f / 6.f), s24 = vbroadcast(1.f / 24.f), two = vbroadcast(2.f);
        o[0] = q * g[0];
        o[1] = -s6 * (g[0] + g[1]);
        o[2] = -s6 * (g[0] - g[1]);
        o[3] = s24 * (g[0] + two * g[1]);
        o[4] = s24 * (g[0] - two * g[1]);
        o[5] = g[1];
    } else if constexpr (R == 5) {  // F(2x2, 5x5): the F(4x4, 3x3) rows extended to five taps
        const vf q = vbroadcast(0.25f), s6 = vbroadcast(1.f / 6.f), s12 = vbroadcast(1.f / 12.f), s24 = vbroadcast(1.f / 24.f),
                 s3 = vbroadcast(1.f / 3.f), t3 = vbroadcast(2.f / 3.f);
        const vf even = g[0] + g[2] + g[4], odd = g[1] + g[3];
        const vf e2 = s24 * g[0] + s6 * g[2] + t3 * g[4], o2 = s12 * g[1] + s3 * g[3];
        o[0] = q * g[0];
        o[1] = -s6 * (even + odd);
        o[2] = -s6 * (even - odd);
        o[3] = e2 + o2;
        o[4] = e2 - o2;
        o[5] = g[4];
    } else if constexpr (TM == 2) {
        const vf h = vbroadcast(0.5f);
        o[0] = g[0];
        o[1] = h * (g[0] + g[1] + g[2]);
        o[2] = h * (g[0] - g[1] + g[2]);
        o[3] = g[2];
    } else {
        const vf q = vbroadcast(0.25f), s6 = vbroadcast(1.f / 6.f), s12 = vbroadcast(1.f / 12.f), s24 = vbroadcast(1.f / 24.f);
        o[0] = q * g[0];
        o[1] = -s6 * (g[0] + g[1] + g[2]);
        o[2] = -s6 * (g[0] - g[1] + g[2]);
        o[3] = s24 * g[0] + s12 * g[1] + s6 * g[2];
        o[4] = s24 * g[0] - s12 * g[1] + s6 * g[2];
        o[5] = g[2];
    }
}

// o = A^T m (A points -> TM outputs)
template <int TM, int A>
inline void wino_at(const vf* m, vf* o) {
    if constexpr (A == 4) {
        o[0] = m[0] + m[1] + m[2];
        o[1] = m[1] - m[2] - m[3];
    } else if constexpr (A == 8) {  // eight points: output j takes the points' powers j, infinity the last one
        const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4], e = m[5] + m[6], f = m[5] - m[6];
        o[0] = m[0] + a + c + e;
        for (int j = 1; j < TM; ++j) {
            const vf p = vbroadcast(float(1 << j)), q = vbroadcast(1.f / float(1 << j));
            o[j] = j % 2 ? b + p * d + q * f : a + p * c + q * e;
        }
        o[TM - 1] = o[TM - 1] + m[7];
    } else if constexpr (TM == 5) {  // F(5x5, 2x2): F(4x4, 3x3)'s rows and one more power, infinity moved down
        const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
        o[0] = m[0] + a + c;
        o[1] = b + vbroadcast(2.f) * d;
        o[2] = a + vbroadcast(4.f) * c;
        o[3] = b + vbroadcast(8.f) * d;
        o[4] = a + vbroadcast(16.f) * c + m[5];
    } else if constexpr (TM == 2) {  // F(2x2, 5x5): the first two rows of F(4x4, 3x3)'s, infinity moved up
        const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
        o[0] = m[0] + a + c;
        o[1] = b + vbroadcast(2.f) * d + m[5];
    } else {
        const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
        o[0] = m[0] + a + c;
        o[1] = b + vbroadcast(2.f) * d;
        o[2] = a + vbroadcast(4.f) * c;
        o[3] = b + vbroadcast(8.f) * d + m[5];
    }
}

struct WinoPlan {
    index_t tiles_h, tiles_w, tiles;  // per image
    index_t c_pad;                    // V row length (channels rounded up to a vector)
    index_t ob, ob_pad, panels;       // output channels per block (and rounded up to NR), NR panels per block
    index_t tb;                       // tiles per block (a multiple of MR): V's and M's rows
    index_t v_plane, m_plane;         // floats from one point's rows of V (of M) to the next's
    int owners;                       // 1: the team shares each block; else each thread takes whole blocks
    index_t blocks;                   // tile blocks (with owners, a multiple of them, of equal size)
};

// NOTE: with the team sharing each tile block, each block costs three barriers, and V and M written by one
// core are read by the other. On a 2-vCPU AMD EPYC (Zen 4) VM a barrier's round trip varied with the host from
// about 60 to 400 ns, and with it ResNet-50's 64 -> 64 on 56x56 on two threads from 0.56 to 1.2 ms (one thread:
// 1.2). So where there are enough tiles, each thread takes whole tile blocks of its own instead, end to end
// (its own V and M, U read-only): no barrier inside a call with prepared filters (64 -> 64 on 56x56, two
// threads on an Intel Xeon VM, alternated in one process: 0.73 -> 0.59 ms; at batch 8 7.7 -> 6.3). At least
// kWinoOwnTiles tiles a thread, so the GEMMs keep full panels; the team shares the blocks of images of few
// tiles (512 channels on 7x7 or 14x14), where each thread then streams only half of U. With AVX2 (MR = 4), at
// least 8 MR: on two threads the 49 tiles of a 28x28 image shared took 0.92x the time of their owned blocks on
// 512 -> 512, 0.96-0.97x on 128 -> 128 and 256 -> 256, and the 36 of ResNet-50's 3x3/2 128 -> 128 by F(5x5,
// 2x2) 0.89x; 196 tiles and more stay owned (shared, 1.00-1.03x; AMD EPYC, Zen 3, separate processes in turns).
constexpr index_t kWinoOwnTiles = CNNFAST_VEC_BYTES == 32 ? 8 * MR : 4 * MR;

// NOTE: U, V and M together stay under 14 MiB (calls keep their workspace under 16 MiB) for inputs of up
// to 1,024 channels: U, the transformed filters of one block of output channels, takes at most half; the
// tile blocks get what is left, shared by their transformed inputs V and products M (with owners, one block
// per thread at a time). 'auto' takes Winograd only there; a forced Winograd on more channels needs 36 x
// in_channels x NR floats for U. Prepared filters (u_prepared) are not workspace: then one block takes all
// output channels (up to M for MR tiles in half the budget), so each input tile is transformed once, not
// once per block (VGG-16's 512-channel layers: 6 blocks otherwise).
template <int TM, int R>
inline WinoPlan wino_plan(const Conv2dShape& s, bool u_prepared, int threads = 1) {
    constexpr index_t kBudget = index_t(14) << 18;  // floats: 14 MiB in all
    constexpr index_t PTS = (TM + R - 1) * (TM + R - 1);
    WinoPlan p;
    p.tiles_h = ceil_div(s.oh, TM);
    p.tiles_w = ceil_div(s.ow, TM);
    p.tiles = p.tiles_h * p.tiles_w;
    p.c_pad = ceil_div(s.c, VL) * VL;
    const index_t u_share = u_prepared ? kBudget / 2 / (PTS * MR) : kBudget / 2 / (PTS * s.c);
    const index_t ob_max = imax(NR, imin(ceil_div(s.oc, NR) * NR, u_share / NR * NR));
    p.ob = ceil_div(ceil_div(s.oc, ceil_div(s.oc, ob_max)), NR) * NR;  // blocks of about equal size
    p.ob_pad = ceil_div(imin(p.ob, s.oc), NR) * NR;
    p.panels = p.ob_pad / NR;
    const index_t total = s.n * p.tiles, u_floats = PTS * p.panels * NR * s.c;
    p.owners = threads > 1 && total >= kWinoOwnTiles * threads ? threads : 1;
    const index_t per_tile = PTS * (p.c_pad + p.ob_pad), left = (kBudget - (u_prepared ? 0 : u_floats)) / p.owners;
    p.tb = imax(MR, imin(ceil_div(total, MR) * MR, left / per_tile / MR * MR));
    // NOTE: a block's V and M are written, then read back, so smaller blocks keep them in cache (about 2 MiB
    // in all: VGG-16's 64 -> 64 on 224x224 22.4 -> 19.5 ms, 128 -> 128 on 112x112 16.8 -> 13.7 ms); but each
    // block streams all of U again, so blocks stay large where U is (512 channels: 36 MiB of U, 16 tiles a
    // block took 18.5 ms instead of 12.8 on 28x28): at least 96 tiles when U is above 16 MiB, 32 otherwise.
    const index_t cached = (index_t(2) << 18) / p.owners / per_tile;
    const index_t want = imax(cached, u_floats > (index_t(16) << 18) ? 96 : 32);
    const index_t cap = p.tb;
    p.tb = imax(MR, imin(p.tb, ceil_div(want, MR) * MR));
    // No short last block: the tiles past the last whole block go to the others (each up to twice as large,
    // within the budget), since every block streams all of U again. ResNet-50's 3x3/2 128 -> 128 by F(5x5, 2x2)
    // on its stride phases (36 tiles of 9.4 MB of U) took a block of 32 and one of 4: one block of 36 took
    // 0.95x the time on one and on two threads (AMD EPYC, Zen 3, separate processes in turns; the stride-1
    // layers, whose blocks change little, 0.98-1.02x).
    if (p.owners == 1 && total > p.tb) {
        const index_t whole = imax(1, total / p.tb), even = ceil_div(ceil_div(total, whole), MR) * MR;
        if (even <= cap) p.tb = even;
    }
    p.blocks = ceil_div(total, p.tb);
    if (p.owners > 1) {  // equal blocks, as many as a multiple of the threads
        p.blocks = ceil_div(p.blocks, p.owners) * p.owners;
        p.tb = ceil_div(ceil_div(total, p.blocks), MR) * MR;
    }
    // NOTE: a tile's A x A points go to A x A planes of V (and come from as many of M); planes a multiple of
    // 4 KiB apart (64 tiles of 192 channels, 96 of 64) map all of them to one set of L1's, which holds 12
    // lines, so each store or load missed. One cache line more per plane puts them in consecutive sets (one
    // thread: 64 -> 64 on 56x56 0.91 -> 0.77 ms, on 224x224 15.7 -> 13.3; 192 -> 32 5x5 on 28x28 1.42 -> 1.07).
    p.v_plane = p.tb * p.c_pad + VL;
    p.m_plane = p.tb * p.ob_pad + VL;
    return p;
}

// U for output channels [o0, o0 + ob): U[xi][panel][c][NR], zero for channels past the block.
template <int TM, int R>
void wino_filters(const Conv2dShape& s, const WinoPlan& p, const float* w, index_t o0, index_t ob, float* U,
                  index_t c, index_t panel) {
    constexpr int A = TM + R - 1;
    for (index_t jv = 0; jv < NV; ++jv) {
        const index_t obase = panel * NR + jv * VL;  // within the block
        constexpr int RR = R * R;
        alignas(64) float t[RR][VL];
        for (int l = 0; l < VL; ++l) {
            const index_t o = obase + l;
            for (int k = 0; k < RR; ++k) t[k][l] = o < ob ? w[((o0 + o) * s.c + c) * RR + k] : 0.f;
        }
        vf g[RR];
        for (int k = 0; k < RR; ++k) g[k] = *reinterpret_cast<const vf*>(t[k]);
        vf cols[A][R];  // G g: column j of g -> A values
        for (int j = 0; j < R; ++j) {
            vf gj[R];
            for (int i = 0; i < R; ++i) gj[i] = g[i * R + j];
            vf oa[A];
            wino_g<TM, R>(gj, oa);
            for (int i = 0; i < A; ++i) cols[i][j] = oa[i];
        }
        for (int i = 0; i < A; ++i) {
            vf oa[A];
            wino_g<TM, R>(cols[i], oa);
            for (int l = 0; l < A; ++l) {
                const index_t xi = i * A + l;
                vstore(U + ((xi * p.panels + panel) * s.c + c) * NR + jv * VL, oa[l]);
            }
        }
    }
}

// Input tiles are transformed a segment at a time, VL channels at a time: up to seg tiles of one tile row of
// one image. The A input rows under the segment are first copied channels-last into a per-thread buffer
// S[i][col][VL] (padding as zeros; about 24 KiB, so it stays in L1), so that each of a tile's A x A points is
// then one vector load: a tile's gather from the NCHW planes directly loads A x A x VL scalars, and staging
// all channels at once scatters its stores over more lines than L1 holds. The copy moves VL x VL blocks
// (VL columns of VL channels), transposed in registers: copying float by float took a third of the time of
// Inception's 5x5 192 -> 32 on 28x28 (0.78 -> 0.69 ms; 64 -> 64 3x3 on 56x56 0.72 -> 0.67; same bits).
struct WinoSegments {
    index_t seg;      // tiles per segment
    index_t per_row;  // segments per tile row
    index_t floats;   // staging buffer per thread
};

template <int TM, int R>
WinoSegments wino_segments(const WinoPlan& p) {
    constexpr index_t kCols = 64;
    WinoSegments g;
    g.seg = imin(p.tiles_w, (kCols - (R - 1)) / TM);
    g.per_row = ceil_div(p.tiles_w, g.seg);
    g.floats = (TM + R - 1) * (g.seg * TM + R - 1) * VL;
    return g;
}

// Asks for floats [c0, c1) of row r (c0 < c1) into L2: every line, the last one too when they start inside one.
inline void prefetch_span(const float* r, index_t c0, index_t c1) {
    for (index_t j = c0; j < c1; j += kLineFloats) __builtin_prefetch(r + j, 0, 2);
    __builtin_prefetch(r + c1 - 1, 0, 2);
}

// Where the input transform reads its rows: the channel planes of x (NCHW, s.c x s.h x s.w per image).
struct PlaneRows {
    const float* x;
    index_t C, H, W;
    // r[l] = columns [col, col + VL) of row ih (inside [0, H)) of channel c + l of image n, zeros past W and for
    // lanes past `lanes`
    void rows(vf* r, index_t n, index_t c, index_t lanes, index_t ih, index_t col) const {
        const float* const src = x + ((n * C + c) * H + ih) * W;
        for (int l = 0; l < VL; ++l) r[l] = l < lanes ? vload_cols(src + l * H * W, col, W, 0.f) : vf{};
    }
    // asks for rows [ih0, ih1) (clipped to the image), columns [c0, c1), of channels c .. c + lanes - 1
    void prefetch(index_t n, index_t c, index_t lanes, index_t ih0, index_t ih1, index_t c0, index_t c1) const {
        if (c0 >= c1) return;
        for (index_t l = 0; l < lanes; ++l)
            for (index_t ih = imax(ih0, 0); ih < imin(ih1, H); ++ih)
                prefetch_span(x + ((n * C + c + l) * H + ih) * W, c0, c1);
    }
};

// The stride-2 phase images of an input read in place, as PlaneRows reads their copy (phases.h: channel
// (ci, py, px) of 4 C, Hph x Wph, holding input pixel (2 i + py - pt, 2 j + px - pl), zero outside the input):
// each input row gives two lanes, its even and odd columns, split by two shuffles.
struct PhaseRows2 {
    const float* x;                // the input, C x H x W per image
    index_t C, H, W, pt, pl, Hph, Wph;
    void rows(vf* r, index_t n, index_t c, index_t lanes, index_t ih, index_t col) const {
        static_assert(VL % 2 == 0, "lanes come in pairs (px = 0, 1)");
        // lanes past the phase image (a segment's last columns) are zeros, as in its copy
        typedef int vi __attribute__((vector_size(kVecBytes)));
        const bool past = col + VL > Wph;
        vi keep{};
        for (int t = 0; t < VL && past; ++t) keep[t] = col + t < Wph ? -1 : 0;
        for (int l = 0; l < VL; l += 2) {
            const index_t cc = c + l, ci = cc / 4, row = 2 * ih + (cc / 2) % 2 - pt;  // (cc / 2) % 2: py
            if (l >= lanes || row < 0 || row >= H) {
                r[l] = r[l + 1] = vf{};
                continue;
            }
            const float* const src = x + ((n * C + ci) * H + row) * W;
            // input columns start + 2 t (px = 0) and start + 2 t + 1 (px = 1): two loads (masked at the input's
            // edges, zeros past them), split into even and odd
            const index_t start = 2 * col - pl;
            vdeinterleave(vload_cols(src, start, W, 0.f), vload_cols(src, start + VL, W, 0.f), r[l], r[l + 1]);
            if (past) {
                r[l] = keep ? r[l] : vf{};
                r[l + 1] = keep ? r[l + 1] : vf{};
            }
        }
    }
    void prefetch(index_t n, index_t c, index_t lanes, index_t ih0, index_t ih1, index_t c0, index_t c1) const {
        if (c0 >= c1) return;
        const index_t i0 = imax(2 * c0 - pl, 0), i1 = imin(2 * c1 - pl, W);
        if (i0 >= i1) return;
        for (index_t l = 0; l < lanes; l += 2)
            for (index_t ih = imax(ih0, 0); ih < imin(ih1, Hph); ++ih) {
                const index_t cc = c + l, row = 2 * ih + (cc / 2) % 2 - pt;
                if (row >= 0 && row < H) prefetch_span(x + ((n * C + cc / 4) * H + row) * W, i0, i1);
            }
    }
};

// V for channels [c, c + VL) of the tiles of segment q (global index over all images' tile rows) that fall in
// the block [t0, t0 + tcount), the input's rows read from src (PlaneRows or PhaseRows2).
template <int TM, int R, class Src>
void wino_input_segment(const Conv2dShape& s, const WinoPlan& p, const WinoSegments& g, const Src& src, index_t q,
                        index_t c, index_t t0, index_t tcount, float* S, float* V) {
    constexpr int A = TM + R - 1;
    const index_t row = q / g.per_row, n = row / p.tiles_h, ti = row % p.tiles_h;
    const index_t row_t = row * p.tiles_w;  // global index of the row's first tile
    const index_t tj0 = imax((q % g.per_row) * g.seg, t0 - row_t);
    const index_t tj1 = imin(imin((q % g.per_row + 1) * g.seg, p.tiles_w), t0 + tcount - row_t);
    if (tj0 >= tj1) return;
    const index_t cols = (tj1 - tj0) * TM + R - 1, ih0 = ti * TM - s.pad_t, iw0 = tj0 * TM - s.pad_l;
    const index_t lanes = imin(VL, s.c - c);  // channels past s.c as zeros
    // NOTE: the TM rows the next tile row adds under this segment's columns are asked for (into L2) now: these
    // channels' next segment comes cvecs calls later, and the VL planes a call reads, a plane apart, are more
    // streams than the hardware prefetchers follow. In ResNet-50's first stage run as a network runs it (the
    // input just written by the layer before; one thread, in turns in one process, Intel Xeon, Ice Lake): its
    // 3x3 64 -> 64 on 56x56 0.95-0.96x the time, 0.89-0.94x with U prefetched as well (wino_conv); back to
    // back 0.98-1.01x. Asking as well for the next call's channels under this segment (on its first tile row
    // only, or on every one): ResNet-50's 3x3/2 128 -> 128 on 56x56 (PhaseRows2) 0.96-1.11x the time at batch 1,
    // within the noise, its loads from the input still the transform's hottest spot (one thread, separate
    // processes in turns, AMD EPYC, Zen 3).
    src.prefetch(n, c, lanes, ih0 + A, ih0 + A + TM, imax(iw0, 0), imin(iw0 + cols, s.w));
    for (int i = 0; i < A; ++i) {
        float* const dst = S + i * cols * VL;
        const index_t ih = ih0 + i;
        if (ih < 0 || ih >= s.h) {
            for (index_t col = 0; col < cols; ++col) vstore(dst + col * VL, vf{});
            continue;
        }
        for (index_t j0 = 0; j0 < cols; j0 += VL) {  // VL columns of VL channels, transposed in registers
            vf r[VL];
            src.rows(r, n, c, lanes, ih, iw0 + j0);
            vtranspose(r);
            const index_t nj = imin(VL, cols - j0);
            for (index_t k = 0; k < nj; ++k) vstore(dst + (j0 + k) * VL, r[k]);
        }
    }
    for (index_t tj = tj0; tj < tj1; ++tj) {
        const index_t tt = row_t + tj - t0;
        const float* base = S + (tj - tj0) * TM * VL;
        vf rows[A][A];
        for (int j = 0; j < A; ++j) {  // B^T along each column
            vf col[A], oa[A];
            for (int i = 0; i < A; ++i) col[i] = vload(base + (i * cols + j) * VL);
            wino_bt<A>(col, oa);
            for (int i = 0; i < A; ++i) rows[i][j] = oa[i];
        }
        for (int i = 0; i < A; ++i) {  // then along each row
            vf oa[A];
            wino_bt<A>(rows[i], oa);
            for (int l = 0; l < A; ++l) vstore(V + (i * A + l) * p.v_plane + tt * p.c_pad + c, oa[l]);
        }
    }
}

// The TM x TM outputs of tile tt of the block (row-major, as out[i * stride + j]) for VL output channels
// (from o of the block) from the products M, with the bias (bv) and the ReLU.
template <int TM, int R>
inline void wino_output_values(const WinoPlan& p, const float* M, index_t tt, index_t o, vf bv, bool relu,
                               float (*out)[VL], int stride) {
    constexpr int A = TM + R - 1;
    vf m[A * A];
    for (int xi = 0; xi < A * A; ++xi) m[xi] = vload(M + xi * p.m_plane + tt * p.ob_pad + o);
    vf cols[TM][A];
    for (int j = 0; j < A; ++j) {
        vf ca[A], ot[TM];
        for (int i = 0; i < A; ++i) ca[i] = m[i * A + j];
        wino_at<TM, A>(ca, ot);
        for (int i = 0; i < TM; ++i) cols[i][j] = ot[i];
    }
    for (int i = 0; i < TM; ++i) {
        vf ot[TM];
        wino_at<TM, A>(cols[i], ot);
        for (int j = 0; j < TM; ++j) {
            vf v = ot[j] + bv;
            if (relu) v = vrelu(v);
            *reinterpret_cast<vf*>(out[i * stride + j]) = v;
        }
    }
}

// The bias of output channels [o0 + o, o0 + o + lanes) as a vector (zero past them).
inline vf wino_bias(const float* bias, index_t o0, index_t o, index_t lanes) {
    alignas(64) float b[VL];
    for (int l = 0; l < VL; ++l) b[l] = (bias && l < lanes) ? bias[o0 + o + l] : 0.f;
    return *reinterpret_cast<const vf*>(b);
}

// The rows of a block of W x H pixels of VL channels (pix[q][l]), rounded up to whole vectors of pixels.
template <int W, int H>
constexpr int wino_padded = (W * H + VL - 1) / VL * VL;

// A block of H rows of W pixels of VL channels (pix[i * W + j][l], then rows of padding up to wino_padded),
// transposed in registers VL pixels at a time, each channel's first `rows` rows then a copy into y (from y0,
// channel planes P apart, rows ow apart).
template <int W, int H>
inline void wino_store_block(float (*pix)[VL], index_t lanes, index_t rows, float* y0, index_t P, index_t ow) {
    constexpr int Q = wino_padded<W, H>;
    alignas(64) float tr[VL][Q];
    for (int p0 = 0; p0 < Q; p0 += VL) {
        vf r[VL];
        for (int k = 0; k < VL; ++k) r[k] = *reinterpret_cast<const vf*>(pix[p0 + k]);
        vtranspose(r);
        for (int l = 0; l < VL; ++l) *reinterpret_cast<vf*>(&tr[l][p0]) = r[l];
    }
    for (index_t l = 0; l < lanes; ++l)
        for (index_t i = 0; i < rows; ++i) std::memcpy(y0 + l * P + i * ow, &tr[l][i * W], W * sizeof(float));
}

// The TM x TM output tile t for output channels [o0 + o, o0 + o + VL) from the products M.
template <int TM, int R>
void wino_output(const Conv2dShape& s, const WinoPlan& p, const float* M, index_t t, index_t tt, index_t o0,
                 index_t ob, index_t o, const float* bias, bool relu, float* y) {
    constexpr int Q = wino_padded<TM, TM>;
    const index_t lanes = imin(VL, ob - o);
    alignas(64) float out[Q][VL];
    wino_output_values<TM, R>(p, M, tt, o, wino_bias(bias, o0, o, lanes), relu, out, TM);
    const index_t n = t / p.tiles, r = t % p.tiles, oh0 = (r / p.tiles_w) * TM, ow0 = (r % p.tiles_w) * TM;
    const index_t rows = imin(TM, s.oh - oh0), colsn = imin(TM, s.ow - ow0), P = s.oh * s.ow;
    // NOTE: whole tile rows: the tile's pixels transposed VL at a time, then each channel's row of TM floats
    // a copy. Float by float, the copy took a sixth of F(4x4, 3x3)'s 64 -> 64 on 56x56; with tiles of 5x5
    // (F(5x5, 4x4) on the stride phases of ResNet's 7x7/2 3 -> 64 on 224x224, one thread, AMD EPYC Zen 3)
    // the output transform took 48% of the call's samples (41% now), and the layer 0.91x the direct path's
    // time (0.72x now; separate processes in turns); F(7x7, 2x2)'s 3x3/2 layers 0.97-0.99x the time.
    if (colsn == TM) {
        for (int q = TM * TM; q < Q; ++q) *reinterpret_cast<vf*>(out[q]) = vf{};
        wino_store_block<TM, TM>(out, lanes, rows, y + n * conv2d_y_image(s) + (o0 + o) * P + oh0 * s.ow + ow0, P,
                                 s.ow);
        return;
    }
    for (index_t l = 0; l < lanes; ++l) {
        float* plane = y + n * conv2d_y_image(s) + (o0 + o + l) * P;
        for (index_t i = 0; i < rows; ++i)
            for (index_t j = 0; j < colsn; ++j) plane[(oh0 + i) * s.ow + ow0 + j] = out[i * TM + j][l];
    }
}

// Tiles whose TM x TM outputs are fewer than VL pixels (F(2x2, *)) are stored wino_side tiles at a time:
// the tiles side by side in one tile row make rows of wino_side x TM pixels, VL in all, which one transpose
// turns into each channel's rows.
// NOTE: one tile at a time, F(2x2, *) stored float by float (with AVX2, 32 scalar stores per tile and 8
// channels). Same bits; on an AMD EPYC (Zen 3), the output transform of Inception's 5x5 16 -> 32 on 28x28
// makes 0.60x the instructions (callgrind), and F(4x4, 3x3)'s, through the same rewritten store, 0.81x (64 ->
// 64 on 56x56). In separate processes in turns, one / two threads: 5x5 16 -> 32 on 28x28 0.90-0.92x / 0.97x the
// time, 32 -> 96 on 28x28 0.91-0.94x / 0.97x, 16 -> 48 on 14x14 0.95x / 0.97x; 192 -> 32 and the 3x3 layers
// 0.99-1.01x. What is left of its time there is mostly the loads of M: a tile's 36 points come from 36 planes.
template <int TM>
constexpr index_t wino_side = TM * TM < VL && VL % (TM * TM) == 0 ? VL / (TM * TM) : 1;

// The output tiles [t, t + wino_side) (block tiles from tt) for channels [o0 + o, o0 + o + VL): side by side
// where they are whole tiles in one tile row of one image, else one by one.
template <int TM, int R>
void wino_output_side(const Conv2dShape& s, const WinoPlan& p, const float* M, index_t t, index_t tt, index_t count,
                      index_t o0, index_t ob, index_t o, const float* bias, bool relu, float* y) {
    constexpr index_t G = wino_side<TM>;
    if constexpr (G > 1) {
        const index_t n = t / p.tiles, r = t % p.tiles, oh0 = (r / p.tiles_w) * TM, ow0 = (r % p.tiles_w) * TM;
        if (count == G && ow0 + G * TM <= s.ow) {
            const index_t lanes = imin(VL, ob - o);
            const vf bv = wino_bias(bias, o0, o, lanes);
            alignas(64) float pix[VL][VL];  // pix[i * G TM + g TM + j]: row i, column j of tile g
            for (index_t g = 0; g < G; ++g)
                wino_output_values<TM, R>(p, M, tt + g, o, bv, relu, pix + g * TM, static_cast<int>(G * TM));
            const index_t P = s.oh * s.ow;
            wino_store_block<G * TM, TM>(pix, lanes, imin(TM, s.oh - oh0),
                                         y + n * conv2d_y_image(s) + (o0 + o) * P + oh0 * s.ow + ow0, P, s.ow);
            return;
        }
    }
    for (index_t g = 0; g < count; ++g) wino_output<TM, R>(s, p, M, t + g, tt + g, o0, ob, o, bias, relu, y);
}

// NOTE: Winograd pays once its GEMMs are big enough to hide the transforms: enough channels and tiles. Its
// GEMMs take the output channels as vector lanes (NR = 48 a panel), so with few of them the transforms dominate.
inline bool winograd_profitable(const Conv2dShape& s, bool filters_prepared) {
    if (!conv2d_winograd_applies(s) || s.c > 1024) return false;
    // F(4x4, 5x5) (or F(2x2, 5x5) on calls of few tiles, wino_tile), 6.25x fewer multiplies than the
    // direct path. On an AMD EPYC (Zen 3, AVX2), Winograd / direct time, prepared, one / two threads, separate
    // processes in turns: from 16 channels in and 16 out it wins on 7x7 outputs and up (16 -> 16 on 14x14
    // 0.39x / 0.60x, 16 -> 32 on 7x7 0.46x / 0.67x, on 28x28 0.43x / 0.59x, 192 -> 16 on 28x28 0.33x / 0.49x,
    // 128 -> 16 on 14x14 0.17x), but not on 5x5 outputs (16 -> 32: 0.89x / 1.13x), and with fewer channels only
    // on one thread (8 -> 16 on 14x14: 0.49x / 0.99x; 4 -> 32 on 28x28 0.90x / 1.71x; LeNet-5's 6 -> 16 at batch
    // 64 1.20x). Unprepared, a call also transforms the filters: on 14x14 and larger it wins (16 -> 16 0.60x /
    // 0.86x, 192 -> 32 on 28x28 0.40x), on 7x7 it loses on two threads (16 -> 32 1.55x, 64 -> 64 1.22x, 128 ->
    // 128 1.52x). Not measured with AVX-512, where F(2x2, 5x5) paid from 32 out on 28x28 and 48 on 14x14 (Intel
    // Xeon, in turns in one process).
    if (s.kh == 5) {
        if (s.c < 16 || s.oc < 16 || s.oh * s.ow < 49) return false;
        return filters_prepared || s.n * ceil_div(s.oh, 2) * ceil_div(s.ow, 2) >= 49;
    }
    // F(4x4, 3x3) (or F(2x2, 3x3), wino_tile), measured against the direct path over 16-192 channels in,
    // 16-128 out, 7x7 to 56x56 images, one and two threads (Intel Xeon, AVX-512; in-process alternation,
    // medians of the ratios). Prepared: from 48 out (a whole panel) it wins from 16
    // channels and 4 tiles (a 7x7 image) up (0.37-0.93x); 32 out wins on 14x14 and larger (0.69-0.81x: 16 ->
    // 32 on 28x28, 32 -> 32 on 14x14) and from 64 channels on 7x7 (192 -> 32 0.74 / 0.76), loses on 16 -> 32
    // on 7x7 (1.05 / 1.55); 16 out from 64 channels on 28x28 (0.73-0.90x), about even below (16 -> 16 on
    // 56x56 0.98 / 0.84, 32 -> 16 on 14x14 0.76 / 1.15). Unprepared: 32 out loses or is even on two threads
    // (64 -> 32 on 28x28 0.70 / 1.08), 48 and more pay from 32 channels and 16 tiles.
    const index_t tiles = s.n * ceil_div(s.oh, 4) * ceil_div(s.ow, 4);
    if (filters_prepared)
        return s.c >= 16 && tiles >= 4 &&
               (s.oc >= 48 || (s.oc >= 32 && (s.oh * s.ow >= 196 || s.c >= 64)) ||
                (s.oc >= 16 && s.c >= 64 && s.oh * s.ow >= 784));
    return s.c >= 32 && s.oc >= 48 && tiles >= 16;
}

// The output tile size: 4 or 2, or 6 (AVX2, 3x3 kernels; below). For 3x3 kernels F(2x2, 3x3) makes 2.25x
// the multiplies of F(4x4, 3x3) per output but streams 16 instead of 36 transformed filter matrices per
// call, which matters when those do not stay in cache: per pair of channels, F(4x4) costs 72 T4 / peak +
// 144 / bw(36 c oc x 4 bytes), F(2x2) 32 T2 / peak + 64 / bw(16 c oc x 4 bytes), with T4 and T2 the call's
// 4x4 and 2x2 tiles; for 5x5 kernels,
// on 8 and 6 points, 128 T4 / peak + 256 / bw(64 c oc x 4 bytes) and 72 T2 / peak + 144 / bw(36 c oc x 4
// bytes) (F(4x4, 5x5) 2.25x fewer multiplies per output). The 3x3 measurements:
//  - Cores that split 512-bit FMAs (Zen 4): bw 80 GB/s up to 16 MiB of filters (cache) and 45 GB/s above
//    (memory, prefetched a panel ahead: fitted to the F(4x4) times below), peak 115 GFLOP/s (one core).
//    Measured on prepared filters (one thread): 512 -> 512 on 7x7 F(2x2) 1.38 ms vs 1.55, at batch 2 F(4x4)
//    2.1 vs 3.05, on 14x14 F(4x4) 3.65 vs 5.06; 256 -> 256 on 7x7 F(4x4) 0.26 vs 0.36; GoogLeNet's 192 -> 384
//    on 7x7 F(4x4) 0.25 vs 0.39.
//  - Full-width cores (cpu_full_width_avx512: Zen 5), whose arithmetic costs half: peak 160 and bw 40 GB/s
//    whatever the filters' size, fitted to F(4x4) and F(2x2) on filters cycled through more copies than L3
//    holds, as a network's layers find theirs (AMD EPYC Zen 5, prepared, one / two threads, ms, F(4x4) vs
//    F(2x2)): on 7x7 at batch 1 F(2x2) wins, 160 -> 320 0.23 vs 0.15 / 0.18 vs 0.11, GoogLeNet's 192 -> 384
//    0.32 vs 0.22 / 0.26 vs 0.14, 256 -> 256 0.36 vs 0.24 (with the same filters every call, 0.25 vs 0.21);
//    F(4x4) wins on 12x12 (0.15 vs 0.18), 14x14 (128 -> 256 0.31 vs 0.36, 256 -> 256 0.61 vs 0.71) and on
//    7x7 at batch 8 (160 -> 320 0.77 vs 1.16; batch 2, 192 -> 384: 0.40 vs 0.45 / 0.28 vs 0.24).
//  - AVX2 (AMD EPYC Zen 3, 95 GFLOP/s per core, 32 MiB of L3): peak 95, bw 80 GB/s up to 16 MiB of filters
//    and 40 GB/s above, which takes F(2x2) for 512 -> 512 on 7x7 at batch 1 (F(4x4)'s filters, 38 MB, come
//    from memory on every call) and F(4x4) from batch 2, on 14x14 and for every smaller layer. Two hosts of
//    the same CPU disagree on that one layer. On the first, F(4x4) took 0.86-0.90x the time of F(2x2) on one
//    thread, 0.81-0.88x on two (filters cycled out of the caches as in a network; the same filters every
//    call 0.85-0.98x, one run of three 1.14x). On a later one, whose memory gave one core about 18 GB/s
//    (F(4x4) 2.1-2.3 ms on one thread, against 1.5 on the first), F(2x2) took 0.78-0.82x the time of F(4x4)
//    on one thread (flushed 0.77-0.78x) and 0.78x on two (flushed 0.76x); at batch 2 1.11-1.23x, on 14x14
//    1.20-1.25x, 256 -> 256 on 7x7 1.30-1.38x (in turns in one process, same layers, prepared). F(2x2) is
//    the smaller loss of the two where they disagree: at most 1.16x against 1.28x.
//  - Intel's AVX-512 cores count as full-width. On a Xeon (model 167: two 512-bit FMA units, 10-15 GB/s from
//    DRAM for one core, 480 MiB of L3), the same form fitted to 256 -> 256 on 14x14 with the caches flushed
//    between calls (F(4x4) 1.47 ms, F(2x2) 1.22, one thread) gives peak 127 and bw 10.3 GB/s, which picks
//    F(2x2) on 14x14 from 96 -> 208 up: flushed, 0.83-0.86x the time of F(4x4) on one thread (96 -> 208,
//    128 -> 256, 160 -> 320, 256 -> 256, 512 -> 512), but with the filters in L3 1.12-1.18x, and whole
//    networks at batch 1, in turns, one / two threads: ResNet-50 0.98-0.99x / 1.00-1.05x, GoogLeNet
//    0.94-0.97x / 1.00-1.05x, VGG-16 1.02x / 0.99-1.00x. Not taken: the model above stands for them.
// Unprepared (filters_prepared false), a call also transforms the filters, writing them at about 7 GB/s
// (36 or 16 scattered rows per filter; 512 -> 512 on 14x14 F(4x4): 8.6 ms against 3.4 prepared), which makes
// F(2x2) pay sooner.
// With AVX2 the tiles are counted as the GEMMs' rows, rounded up to MR, and 3x3 kernels may also take F(6x6,
// 3x3), on the eight points of F(4x4, 5x5): 64 GEMMs on 8x8 tiles, 1.78 multiplies per output against
// F(4x4)'s 2.25, where its transformed filters stay under 16 MiB and the model gives it under 0.93x the
// cost of the better of the other two (its larger transforms, which the model does not count: 28x28 images,
// 25 tiles of 6x6 against 49 of 4x4, came out at 0.98-1.12x the time of F(4x4) at the model's 0.99x). On an
// AMD EPYC (Zen 3), prepared, separate processes in turns, one thread: ResNet-50's 64 -> 64 on 56x56 0.83-0.95x
// the time of F(4x4), GoogLeNet's 64 -> 192 on 56x56 0.88x, VGG-16's 64 -> 64 on 224x224 0.84-0.87x, 128 ->
// 128 on 112x112 0.87x, 128 -> 256 on 56x56 0.98x, 128 -> 128 on 12x12 (4 tiles against 9) 0.71x, 64 -> 64
// on 56x56 at batch 8 0.92x; two threads, within this host's noise (0.92-1.17x over two runs). Whole forward
// passes, batch 1, one / two threads: ResNet-50 0.98x / 0.98x, VGG-16 0.93x / 0.99x, GoogLeNet 0.94x /
// 0.94x. Filters above 16 MiB, which a network's layers read from memory, keep F(4x4): 256 -> 256 on 56x56
// took 0.93-1.01x the time over two runs, 512 -> 512 on 28x28 1.01x (their tile blocks stay large,
// wino_plan, and V and M leave the caches). Not measured with AVX-512.
inline int wino_tile(const Conv2dShape& s, bool filters_prepared = true) {
    const double co = double(s.c) * double(s.oc), kCache = 16.0 * (1 << 20), kTransformBw = 7.0;
    const bool full = CNNFAST_VEC_BYTES == 64 && cpu_full_width_avx512();  // 256-bit FMAs run at full rate anyway
    double peak = full ? 160.0 : 115.0, cache_bw = full ? 40.0 : 80.0, mem_bw = full ? 40.0 : 45.0;
    if (CNNFAST_VEC_BYTES == 32) peak = 95.0, mem_bw = 40.0;  // AVX2 (cache_bw 80, as above)
    const auto bw = [&](double bytes) { return bytes <= kCache ? cache_bw : mem_bw; };
    // the GEMMs' rows: with AVX2 a micro-panel's MR whole (AVX-512's microkernel skips the rows past the tiles
    // of a 7x7 image, and its choices were fitted to tiles as they are)
    const index_t rows = CNNFAST_VEC_BYTES == 32 ? MR : 1;
    const auto cost = [&](index_t tm) {  // A x A points a tile
        const double points = double((tm + s.kh - 1) * (tm + s.kh - 1));
        const double tiles = double(ceil_div(s.n * ceil_div(s.oh, tm) * ceil_div(s.ow, tm), rows) * rows);
        return 2.0 * points * tiles / peak + 4.0 * points / bw(points * 4.0 * co) +
               (filters_prepared ? 0.0 : 4.0 * points / kTransformBw);
    };
    const index_t best = cost(2) < cost(4) ? 2 : 4;
    const double u6 = 64.0 * 4.0 * double(s.c) * double(ceil_div(s.oc, NR) * NR);  // F(6x6)'s filter bytes
    const bool six = CNNFAST_VEC_BYTES == 32 && s.kh == 3 && u6 <= kCache;
    return six && cost(6) < 0.93 * cost(best) ? 6 : best;
}

// The transformed filters of every output-channel block, as conv2d_winograd() takes them prepared.
template <int TM, int R>
index_t wino_filters_floats(const Conv2dShape& s) {
    const WinoPlan p = wino_plan<TM, R>(s, true);
    return ceil_div(s.oc, p.ob) * (TM + R - 1) * (TM + R - 1) * p.panels * s.c * NR;
}

template <int TM, int R>
void wino_prepack(const Conv2dShape& s, const float* w, float* dst) {
    const WinoPlan p = wino_plan<TM, R>(s, true);
    const index_t per_block = (TM + R - 1) * (TM + R - 1) * p.panels * s.c * NR, blocks = ceil_div(s.oc, p.ob);
    parallel_for(get_num_threads(), blocks * s.c * p.panels, [&](index_t t) {
        const index_t b = t / (s.c * p.panels), cp = t % (s.c * p.panels), o0 = b * p.ob;
        wino_filters<TM, R>(s, p, w, o0, imin(p.ob, s.oc - o0), dst + b * per_block, cp / p.panels, cp % p.panels);
    });
}

// What every tile block of a call shares.
template <class Src>
struct WinoCall {
    const Conv2dShape& s;
    const WinoPlan& p;
    const WinoSegments& g;
    Src src;  // the input's rows
    const float* bias;
    float* y;
    bool relu;
    index_t group, kstep, cvecs, ovecs;
};

// Tile panels per GEMM task where a panel of U is read from memory (wino_conv's group): with AVX2, 16 instead
// of 4, so U is read a quarter as often. In turns in one process on an AMD EPYC (Zen 3), same bits, one / two
// threads: 3x3 512 -> 512 on 28x28 0.93-0.94x / 0.90-0.95x the time, on 14x14 0.95-0.98x / 0.94-1.00x, 256 ->
// 256 on 56x56 0.98-0.99x / 0.95-0.98x, 128 -> 128 on 28x28 0.97-0.98x / 0.99x; the layers of fewer tiles
// or panels, within the noise (Inception's 5x5, 64 -> 64 on 56x56: 0.96-1.01x). 8 gained less.
constexpr index_t kWinoMaxGroup = CNNFAST_VEC_BYTES == 32 ? 16 : 4;

// With AVX2 (MR = 4), a tile of one vector keeps four sums, which wait on each other's FMA latency (Zen 3: four
// cycles, two FMA units, so eight sums keep both busy) and load a broadcast per FMA: a panel of U of one vector
// (the last of 32, 128, 320 or 512 output channels, 8 of 24) takes the tile panels two at a time, 2 MR rows,
// eight sums. Each element's sum is the same products in the same order: the same bits. In turns in one
// process on an AMD EPYC (Zen 3), one thread, batch 1: Inception's 5x5 16 -> 32 on 28x28 0.98x the time, 192 ->
// 32 0.92x, 3x3 96 -> 128 and 128 -> 128 on 28x28 0.97x, 512 -> 512 on 14x14 1.01x (its 22nd panel).
constexpr bool kWinoPairRows = CNNFAST_VEC_BYTES == 32;

// One panel of U (kc x NR at u, nv columns) against `rows` rows of V (at v, row stride ldv: its MR-tile panels)
// into M (at m, row stride ldm); the calls share asking for the panel at next (SharedNext), or, where next is
// u, each asks for its own lines (a no-op).
// NOTE: with AVX2, out of line with the microkernel inlined into it (CNNFAST_TILE_LOOP): inlined into the GEMM
// task's lambda, the task's counters, pointers and captures were reloaded from memory around every tile (the
// microkernel, out of line there, an opaque call), a division per tile computed its share of the asking, and
// with few channels (K = 16 for Inception's 16 -> 32) that overhead outweighed the FMAs; the pairs above,
// added to that body, made it larger still and the small layers 1.04-1.15x slower. Against that loop (before
// the pairs), same bits, the two builds alternated in separate processes on an AMD EPYC (Zen 3), batch 1, one /
// two threads: 5x5 16 -> 32 on 28x28 0.77x / 0.76x the time, 192 -> 32 0.89x / 0.82x, GoogLeNet's 16 -> 48 on
// 14x14 0.84x / 0.94x, 32 -> 96 on 28x28 0.87x / 0.86x; 3x3 96 -> 128 on 28x28 0.93x / 0.78x, 128 -> 128 0.94x
// / 0.97x, 64 -> 64 on 56x56 0.90x / 0.97x and on 224x224 0.89x / 0.98x, 256 -> 256 on 56x56 0.98x / 0.99x,
// 512 -> 512 on 14x14 and 7x7 0.99-1.01x / 0.98x; forward passes GoogLeNet 0.97x / 0.98x, ResNet-50 0.98x /
// 0.99x, VGG-16 0.98x / 1.00x.
CNNFAST_TILE_LOOP void wino_gemm_panel(index_t kc, const float* v, index_t ldv, index_t rows, const float* u,
                                       const float* next, float* m, index_t ldm, int nv, bool accumulate, bool last) {
    const Epilogue none;
    const index_t per_call = kWinoPairRows && nv <= VL ? 2 : 1;
    const index_t calls = ceil_div(ceil_div(rows, MR), per_call);
    const SharedNext share(kc, calls);
    for (index_t ci = 0; ci < calls; ++ci) {
        const index_t ir = ci * per_call * MR;
        const int mv = static_cast<int>(imin(per_call * MR, rows - ir));
        const auto run = [&](const auto& bsrc) {
            if constexpr (kWinoPairRows)
                if (mv > MR)
                    return ukernel<1, std::decay_t<decltype(bsrc)>, RowsAOf<2 * MR>, 2 * MR>(
                        kc, RowsAOf<2 * MR>(v + ir * ldv, ldv, mv), bsrc, m + ir * ldm, ldm, mv, nv, accumulate,
                        last, none, 0, 0);
            ukernel_any(kc, RowsA(v + ir * ldv, ldv, mv), bsrc, m + ir * ldm, ldm, mv, nv, accumulate, last, none,
                        0, 0);
        };
        if (next != u)
            share(u, next, ci, run);
        else
            run(StreamedB{{u}, next});
    }
}

// i = 0 .. n - 1 split over the team (an orphaned `omp for`, with its barrier) or run by the calling thread.
template <bool Shared, class F>
inline void wino_loop(index_t n, F&& f) {
    if constexpr (Shared) {
#pragma omp for schedule(static)
        for (index_t i = 0; i < n; ++i) f(i);
    } else {
        for (index_t i = 0; i < n; ++i) f(i);
    }
}

// Tiles [t0, t0 + tcount) for output channels [o0, o0 + ob): input transform into V, the PTS GEMMs into M,
// output transform into y. Shared: the team splits each stage, V and M shared; else the calling thread does
// all of it with its own V, M (p.tb tiles each) and staging buffer S.
template <bool Shared, int TM, int R, class Src>
void wino_block(const WinoCall<Src>& c, const float* U, index_t o0, index_t ob, index_t t0, index_t tcount, float* V,
                float* M, float* S) {
    constexpr index_t PTS = (TM + R - 1) * (TM + R - 1);
    const Conv2dShape& s = c.s;
    const WinoPlan& p = c.p;
    const WinoSegments& g = c.g;
    const index_t q0 = (t0 / p.tiles_w) * g.per_row + (t0 % p.tiles_w) / g.seg;
    const index_t q1 = ((t0 + tcount - 1) / p.tiles_w) * g.per_row + ((t0 + tcount - 1) % p.tiles_w) / g.seg;
    wino_loop<Shared>((q1 - q0 + 1) * c.cvecs, [&](index_t i) {
        wino_input_segment<TM, R>(s, p, g, c.src, q0 + i / c.cvecs, (i % c.cvecs) * VL, t0, tcount, S, V);
    });
    // PTS GEMMs: M[xi] (tiles x ob) = V[xi] (tiles x c) * U[xi] (c x ob). A task takes up to `group` MR-tile
    // panels of one point, each panel of U (kc x NR) coming from memory once for all of them.
    // NOTE: the microkernel broadcasts V's rows in place (RowsA): packing them first (MR x kc scalar copies per
    // micro-panel, reused by every panel of U) cost more than it saved even at 11 panels (512 -> 512 on 14x14,
    // F(4x4, 3x3): 2.34 -> 2.01 ms at one thread; 64 -> 64 on 56x56, two panels, 0.80 -> 0.64; Inception's 5x5
    // 192 -> 32 on 28x28, one panel, 1.33 -> 1.05; AMD EPYC Zen 5, in-process alternation).
    const index_t tpanels = ceil_div(tcount, MR), groups = ceil_div(tpanels, c.group);
    wino_loop<Shared>(PTS * groups, [&](index_t task) {
        const index_t xi = task / groups, g0 = (task % groups) * c.group, gn = imin(c.group, tpanels - g0);
        for (index_t pc = 0; pc < s.c; pc += c.kstep) {
            const index_t kc = imin(c.kstep, s.c - pc);
            for (index_t pn = 0; pn < p.panels; ++pn) {
                const int nv = static_cast<int>(imin(NR, ob - pn * NR));
                if (nv <= 0) break;
                const float* u = U + ((xi * p.panels + pn) * s.c + pc) * NR;
                // the panel read next, prefetched while this one is used: this K block's next panel, the next
                // K block's first, or the next point's first (the next task's, when a task takes all tiles);
                // else this panel (its own lines, a no-op)
                const float* next = pn + 1 < p.panels && (pn + 1) * NR < ob ? u + s.c * NR
                                    : pc + kc < s.c                           ? U + (xi * p.panels * s.c + pc + kc) * NR
                                    : xi + 1 < PTS                            ? U + (xi + 1) * p.panels * s.c * NR
                                                                              : u;
                // NOTE: the gn tile panels' calls share the asking (SharedNext): each asks for its own part of
                // the next panel's lines, one per k where those fit. Each asking for all of it, the tile panels after
                // the first asked again: in turns in one process on an AMD EPYC
                // (Zen 3), same bits, one / two threads, sharing took 3x3 256 -> 256 on 14x14 (gn = 4) to
                // 0.85-0.94x / 0.90-0.97x the time, 512 -> 512 on 14x14 to 0.88-0.95x, 128 -> 128 on 28x28 to
                // 0.84-1.00x, 256 -> 256 on 56x56 to 0.89-0.95x; tasks of one tile panel (gn = 1) are unchanged.
                // Where one line per k does not cover them (AVX-512, three lines per row, gn = 2: the 16 tiles of
                // a 14x14 image with F(4x4), of a 7x7 one with F(2x2)), the first tile panel asks for two lines
                // per k and the others for one each, rather than each for all of it (the first's asking done in
                // its time alone). In turns in one process on an Intel Xeon (model 167), same bits, one / two
                // threads, batch 1: 256 -> 256 on 14x14 0.82x / 0.84x the time, 512 -> 512 on 7x7 0.86x / 0.87x,
                // 512 -> 512 on 14x14 0.78x / 0.77x; the filters cold (64 MiB written between calls) 0.84x /
                // 0.87x, 0.77x / 0.83x, 0.87x / 0.89x; at batch 8 0.90-0.96x.
                const index_t ir = g0 * MR;  // the task's first tile
                wino_gemm_panel(kc, V + xi * p.v_plane + ir * p.c_pad + pc, p.c_pad, imin(gn * MR, tcount - ir), u,
                                next, M + xi * p.m_plane + ir * p.ob_pad + pn * NR, p.ob_pad, nv, pc > 0,
                                pc + kc == s.c);
            }
        }
    });
    constexpr index_t G = wino_side<TM>;
    wino_loop<Shared>(ceil_div(tcount, G) * c.ovecs, [&](index_t i) {
        const index_t o = (i % c.ovecs) * VL, tt = i / c.ovecs * G;
        if (o < ob)
            wino_output_side<TM, R>(s, p, M, t0 + tt, tt, imin(G, tcount - tt), o0, ob, o, c.bias, c.relu, c.y);
    });
}

// U_prepared: wino_prepack()'s transformed filters, or null to transform them here block by block.
// src: where the input's rows come from (PlaneRows: x itself).
template <int TM, int R, class Src>
void wino_conv_from(const Conv2dShape& s, const Src& src, const float* w, const float* bias, float* y, Activation act,
                    const float* U_prepared) {
    constexpr index_t PTS = (TM + R - 1) * (TM + R - 1);
    const int threads = get_num_threads();
    const WinoPlan p = wino_plan<TM, R>(s, U_prepared != nullptr, threads);
    const index_t total = s.n * p.tiles;
    const index_t per_block = PTS * p.panels * s.c * NR;
    const bool own = p.owners > 1;
    Scratch U_block(U_prepared ? 0 : static_cast<std::size_t>(per_block));
    const std::size_t v_floats = static_cast<std::size_t>(PTS * p.v_plane);
    const std::size_t m_floats = static_cast<std::size_t>(PTS * p.m_plane);
    PerThread<float> V(p.owners, v_floats), M(p.owners, m_floats);
    const WinoSegments g = wino_segments<TM, R>(p);
    PerThread<float> S(threads, static_cast<std::size_t>(g.floats));
    // K blocks of the GEMMs, of equal size: up to KC channels, 2 KC with AVX2, where M is then stored once
    // (and reloaded not at all) for up to 512 channels. In turns in one process on an AMD EPYC (Zen 3), one /
    // two threads, against blocks of KC: 3x3 512 -> 512 on 28x28 0.94-0.96x / 0.94x the time, on 14x14
    // 0.89-0.93x / 0.91x, on 7x7 0.91-0.95x / 0.93-0.96x (caches flushed between calls or not); at batch 8,
    // 0.97x / 0.98x on 28x28 and 0.94x on 14x14.
    constexpr index_t kWinoKc = CNNFAST_VEC_BYTES == 32 ? 2 * KC : KC;
    const index_t kblocks = ceil_div(s.c, kWinoKc);
    // NOTE: inside a network U comes from memory on every call (the other layers evicted it), and beyond what
    // L2 holds it does so back to back as well; the GEMM prefetches it a panel ahead. Measured on one thread:
    // 512 -> 512 on 14x14 F(4x4) 5.0 -> 4.2 ms (38 MB of U), on 7x7 F(2x2) 1.7 -> 1.5 ms (AMD EPYC); with U
    // cycled through 200 copies, as a network's layers find theirs, 64 -> 64 on 56x56 (0.84 MiB of U) 0.93-0.95x
    // the time, back to back 0.98-1.00x (Intel Xeon, Ice Lake; in turns in one process).
    const bool big_u = per_block * index_t(sizeof(float)) * ceil_div(s.oc, p.ob) > (index_t(2) << 20);
    // Tile panels per GEMM task: where U is larger than L2 (and for F(2x2, 3x3), which runs on few tiles), a
    // task takes up to kWinoMaxGroup panels per panel of U, so each comes from memory once for all of them;
    // otherwise one with AVX-512 (U stays in L2; grouping cost F(4x4, 3x3) 2-3% there; with U from memory, 128
    // -> 128 on 28x28 and 256 -> 256 on 14x14 took 1.05-1.07x the time with one panel). With AVX2, whose panels
    // of U (kc x 24 floats) stay in L1 across the group, always: in turns in one process on an AMD EPYC (Zen 3),
    // same bits, one / two threads, U in L2: 64 -> 64 on 56x56 0.96x / 0.95x the time, on 224x224 0.96x /
    // 0.94x, 64 -> 128 on 112x112 0.96-0.97x / 0.96x, Inception's 96 -> 128 on 28x28 0.95x / 0.96x (0.86x /
    // 0.84x with the caches flushed between calls).
    const bool grouped = CNNFAST_VEC_BYTES == 32 || TM == 2 || big_u;
    const WinoCall<Src> c{s, p, g, src, bias, y, act == Activation::relu,
                     grouped ? kWinoMaxGroup : 1, ceil_div(s.c, kblocks), ceil_div(s.c, VL), p.ob_pad / VL};

    TaskRuns block_runs;
    parallel(threads, [&] {
        DenormalsOff ftz;
        for (index_t o0 = 0; o0 < s.oc; o0 += p.ob) {
            const index_t ob = imin(p.ob, s.oc - o0);
            const float* const U = U_prepared ? U_prepared + (o0 / p.ob) * per_block : U_block.p;
            if (!U_prepared) {
#pragma omp for schedule(static)
                for (index_t cp = 0; cp < s.c * p.panels; ++cp)
                    wino_filters<TM, R>(s, p, w, o0, ob, U_block.p, cp / p.panels, cp % p.panels);
            }
            if (own) {
                // the barrier run() ends with keeps U_block until every thread is done with it
                block_runs.run(p.blocks, [&](index_t b) {
                    const index_t t0 = b * total / p.blocks, t1 = (b + 1) * total / p.blocks;
                    if (t1 > t0) wino_block<false, TM, R>(c, U, o0, ob, t0, t1 - t0, V.get(), M.get(), S.get());
                });
            } else {
                for (index_t t0 = 0; t0 < total; t0 += p.tb)
                    wino_block<true, TM, R>(c, U, o0, ob, t0, imin(p.tb, total - t0), V.first(), M.first(), S.get());
            }
        }
    });
}

template <int TM, int R>
void wino_conv(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act,
               const float* U_prepared) {
    wino_conv_from<TM, R>(s, PlaneRows{x, s.c, s.h, s.w}, w, bias, y, act, U_prepared);
}

// The variant a call takes (wino_tile): F(4x4, *) or F(2x2, *) for 3x3 or 5x5 kernels, or F(6x6, 3x3). f is
// called with the variant's tile and kernel sizes as integral constants.
template <class F>
decltype(auto) wino_variant(const Conv2dShape& s, bool filters_prepared, F&& f) {
    using Two = std::integral_constant<int, 2>;
    using Three = std::integral_constant<int, 3>;
    using Four = std::integral_constant<int, 4>;
    using Five = std::integral_constant<int, 5>;
    using Six = std::integral_constant<int, 6>;
    const int tm = wino_tile(s, filters_prepared);
    if (s.kh == 5) return tm == 2 ? f(Two{}, Five{}) : f(Four{}, Five{});
    return tm == 2 ? f(Two{}, Three{}) : tm == 4 ? f(Four{}, Three{}) : f(Six{}, Three{});
}

}  // namespace

// The transformed filters of every output-channel block, as conv2d_winograd() takes them prepared; their
// layout depends on the variant, which conv2d_prepack_kind() and the kernel size tell apart.
index_t winograd_filters_floats(const Conv2dShape& s) {
    return wino_variant(s, true, [&](auto tm, auto r) { return wino_filters_floats<tm, r>(s); });
}

void winograd_prepack(const Conv2dShape& s, const float* w, float* dst) {
    wino_variant(s, true, [&](auto tm, auto r) { wino_prepack<tm, r>(s, w, dst); });
}

void conv2d_winograd(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act,
                     const float* U_prepared) {
    if (s.n == 0 || s.oc == 0 || s.oh == 0 || s.ow == 0) return;
    wino_variant(s, U_prepared != nullptr, [&](auto tm, auto r) { wino_conv<tm, r>(s, x, w, bias, y, act, U_prepared); });
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
