// Internal: the zero-padded, stride-phase-split copy of the input that the direct convolutions read in
// place, compiled once per ISA (included by conv2d_body.h).
#pragma once

#include "../gemm/gemm_body.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

// p[0], p[4], ..., p[4 * (VL - 1)]: every fourth of the 4 * VL floats at p, by two rounds of two-vector shuffles.
inline vf vstride4(const float* p) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi pick, join;
    for (int i = 0; i < VL; ++i) {
        pick[i] = i < VL / 2 ? 4 * i : 0;        // lanes 0..VL/2 - 1 of a pair of vectors
        join[i] = i < VL / 2 ? i : i + VL / 2;  // the first halves of two vectors
    }
    const vf lo = __builtin_shuffle(vload(p), vload(p + VL), pick);
    const vf hi = __builtin_shuffle(vload(p + 2 * VL), vload(p + 3 * VL), pick);
    return __builtin_shuffle(lo, hi, join);
}

// Fills d[0:count] with input row `ih` of one channel plane, sampled at iw = iw0 + t * sw (zeros outside).
// NOTE: plain loops, not memcpy: segments are a few dozen floats, where a call costs more than the copy, and
// constant strides 1 and 2 let the compiler vectorize the gather.
inline void gather_row(float* __restrict d, index_t count, const float* __restrict plane, index_t H, index_t W,
                       index_t ih, index_t iw0, index_t sw) {
    if (ih < 0 || ih >= H) {
        for (index_t t = 0; t < count; ++t) d[t] = 0.f;
        return;
    }
    const float* row = plane + ih * W;
    // t in [t_lo, t_hi) lands inside [0, W) (no division for stride 1: segments are short, calls many)
    index_t t_lo, t_hi;
    if (sw == 1) {
        t_lo = imax(-iw0, 0);
        t_hi = imax(W - iw0, 0);
    } else {
        t_lo = iw0 >= 0 ? 0 : ceil_div(-iw0, sw);
        t_hi = iw0 >= W ? 0 : ceil_div(W - iw0, sw);
    }
    t_lo = imin(t_lo, count);
    t_hi = imax(t_lo, imin(t_hi, count));
    for (index_t t = 0; t < t_lo; ++t) d[t] = 0.f;
    const float* src = row + iw0;
    if (sw == 1) {
#pragma omp simd
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[t];
    } else if (sw == 2) {
#pragma omp simd
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[2 * t];
    } else if (sw == 4) {  // AlexNet's first layer: the scalar loop would cost a twentieth of the layer
        index_t t = t_lo;
        for (; t + VL <= t_hi && iw0 + 4 * (t + VL) <= W; t += VL) vstore(d + t, vstride4(src + 4 * t));
        for (; t < t_hi; ++t) d[t] = src[4 * t];
    } else {
        for (index_t t = t_lo; t < t_hi; ++t) d[t] = src[t * sw];
    }
    for (index_t t = t_hi; t < count; ++t) d[t] = 0.f;
}

// Indirect convolution: the zero-padded input is split into stride_h x stride_w phase images of Hph x Wph,
// so that row k = (ci, ki, kj) of the im2col matrix is one contiguous run of a phase image, when output
// pixels are numbered q' = oh * Wph + ow. The microkernel then reads B in place through a table of row
// pointers: no packing. The Wph - OW extra columns per output row are computed and dropped.
struct PhaseGeometry {
    index_t Hph, Wph, plane, per_channel, N;  // N = OH * Wph columns of the GEMM
    // Column images per row phase: stride_w phases, or, shifted, one per column tap (see shifted_geometry).
    index_t col_images;
    bool shifted = false;
};

inline PhaseGeometry phase_geometry(const Conv2dShape& s) {
    PhaseGeometry g;
    g.Hph = s.oh + ((s.kh - 1) * s.dil_h) / s.stride_h;
    g.Wph = s.ow + ((s.kw - 1) * s.dil_w) / s.stride_w;
    g.plane = g.Hph * g.Wph;
    g.col_images = s.stride_w;
    g.per_channel = s.stride_h * g.col_images * g.plane;
    g.N = s.oh * g.Wph;
    return g;
}

// Shifted images: per row phase, one image per column tap kj, of OW columns, holding the input column that
// tap reads for each output column (img[a][kj][i][ow] = padded[i * SH + a][ow * SW + kj * DW]). Row k =
// (ci, ki, kj) of the im2col matrix is then one contiguous run in y's own pixel order, rows included: the
// GEMM reads B in place with plain loads and stores into y, with no padding column to skip (grid) or cross
// (exact, whose vectors straddling two rows take a second, masked load each). The copy is KW / SW times
// that of the phase images: a small part of any layer whose taps and output channels are not few.
inline PhaseGeometry shifted_geometry(const Conv2dShape& s) {
    PhaseGeometry g = phase_geometry(s);
    g.Wph = s.ow;
    g.plane = g.Hph * g.Wph;
    g.col_images = s.kw;
    g.per_channel = s.stride_h * g.col_images * g.plane;
    g.N = s.oh * g.Wph;
    g.shifted = true;
    return g;
}

// The input itself serves as its only phase (1x1, stride 1, no padding).
inline bool phases_are_input(const Conv2dShape& s) {
    return s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 && s.pad_l == 0 &&
           s.oh == s.h && s.ow == s.w;
}

// Whether phase `a` of a stride (row phase, or column phase) holds the input of any tap: a 1x1 filter with
// stride 2 reads only phase (0, 0), a quarter of the padded copy.
inline bool phase_used(index_t a, index_t taps, index_t dil, index_t stride) {
    for (index_t k = 0; k < taps && k < stride; ++k)
        if (k * dil % stride == a) return true;
    return false;
}

// dst[a][b][i][j] = plane[i * SH + a - PT][j * SW + b - PL], zero outside the input, for row phase `a` and the
// column phases b that some tap reads with it; the phases no tap reads are left unwritten. Shifted (see
// shifted_geometry): dst[a][kj][i][j] = plane[i * SH + a - PT][j * SW + kj * DW - PL] for every column tap kj.
// Column stride 2: each input row is split once into its even and odd columns (zero outside the row), and
// every image's row is a run of one of the two halves: image b reads padded column j * 2 + cw, cw = (shifted ?
// b * DW : b) - PL, that is half[cw mod 2][j + floor(cw / 2)]. Returns false, writing nothing, where the halves
// would not fit its buffer (rows over 2 kMaxHalf columns).
// NOTE: gathering each image's row from the input instead costs two divisions, a two-vector shuffle and blend
// per vector and a scalar tail, for every image (three per row phase for a shifted 3x3/2). ResNet-50's stride-2
// 3x3 128 -> 128 on 56x56 spent 10% of its samples building them, 6% split once (one thread, AMD EPYC Zen 3),
// and the time went less than that, the input's first reads from L3 being the rest: in turns in one process,
// same bits, 0.99-1.01x at batch 1 (one and two threads), 0.98-0.99x at batch 8. A 1x1/2, whose images all take
// one half, keeps the gather. Asking for the input's rows 8 or 16 rows ahead as well: 0.93-1.05x the time on
// that layer at batch 1 and 8, within the noise (one thread, separate processes in turns, AMD EPYC, Zen 3).
constexpr index_t kMaxHalf = 1024;
bool build_phases_stride2(const Conv2dShape& s, const PhaseGeometry& g, const float* __restrict plane, index_t a,
                          float* __restrict dst) {
    index_t off[16], parity[16], lo = 0, hi = 0;
    bool used[16], half_used[2] = {false, false};
    if (g.col_images > 16) return false;
    for (index_t b = 0; b < g.col_images; ++b) {
        used[b] = g.shifted || phase_used(b, s.kw, s.dil_w, s.stride_w);
        const index_t cw = (g.shifted ? b * s.dil_w : b) - s.pad_l;
        off[b] = cw >= 0 ? cw / 2 : -((1 - cw) / 2);
        parity[b] = cw - 2 * off[b];
        half_used[parity[b]] = half_used[parity[b]] || used[b];
        lo = b == 0 ? off[b] : imin(lo, off[b]);
        hi = b == 0 ? off[b] : imax(hi, off[b]);
    }
    // images of one half only (a 1x1/2): the plain gather reads what that half needs, no more
    const index_t span = hi - lo + g.Wph;  // half columns lo .. hi + Wph - 1
    if (!half_used[0] || !half_used[1] || span > kMaxHalf) return false;
    alignas(64) float half[2][kMaxHalf];
    const index_t W = s.w;
    for (index_t i = 0; i < g.Hph; ++i) {
        const index_t ih = i * s.stride_h + a - s.pad_t;
        const bool inside = ih >= 0 && ih < s.h;
        if (inside) {
            const float* row = plane + ih * W;
            // half column j (index j - lo) holds input columns 2j and 2j + 1: whole vectors where both lie in
            // the row, single columns (zero outside it) before and after
            const index_t end = hi + g.Wph;
            auto one = [&](index_t j) {
                half[0][j - lo] = j >= 0 && 2 * j < W ? row[2 * j] : 0.f;
                half[1][j - lo] = j >= 0 && 2 * j + 1 < W ? row[2 * j + 1] : 0.f;
            };
            index_t j = lo;
            for (; j < end && j < 0; ++j) one(j);
            for (; j + VL <= end && 2 * j + 2 * VL <= W; j += VL) {
                vf e, o;
                vdeinterleave(vload(row + 2 * j), vload(row + 2 * j + VL), e, o);
                vstore(half[0] + (j - lo), e);
                vstore(half[1] + (j - lo), o);
            }
            for (; j < end; ++j) one(j);
        }
        for (index_t b = 0; b < g.col_images; ++b) {
            if (!used[b]) continue;
            float* d = dst + ((a * g.col_images + b) * g.Hph + i) * g.Wph;
            const float* src = half[parity[b]] + (off[b] - lo);
            // whole vectors, the last one overlapping its predecessor (rows are a few vectors: a loop with a
            // scalar tail, or a call to memcpy, cost as much as the copy)
            const index_t n = g.Wph;
            if (n < VL) {
                for (index_t t = 0; t < n; ++t) d[t] = inside ? src[t] : 0.f;
                continue;
            }
            for (index_t t = 0; t + VL <= n; t += VL) vstore(d + t, inside ? vload(src + t) : vf{});
            if (n % VL) vstore(d + n - VL, inside ? vload(src + n - VL) : vf{});
        }
    }
    return true;
}

void build_phases(const Conv2dShape& s, const PhaseGeometry& g, const float* __restrict plane, index_t a,
                  float* __restrict dst) {
    if (!phase_used(a, s.kh, s.dil_h, s.stride_h)) return;
    if (s.stride_w == 2 && build_phases_stride2(s, g, plane, a, dst)) return;
    for (index_t b = 0; b < g.col_images; ++b) {
        if (!g.shifted && !phase_used(b, s.kw, s.dil_w, s.stride_w)) continue;
        const index_t iw0 = (g.shifted ? b * s.dil_w : b) - s.pad_l;
        for (index_t i = 0; i < g.Hph; ++i) {
            float* d = dst + ((a * g.col_images + b) * g.Hph + i) * g.Wph;
            gather_row(d, g.Wph, plane, s.h, s.w, i * s.stride_h + a - s.pad_t, iw0, s.stride_w);
        }
    }
}

// How the direct path numbers its GEMM columns when the phase images are a copy (Wph > OW, or stride > 1):
//  - grid: q' = oh * Wph + ow, blocks of the padded grid; the Wph - OW padding columns of every row are
//    computed, then dropped when a scratch block is copied into y;
//  - rows: each output row starts a panel; the last vector's unused lanes are wasted, stores go into y;
//  - exact: q = oh * OW + ow, y's own order: a vector that crosses the end of an output row takes the lanes
//    past it from Wph - OW floats further on (ExactB), so nothing is wasted and stores go into y. Needs rows of
//    at least VL pixels (a vector then spans two rows at most), and AVX-512, whose merge-masked load costs a
//    load; elsewhere a blend joins the two loads on the FMA ports (AVX2: AlexNet's first layer 2.38 -> 3.0 ms,
//    kStraddleLoad).
//    Rows of whole vectors (OW = 112, 224) need no masked load: a panel's vectors just start in different rows.
//    Against rows, whose last panel of each row is short (112 = 48 + 48 + 16): ResNet-50's and GoogLeNet's 7x7/2
//    stem 0.87-0.93x the time, VGG-16's first layer 0.82-0.88x (one and two threads, AMD EPYC Zen 5, in turns
//    in one process). So on AVX2 too, where rows of whole vectors alone take it (kStraddleLoad false; 112 =
//    4 x 24 + 16): the stem 0.96x the time on one thread and 0.91-0.97x on two, VGG-16's first layer 0.96x /
//    0.92-0.97x (AMD EPYC Zen 3, in turns in one process); with the blend, Inception's 5x5 16 -> 32 on 28x28 took
//    1.14-1.15x. Rows of whole panels keep rows: nothing to gain.
enum class Columns { grid, rows, exact };

#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
constexpr bool kExactColumns = true, kStraddleLoad = true;
#elif defined(__AVX2__) && CNNFAST_VEC_BYTES == 32
constexpr bool kExactColumns = true, kStraddleLoad = false;
#else
constexpr bool kExactColumns = false, kStraddleLoad = false;
#endif

inline Columns column_layout(const Conv2dShape& s, const PhaseGeometry& g) {
    if (phases_are_input(s) || g.Wph == s.ow) return Columns::grid;  // the grid is y's order already
    if (kExactColumns && s.ow % NR != 0 && s.ow >= VL && (kStraddleLoad || s.ow % VL == 0)) return Columns::exact;
    return ceil_div(s.ow, VL) * VL < g.Wph ? Columns::rows : Columns::grid;
}

// Whether the phase-split copy stays within a few times the image's input and output.
inline bool copy_fits(const Conv2dShape& s, const PhaseGeometry& g) {
    const double copy = double(s.c) * double(g.per_channel);
    return copy <= 4.0 * (double(s.c) * s.h * s.w + double(s.oc) * s.oh * s.ow) + double(1 << 20);
}
inline bool phases_fit(const Conv2dShape& s) { return copy_fits(s, phase_geometry(s)); }

// The images the direct GEMM reads: shifted where output rows are not whole vectors (the other layouts then
// compute padding columns or take a second, masked load for each vector that crosses a row's end), the copy
// fits, each input value lands in at most two of them (KW <= 2 SW), and there are 64 output channels or more;
// the phase images otherwise. In turns, input just rewritten, AMD EPYC Zen 5: 3x3/2 128 -> 128 on 56x56
// 0.90x the time on one thread, 0.95x on two, 0.83x at batch 8; 64 -> 64 on 112x112 0.85x / 0.94x;
// 32 -> 32 even. Where an input value lands in several images the B panels no longer share cache lines and
// the copy grows with them: 5x5 192 -> 32 on 28x28 1.36x, a 7x7/2 3 -> 64 on 200x200 1.12x, 16 -> 32 3x3/2
// 1.10x.
inline PhaseGeometry direct_geometry(const Conv2dShape& s) {
    const PhaseGeometry g = phase_geometry(s);
    if (phases_are_input(s) || g.Wph == s.ow || s.ow % VL == 0 || s.kw > 2 * s.stride_w || s.oc < 64) return g;
    const PhaseGeometry sg = shifted_geometry(s);
    return copy_fits(s, sg) ? sg : g;
}

// The lanes the channels-by-pixels GEMM computes per output channel of one image (its columns: NR panels,
// then whole vectors, or each row's whole vectors).
inline index_t gemm_lanes(const Conv2dShape& s, const PhaseGeometry& g) {
    const auto panels_then_vectors = [](index_t n) { return n / NR * NR + ceil_div(n % NR, VL) * VL; };
    switch (column_layout(s, g)) {
        case Columns::rows: return s.oh * ceil_div(s.ow, VL) * VL;
        case Columns::exact: return panels_then_vectors(s.oh * s.ow);
        default: return panels_then_vectors(g.N);
    }
}

// The column of the phase grid (rows of Wph columns) where output pixel p (rows of OW pixels) lies.
inline index_t grid_column(index_t p, index_t OW, index_t Wph) { return (p / OW) * Wph + p % OW; }

// Where the vectors of a panel of exact columns (first pixel q0) start, relative to a tap's row pointer,
// and which of their lanes lie in the next output row.
struct ExactPanel {
    index_t off[NV];
    unsigned next[NV];  // bit l: lane l is past the end of the first lane's output row
};

inline ExactPanel exact_panel(index_t q0, index_t OW, index_t E) {
    ExactPanel p;
    for (int j = 0; j < NV; ++j) {
        const index_t q = q0 + j * VL, left = OW - q % OW;  // lanes left in the row
        p.off[j] = grid_column(q, OW, OW + E);
        p.next[j] = left >= VL ? 0u : ~((1u << left) - 1u) & ((1u << VL) - 1u);
    }
    return p;
}

// B of the exact column layout, read in place from the phase images (see Columns::exact). Straddles: OW is not
// a multiple of VL, so a vector may take lanes from the next row.
template <bool Straddles>
struct ExactB {
    const float* const* rows;
    static constexpr bool kMaskedLoads = Straddles && CNNFAST_VEC_BYTES == 64;  // (see ukernel's store)
    index_t off[NV];  // the panel's offsets and masks by value: loop invariants, kept in registers
    unsigned next[NV];
    index_t E;  // Wph - OW
    ExactB(const float* const* rows_, const ExactPanel& p, index_t E_) : rows(rows_), E(E_) {
        for (int j = 0; j < NV; ++j) off[j] = p.off[j], next[j] = p.next[j];
    }
    const float* row(index_t k) const { return rows[k]; }
    vf vec(const float* r, int j) const {
        const float* p = r + off[j];
        if constexpr (!Straddles) return vload(p);
#if defined(__AVX512F__) && CNNFAST_VEC_BYTES == 64
        return (vf)_mm512_mask_loadu_ps((__m512)vload(p), static_cast<__mmask16>(next[j]), p + E);
#else  // correct, but not chosen (kExactColumns, kStraddleLoad)
        typedef int vi __attribute__((vector_size(kVecBytes)));
        vi lane;
        for (int l = 0; l < VL; ++l) lane[l] = (next[j] >> l) & 1u ? -1 : 0;
        const vf first = vload(p), second = vload(p + E);
        return lane ? second : first;
#endif
    }
    void prefetch(index_t) const {}
};

// The phase images of channels [c0, c1) of x (channel c of image n is channel n * C + c) into dst, channel c0
// first, shared out among the threads of the enclosing parallel region (an orphaned omp for: every thread of the
// region must call it).
inline void build_phases_of_channels(const Conv2dShape& s, const PhaseGeometry& g, const float* x, index_t c0,
                                     index_t c1, float* dst) {
    // NOTE: per (plane, row phase): AlexNet's first layer has 3 planes for 2 threads, but 12 such units.
#pragma omp for schedule(static)
    for (index_t u = 0; u < (c1 - c0) * s.stride_h; ++u) {
        const index_t pl = u / s.stride_h;
        build_phases(s, g, x + (c0 + pl) * s.h * s.w, u % s.stride_h, dst + pl * g.per_channel);
    }
}

// The phase images of images [n_begin, n_begin + n_count) of x into dst (as above).
inline void build_phases_of_images(const Conv2dShape& s, const PhaseGeometry& g, const float* x, index_t n_begin,
                                   index_t n_count, float* dst) {
    build_phases_of_channels(s, g, x, n_begin * s.c, (n_begin + n_count) * s.c, dst);
}

// rows[k] = where row k = (ci, ki, kj) of the im2col matrix starts in the phase images at `base` (one image and
// group), for output columns numbered q' = oh * Wph + ow.
inline void phase_rows(const Conv2dShape& s, const PhaseGeometry& g, const float* base, index_t K, const float** rows) {
    // NOTE: divisions only per tap of the first channel (a table of K pointers is built for every GEMM task).
    const index_t taps = imin(K, s.kh * s.kw);
    for (index_t r = 0; r < taps; ++r) {
        const index_t rh = (r / s.kw) * s.dil_h, rw = (r % s.kw) * s.dil_w;
        // the column image: the column phase and a shift within it, or (shifted) the column tap itself
        const index_t col_image = g.shifted ? r % s.kw : rw % s.stride_w, shift = g.shifted ? 0 : rw / s.stride_w;
        rows[r] = base + ((rh % s.stride_h) * g.col_images + col_image) * g.plane + (rh / s.stride_h) * g.Wph + shift;
    }
    for (index_t k = taps; k < K; ++k) rows[k] = rows[k - taps] + g.per_channel;
}

}  // namespace
}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
