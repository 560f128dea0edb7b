// Internal: 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016),
// compiled once per ISA. Each 6x6 input tile and 3x3 filter is transformed into 36 points; the convolution
// becomes 36 independent GEMMs (tiles x in_channels) * (in_channels x out_channels), 4x fewer multiplies
// than direct convolution, then each 36-point product is transformed back into a 4x4 output tile.
//
// Layout: filters U[xi][panel][c][NR] (packed for the GEMM's B), inputs V[xi][tile][c], products
// M[xi][tile][o]; the transforms are vectorized across channels (inputs) and output channels (filters,
// outputs). Tiles of all images form one list, processed in blocks so U, V and M stay within a bounded
// workspace (14 MiB in all).
//
// Accuracy: the transforms' constants (1/4, 1/6, 1/24, 8...) cost precision; tests bound the error against
// the float64 reference (see tests/test_winograd.py and the README).
#pragma once

#include <omp.h>

#include "../gemm/gemm_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// o = B^T d (6 -> 6)
inline void wino_bt(const vf d[6], vf o[6]) {
    const vf four = vbroadcast(4.f), five = vbroadcast(5.f), two = vbroadcast(2.f);
    o[0] = four * d[0] - five * d[2] + d[4];
    o[1] = d[3] + d[4] - four * (d[1] + d[2]);
    o[2] = four * (d[1] - d[2]) + d[4] - d[3];
    o[3] = two * (d[3] - d[1]) + d[4] - d[2];
    o[4] = two * (d[1] - d[3]) + d[4] - d[2];
    o[5] = four * d[1] - five * d[3] + d[5];
}

// o = G g (3 -> 6)
inline void wino_g(const vf g[3], vf o[6]) {
    const vf q = vbroadcast(0.25f), s6 = vbroadcast(1.f / 6.f), s12 = vbroadcast(1.f / 12.f), s24 = vbroadcast(1.f / 24.f);
    o[0] = q * g[0];
    o[1] = -s6 * (g[0] + g[1] + g[2]);
    o[2] = -s6 * (g[0] - g[1] + g[2]);
    o[3] = s24 * g[0] + s12 * g[1] + s6 * g[2];
    o[4] = s24 * g[0] - s12 * g[1] + s6 * g[2];
    o[5] = g[2];
}

// o = A^T m (6 -> 4)
inline void wino_at(const vf m[6], vf o[4]) {
    const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + vbroadcast(2.f) * d;
    o[2] = a + vbroadcast(4.f) * c;
    o[3] = b + vbroadcast(8.f) * d + m[5];
}

struct WinoPlan {
    index_t tiles_h, tiles_w, tiles;  // per image
    index_t c_pad;                    // V row length (channels rounded up to a vector)
    index_t ob, ob_pad, panels;       // output channels per block (and rounded up to NR), NR panels per block
    index_t tb;                       // tiles per block (a multiple of MR)
};

// NOTE: U, V and M together stay under 14 MiB (calls keep their workspace under 16 MiB) for inputs of up
// to 1,024 channels: U, the transformed filters of one block of output channels, takes at most half; the
// tile block gets what is left, shared by its transformed inputs V and products M. 'auto' takes Winograd
// only there; a forced Winograd on more channels needs 36 x in_channels x NR floats for U.
inline WinoPlan wino_plan(const Conv2dShape& s) {
    constexpr index_t kBudget = index_t(14) << 18;  // floats: 14 MiB in all
    WinoPlan p;
    p.tiles_h = ceil_div(s.oh, 4);
    p.tiles_w = ceil_div(s.ow, 4);
    p.tiles = p.tiles_h * p.tiles_w;
    p.c_pad = ceil_div(s.c, VL) * VL;
    const index_t ob_max = imax(NR, imin(ceil_div(s.oc, NR) * NR, kBudget / 2 / (36 * s.c) / NR * NR));
    p.ob = ceil_div(ceil_div(s.oc, ceil_div(s.oc, ob_max)), NR) * NR;  // blocks of about equal size
    p.ob_pad = ceil_div(imin(p.ob, s.oc), NR) * NR;
    p.panels = p.ob_pad / NR;
    const index_t total = s.n * p.tiles, left = kBudget - 36 * p.panels * NR * s.c;
    p.tb = imax(MR, imin(ceil_div(total, MR) * MR, left / (36 * (p.c_pad + p.ob_pad)) / MR * MR));
    return p;
}

// U for output channels [o0, o0 + ob): U[xi][panel][c][NR], zero for channels past the block.
void wino_filters(const Conv2dShape& s, const WinoPlan& p, const float* w, index_t o0, index_t ob, float* U,
                  index_t c, index_t panel) {
    for (index_t jv = 0; jv < NV; ++jv) {
        const index_t obase = panel * NR + jv * VL;  // within the block
        alignas(64) float t[9][VL];
        for (int l = 0; l < VL; ++l) {
            const index_t o = obase + l;
            for (int k = 0; k < 9; ++k) t[k][l] = o < ob ? w[((o0 + o) * s.c + c) * 9 + k] : 0.f;
        }
        vf g[9];
        for (int k = 0; k < 9; ++k) g[k] = *reinterpret_cast<const vf*>(t[k]);
        vf cols[6][3];  // G g: column j of g -> 6 values
        for (int j = 0; j < 3; ++j) {
            const vf gj[3] = {g[j], g[3 + j], g[6 + j]};
            vf o6[6];
            wino_g(gj, o6);
            for (int i = 0; i < 6; ++i) cols[i][j] = o6[i];
        }
        for (int i = 0; i < 6; ++i) {
            vf o6[6];
            wino_g(cols[i], o6);
            for (int l = 0; l < 6; ++l) {
                const index_t xi = i * 6 + l;
                vstore(U + ((xi * p.panels + panel) * s.c + c) * NR + jv * VL, o6[l]);
            }
        }
    }
}

// V for one tile (global index t over all images) and channels [c, c + VL).
void wino_input(const Conv2dShape& s, const WinoPlan& p, const float* x, index_t t, index_t tt, index_t c, float* V) {
    const index_t n = t / p.tiles, r = t % p.tiles, ti = r / p.tiles_w, tj = r % p.tiles_w;
    const index_t ih0 = ti * 4 - s.pad_t, iw0 = tj * 4 - s.pad_l, HW = s.h * s.w;
    alignas(64) float d[36][VL];
    const index_t lanes = imin(VL, s.c - c);
    for (index_t l = 0; l < VL; ++l) {
        const float* plane = x + (n * s.c + c + l) * HW;
        for (int i = 0; i < 6; ++i) {
            const index_t ih = ih0 + i;
            const bool row_ok = l < lanes && ih >= 0 && ih < s.h;
            for (int j = 0; j < 6; ++j) {
                const index_t iw = iw0 + j;
                d[i * 6 + j][l] = (row_ok && iw >= 0 && iw < s.w) ? plane[ih * s.w + iw] : 0.f;
            }
        }
    }
    vf rows[6][6];
    for (int j = 0; j < 6; ++j) {  // B^T along each column
        vf col[6], o6[6];
        for (int i = 0; i < 6; ++i) col[i] = *reinterpret_cast<const vf*>(d[i * 6 + j]);
        wino_bt(col, o6);
        for (int i = 0; i < 6; ++i) rows[i][j] = o6[i];
    }
    for (int i = 0; i < 6; ++i) {  // then along each row
        vf o6[6];
        wino_bt(rows[i], o6);
        for (int l = 0; l < 6; ++l) vstore(V + ((i * 6 + l) * p.tb + tt) * p.c_pad + c, o6[l]);
    }
}

// The 4x4 output tile t for output channels [o0 + o, o0 + o + VL) from the products M.
void wino_output(const Conv2dShape& s, const WinoPlan& p, const float* M, index_t t, index_t tt, index_t o0,
                 index_t ob, index_t o, const float* bias, bool relu, float* y) {
    vf m[36];
    for (int xi = 0; xi < 36; ++xi) m[xi] = vload(M + (xi * p.tb + tt) * p.ob_pad + o);
    vf cols[4][6];
    for (int j = 0; j < 6; ++j) {
        const vf c6[6] = {m[j], m[6 + j], m[12 + j], m[18 + j], m[24 + j], m[30 + j]};
        vf o4[4];
        wino_at(c6, o4);
        for (int i = 0; i < 4; ++i) cols[i][j] = o4[i];
    }
    const index_t lanes = imin(VL, ob - o);
    alignas(64) float b[VL];
    for (int l = 0; l < VL; ++l) b[l] = (bias && l < lanes) ? bias[o0 + o + l] : 0.f;
    const vf bv = *reinterpret_cast<const vf*>(b);
    alignas(64) float out[16][VL];
    for (int i = 0; i < 4; ++i) {
        vf o4[4];
        wino_at(cols[i], o4);
        for (int j = 0; j < 4; ++j) {
            vf v = o4[j] + bv;
            if (relu) v = vrelu(v);
            *reinterpret_cast<vf*>(out[i * 4 + j]) = v;
        }
    }
    const index_t n = t / p.tiles, r = t % p.tiles, oh0 = (r / p.tiles_w) * 4, ow0 = (r % p.tiles_w) * 4;
    const index_t rows = imin(4, s.oh - oh0), colsn = imin(4, s.ow - ow0), P = s.oh * s.ow;
    for (index_t l = 0; l < lanes; ++l) {
        float* plane = y + (n * s.oc + o0 + o + l) * P;
        for (index_t i = 0; i < rows; ++i)
            for (index_t j = 0; j < colsn; ++j) plane[(oh0 + i) * s.ow + ow0 + j] = out[i * 4 + j][l];
    }
}

// NOTE: Winograd pays once the 36 GEMMs are big enough to hide the transforms: enough channels and tiles.
// With the filters transformed beforehand (conv2d_prepare), the input and output transforms are all that is
// left, and it wins from 16 channels and 4 tiles up (a 7x7 image) on one thread and on two.
inline bool winograd_profitable(const Conv2dShape& s, bool filters_prepared) {
    if (!conv2d_winograd_applies(s) || s.c > 1024) return false;
    const index_t tiles = s.n * ceil_div(s.oh, 4) * ceil_div(s.ow, 4);
    if (filters_prepared) return s.c >= 16 && s.oc >= 16 && tiles >= 4;
    return s.c >= 32 && s.oc >= 32 && tiles >= 16;
}

}  // namespace

// The transformed filters of every output-channel block, as conv2d_winograd() takes them prepared.
index_t winograd_filters_floats(const Conv2dShape& s) {
    const WinoPlan p = wino_plan(s);
    return ceil_div(s.oc, p.ob) * 36 * p.panels * s.c * NR;
}

void winograd_prepack(const Conv2dShape& s, const float* w, float* dst) {
    const WinoPlan p = wino_plan(s);
    const index_t per_block = 36 * p.panels * s.c * NR, blocks = ceil_div(s.oc, p.ob);
#pragma omp parallel for num_threads(get_num_threads()) schedule(static)
    for (index_t t = 0; t < blocks * s.c * p.panels; ++t) {
        const index_t b = t / (s.c * p.panels), cp = t % (s.c * p.panels), o0 = b * p.ob;
        wino_filters(s, p, w, o0, imin(p.ob, s.oc - o0), dst + b * per_block, cp / p.panels, cp % p.panels);
    }
}

// U_prepared: winograd_prepack()'s transformed filters, or null to transform them here block by block.
void conv2d_winograd(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, Activation act,
                     const float* U_prepared) {
    if (s.n == 0 || s.oc == 0 || s.oh == 0 || s.ow == 0) return;
    const WinoPlan p = wino_plan(s);
    const int threads = get_num_threads();
    const index_t total = s.n * p.tiles, cvecs = ceil_div(s.c, VL), ovecs = p.ob_pad / VL;
    const index_t per_block = 36 * p.panels * s.c * NR;
    Scratch U_block(U_prepared ? 0 : static_cast<std::size_t>(per_block));
    Scratch V(static_cast<std::size_t>(36 * p.tb * p.c_pad));
    Scratch M(static_cast<std::size_t>(36 * p.tb * p.ob_pad));
    const bool relu = act == Activation::relu;
    const index_t kblocks = ceil_div(s.c, KC), kstep = ceil_div(s.c, kblocks);

#pragma omp parallel num_threads(threads)
    {
        DenormalsOff ftz;
        alignas(64) float abuf[MR * KC];
        const Epilogue none;
        for (index_t o0 = 0; o0 < s.oc; o0 += p.ob) {
            const index_t ob = imin(p.ob, s.oc - o0);
            const float* const U = U_prepared ? U_prepared + (o0 / p.ob) * per_block : U_block.p;
            if (!U_prepared) {
#pragma omp for schedule(static)
                for (index_t cp = 0; cp < s.c * p.panels; ++cp)
                    wino_filters(s, p, w, o0, ob, U_block.p, cp / p.panels, cp % p.panels);
            }
            for (index_t t0 = 0; t0 < total; t0 += p.tb) {
                const index_t tcount = imin(p.tb, total - t0);
#pragma omp for schedule(static)
                for (index_t i = 0; i < tcount * cvecs; ++i)
                    wino_input(s, p, x, t0 + i / cvecs, i / cvecs, (i % cvecs) * VL, V.p);
                // 36 GEMMs: M[xi] (tiles x ob) = V[xi] (tiles x c) * U[xi] (c x ob)
                const index_t tpanels = ceil_div(tcount, MR);
#pragma omp for schedule(static)
                for (index_t task = 0; task < 36 * tpanels; ++task) {
                    const index_t xi = task / tpanels, ir = (task % tpanels) * MR;
                    const int mv = static_cast<int>(imin(MR, tcount - ir));
                    for (index_t pc = 0; pc < s.c; pc += kstep) {
                        const index_t kc = imin(kstep, s.c - pc);
                        pack_a(V.p + (xi * p.tb + ir) * p.c_pad + pc, p.c_pad, mv, kc, abuf);
                        for (index_t pn = 0; pn < p.panels; ++pn) {
                            const int nv = static_cast<int>(imin(NR, ob - pn * NR));
                            if (nv <= 0) break;
                            ukernel_any(kc, PackedA{abuf}, PackedB{U + ((xi * p.panels + pn) * s.c + pc) * NR},
                                        M.p + (xi * p.tb + ir) * p.ob_pad + pn * NR, p.ob_pad, mv, nv, pc > 0,
                                        pc + kc == s.c, none, 0, 0);
                        }
                    }
                }
#pragma omp for schedule(static)
                for (index_t i = 0; i < tcount * ovecs; ++i) {
                    const index_t o = (i % ovecs) * VL;
                    if (o >= ob) continue;
                    wino_output(s, p, M.p, t0 + i / ovecs, i / ovecs, o0, ob, o, bias, relu, y);
                }
            }
        }
    }
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
