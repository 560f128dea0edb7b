// Internal: max / average pooling and global average pooling, float32 NCHW, compiled once per ISA.
#pragma once

#include <omp.h>

#include "../simd.h"
#include "../parallel.h"
#include "runtime/kernel_table.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

// even[i] = t[2i], odd[i] = t[2i + 1] for 2i (+1) < n, with vector shuffles.
inline void deinterleave2(const float* __restrict t, index_t n, float* __restrict even, float* __restrict odd) {
    index_t i = 0;
    for (; 2 * i + 2 * VL <= n; i += VL) {
        vf e, o;
        vdeinterleave(vload(t + 2 * i), vload(t + 2 * i + VL), e, o);
        vstore(even + i, e);
        vstore(odd + i, o);
    }
    for (; 2 * i < n; ++i) {
        even[i] = t[2 * i];
        if (2 * i + 1 < n) odd[i] = t[2 * i + 1];
    }
}

// One plane, separably: the rows of each window are reduced into `tmp` (a padded row of Wext columns), then
// the columns, both as long vectorizable loops. Windows are clipped to the input (max) or divided by the
// forward's divisor (avg). Wext = (OW - 1) * SW + KW.
// tmp holds Wext floats, cols OW, even and odd Wext / 2 + 1 each.
template <PoolKind KIND>
void pool_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp, float* __restrict tmp,
                float* __restrict cols, float* __restrict even, float* __restrict odd) {
    const index_t H = s.h, W = s.w, SW = s.stride_w, KW = s.kw, PW = s.pad_w;
    const index_t wext = (s.ow - 1) * SW + KW;
    const float identity = KIND == PoolKind::max ? -__builtin_inff() : 0.f;
    if (KIND == PoolKind::avg)
        for (index_t ow = 0; ow < s.ow; ++ow) {
            const index_t w0 = ow * SW - PW;
            cols[ow] = static_cast<float>(s.count_include_pad ? imin(w0 + KW, W + PW) - w0 : imin(w0 + KW, W) - imax(w0, 0));
        }
    const index_t lo = imin(PW, wext), hi = imin(PW + W, wext);  // tmp columns backed by the input
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const index_t h0 = oh * s.stride_h - s.pad_h;
        const index_t hs = imax(h0, 0), he = imin(h0 + s.kh, H);
        for (index_t j = 0; j < lo; ++j) tmp[j] = identity;
        for (index_t j = hi; j < wext; ++j) tmp[j] = identity;
        if (hs >= he) {
            for (index_t j = lo; j < hi; ++j) tmp[j] = identity;
        } else {
            const float* x0 = xp + hs * W - PW;
            index_t ih = hs + 1;
            if (KIND == PoolKind::max && he - hs >= 3) {  // three rows in one pass
                const float *x1 = x0 + W, *x2 = x1 + W;
#pragma omp simd
                for (index_t j = lo; j < hi; ++j) tmp[j] = max_nan(max_nan(x0[j], x1[j]), x2[j]);
                ih = hs + 3;
            } else {
#pragma omp simd
                for (index_t j = lo; j < hi; ++j) tmp[j] = x0[j];
            }
            for (; ih < he; ++ih) {
                const float* xr = xp + ih * W - PW;
                if (KIND == PoolKind::max) {
#pragma omp simd
                    for (index_t j = lo; j < hi; ++j) tmp[j] = max_nan(tmp[j], xr[j]);
                } else {
#pragma omp simd
                    for (index_t j = lo; j < hi; ++j) tmp[j] += xr[j];
                }
            }
        }
        float* yr = yp + oh * s.ow;
        for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = identity;
        // Stride 2: split tmp into its even and odd columns, so every tap is a contiguous run.
        const float* src = tmp;
        index_t step = SW;
        if (SW == 2) {
            deinterleave2(tmp, wext, even, odd);
            step = 1;
        }
        for (index_t kj = 0; kj < KW; ++kj) {
            const float* t = SW == 2 ? ((kj & 1) ? odd : even) + kj / 2 : src + kj;
            if (KIND == PoolKind::max) {
                if (step == 1) {
#pragma omp simd
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = max_nan(yr[ow], t[ow]);
                } else {
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] = max_nan(yr[ow], t[ow * step]);
                }
            } else {
                if (step == 1) {
#pragma omp simd
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] += t[ow];
                } else {
                    for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] += t[ow * step];
                }
            }
        }
        if (KIND == PoolKind::avg) {
            const float rows = static_cast<float>(s.count_include_pad ? imin(h0 + s.kh, H + s.pad_h) - h0 : he - hs);
            for (index_t ow = 0; ow < s.ow; ++ow) yr[ow] /= rows * cols[ow];
        }
    }
}

// One plane, window by window, each clipped to the input: for kernels far wider than the image.
void pool_plane_windows(PoolKind kind, const Pool2dShape& s, const float* __restrict xp, float* __restrict yp) {
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const index_t h0 = oh * s.stride_h - s.pad_h, hs = imax(h0, 0), he = imin(h0 + s.kh, s.h);
        for (index_t ow = 0; ow < s.ow; ++ow) {
            const index_t w0 = ow * s.stride_w - s.pad_w, ws = imax(w0, 0), we = imin(w0 + s.kw, s.w);
            float acc = kind == PoolKind::max ? -__builtin_inff() : 0.f;
            for (index_t ih = hs; ih < he; ++ih)
                for (index_t iw = ws; iw < we; ++iw) {
                    const float v = xp[ih * s.w + iw];
                    acc = kind == PoolKind::max ? max_nan(acc, v) : acc + v;
                }
            if (kind == PoolKind::avg) {
                const double count = s.count_include_pad
                                         ? double(imin(h0 + s.kh, s.h + s.pad_h) - h0) * double(imin(w0 + s.kw, s.w + s.pad_w) - w0)
                                         : double(he - hs) * double(we - ws);
                acc = count > 0 ? static_cast<float>(acc / count) : 0.f;
            }
            yp[oh * s.ow + ow] = acc;
        }
    }
}

// Max pooling with 2x2 or 3x3 windows, stride 1 or 2, padding 0 or 1 (LeNet's, VGG's, ResNet's and GoogLeNet's
// pools), a vector of outputs at a time, in registers: the window's rows are maxed column-wise over the input
// columns the vector's windows cover (loads masked to the input's columns, -inf elsewhere, so windows are
// clipped as with -inf padding), then its K taps are taken from those as whole vectors (stride 2: even and
// odd lanes; a shift by one lane for the third tap). Nothing goes through memory between the two passes (a
// store followed by an unaligned load of the same row would stall on store forwarding) and every row ends in
// a masked store instead of a scalar tail.
inline bool max_pool_rows_applies(const Pool2dShape& s) {
    const index_t K = s.kh, S = s.stride_h, P = s.pad_h;
    return s.kw == K && (K == 2 || K == 3) && s.stride_w == S && (S == 1 || S == 2) && s.pad_w == P && P <= K / 2;
}

// NOTE: the max pooling kernels below (rows and flat) ask for the input kPoolAhead floats (8 KiB) ahead of
// what they read. In a network a pool's input is a convolution's output larger than L2 (GoogLeNet's stride-2
// pools read 0.6-3.2 MB at batch 1), and the hardware prefetchers of a core that has just run other work
// fetch it far too slowly: the same pool took 0.14 ms when called back to back and 0.3-0.67 ms when called
// after other work, ONNX Runtime's kernel alike. With the prefetch, in GoogLeNet, in turns (AMD EPYC Zen 5):
// its pools 0.46-0.53x the time at batch 8 (forward 0.90-0.91x, one and two threads), 0.63x at batch 1 on
// one thread; ResNet-50's 0.58x. 512 to 2048 floats ahead did about as well; 4096 and 8192 less. The
// prefetch is an ordinary one (into L1 and L2), not a non-temporal one (prefetchnta, with which those
// measurements were made): on an Intel Xeon (Ice Lake, model 106) the non-temporal prefetch made the pools
// 2.7-3.4x slower than no prefetch at all (3x3/2 on 64x112x112 0.50 ms against 0.145 with its input in L3,
// 0.78 against 0.42 with the caches evicted first; 2x2/2 on 64x224x224 2.29 against 0.80), where the ordinary
// one is as fast as none (0.142 and 0.42 ms; into L2 only, 0.21 ms).
constexpr index_t kPoolAhead = 2048;
// The input is asked for ahead by prefetch_ahead (simd.h); the output line `floats` past p, to be written, by
// this, where it lies before `stop` (the end of this thread's output): a write prefetch takes the line from any
// other core that holds it, and past that end lie another thread's output or other arrays in use.
// NOTE: in a network a pool's output is a block from the buffer cache whose lines have long left L2, and the
// stores wait on them. Asking for them a little ahead (the vector-row kernel two output rows on, the flat one
// four lines on), in GoogLeNet's forward pass at batch 1, each pass with and without in turns in one process,
// Intel Xeon (model 167): one thread, its pools 0.90x the time (the flat ones on 14x14 and 28x28 0.69-0.88x,
// 3x3/2 on 64 x 112x112 0.87-0.95x), two threads 0.96x (512 and 528 x 14x14 1.07-1.12x, the others 0.84-0.97x);
// ResNet-50's pool 0.92x / 0.93x. Back to back, with the output in L2, the same. The flat kernel asking 2048
// floats ahead (as for its input) took 0.69-0.78x on one thread but 1.7-2.5x on two (512 and 528 x 14x14).
inline void prefetch_ahead_w(const float* p, index_t floats, const float* stop) {
    const std::uintptr_t a = address_past(p, floats);
    if (a < reinterpret_cast<std::uintptr_t>(stop)) __builtin_prefetch(reinterpret_cast<const void*>(a), 1, 3);
}
template <int K, int S>
void max_pool_rows_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp, const float* y_stop) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi next, next2;  // lanes 1..VL and 2..VL + 1 of a:b
    for (int i = 0; i < VL; ++i) {
        next[i] = i + 1;
        next2[i] = i + 2;
    }
    const float ninf = -__builtin_inff();
    const index_t H = s.h, W = s.w, P = s.pad_h, OW = s.ow;
    for (index_t oh = 0; oh < s.oh; ++oh) {
        const index_t r0 = oh * S - P, lo = imax(r0, 0), hi = imin(r0 + K, H);
        const float* x0 = xp + lo * W;
        const index_t rows = hi - lo;
        // the rows this output row's successor adds, kPoolAhead floats on
        for (index_t off = 0; off < S * W; off += kLineFloats) prefetch_ahead(xp, (lo + K) * W + kPoolAhead + off);
        for (index_t off = 0; off < OW; off += kLineFloats) prefetch_ahead_w(yp, (oh + 2) * OW + off, y_stop);
        // column-wise max of the window's rows over input columns [c, c + VL)
        // (columns wholly past the row's end, which the last vector of a stride-2 row often is, are -inf
        // without loads: GoogLeNet's 3x3/2 pool on 28x28 reads 2 vectors a row, not 3; its stride-2 pools
        // 0.87-0.92x the time, one or two threads, in turns in one process)
        auto column_max = [&](index_t c) {
            if (c >= W) return vbroadcast(ninf);
            if (rows == K) {
                vf m = vmax_nan(vload_cols(x0, c, W, ninf), vload_cols(x0 + W, c, W, ninf));
                return K == 3 ? vmax_nan(m, vload_cols(x0 + 2 * W, c, W, ninf)) : m;
            }
            vf m = vbroadcast(ninf);
            for (index_t r = 0; r < rows; ++r) m = vmax_nan(m, vload_cols(x0 + r * W, c, W, ninf));
            return m;
        };
        float* y = yp + oh * OW;
        vf carry = vbroadcast(ninf);
        for (index_t j = 0; j < OW; j += VL) {
            const index_t c = S * j - P;  // first input column of this vector's windows
            // the previous vector's last input vector is this one's first (not with 2x2 stride 2)
            const vf a = j > 0 && !(S == 2 && K == 2) ? carry : column_max(c);
            const vf b = column_max(c + VL);
            vf out;
            if (S == 1) {
                out = vmax_nan(a, __builtin_shuffle(a, b, next));
                if (K == 3) out = vmax_nan(out, __builtin_shuffle(a, b, next2));
                carry = b;
            } else {
                vf even, odd;
                vdeinterleave(a, b, even, odd);
                out = vmax_nan(even, odd);
                if (K == 3) {
                    carry = column_max(c + 2 * VL);
                    out = vmax_nan(out, __builtin_shuffle(even, carry, next));
                }
            }
            vstore_n(y + j, out, imin(VL, OW - j));
        }
    }
}

void max_pool_rows(const Pool2dShape& s, const float* xp, float* yp, const float* y_stop) {
    const int k = static_cast<int>(s.kh), st = static_cast<int>(s.stride_h);
    if (k == 2 && st == 1) return max_pool_rows_plane<2, 1>(s, xp, yp, y_stop);
    if (k == 2 && st == 2) return max_pool_rows_plane<2, 2>(s, xp, yp, y_stop);
    if (k == 3 && st == 1) return max_pool_rows_plane<3, 1>(s, xp, yp, y_stop);
    return max_pool_rows_plane<3, 2>(s, xp, yp, y_stop);
}

// 2x2 stride-2 max pooling without padding on planes of even height and width whose output rows hold at most
// 8 floats (LeNet-5's second pool, on 10x10; GoogLeNet's on 832 x 14x14; VGG-16's last), or with AVX2 at most
// 32 (LeNet-5's first, on 28x28; VGG-16's fourth and third, on 28x28 and 56x56). Row by row, each
// output row a fraction of a vector, the work of a row (its prefetch, masks and loop) cost more than its
// maxima. No window crosses a pair of rows, and with an even width no pair of columns crosses a row, so the
// planes back to back are one sequence of row pairs: the maxima of the column pairs of a run of row pairs
// are taken over its input as one flat array, whole vectors, then each row pair's two rows of those are
// maxed into its output row.
// NOTE: in turns of processes on an Intel Xeon (model 167), one / two threads: 64 x 16 x 10x10 (LeNet-5 at
// batch 64) 37.6-37.9 -> 18.5-18.6 us / 20.4-21.0 -> 10.2-12.8 us, 832 x 14x14 41.2-41.7 -> 24.5 us / 22.2-22.8
// -> 13.2-16.2 us, 512 x 14x14 25.7-26.5 -> 15.0-15.4 us, at batch 8 206-207 -> 148 us. Output rows of 14
// (28x28 planes), a vector a row either way, gained nothing (LeNet-5's first pool 35-36 us both ways) or lost
// (512 x 28x28 48 -> 55-56 us), so with AVX-512 they stay row by row. With AVX2 such a row takes a whole and a
// masked vector, and the flat pass wins: in separate processes in turns on an AMD EPYC (Zen 3), one / two
// threads, 64 x 6 x 28x28 0.65-0.71x / 0.76x the time, 512 x 28x28 0.73x / 0.74x (0.81x at batch 8 on two),
// 256 x 56x56 (rows of 28) 0.80-0.94x / 0.88x; 128 x 112x112 (rows of 56) 0.91-0.99x and 64 x 224x224 worse,
// so those stay row by row.
constexpr index_t kPairRun = 64;       // row pairs per run at most
constexpr index_t kPairFloats = 2048;  // a run's column-pair maxima (8 KiB), which stay in L1
constexpr index_t kPairMaxOW = VL == 8 ? 32 : 8;
inline bool max_pool_pairs_applies(const Pool2dShape& s) {
    return s.kh == 2 && s.kw == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 && s.pad_w == 0 &&
           s.oh * 2 == s.h && s.ow * 2 == s.w && s.ow <= kPairMaxOW;
}
// row pairs per run: as many as fit kPairFloats, up to kPairRun
inline index_t pair_run(const Pool2dShape& s) { return imax(1, imin(kPairRun, kPairFloats / (2 * s.ow))); }

// Output rows [r0, r0 + n) of all the planes (row r: plane r / OH, its row r % OH), n <= pair_run(s).
void max_pool_pairs(const Pool2dShape& s, const float* __restrict x, float* __restrict y, index_t r0, index_t n) {
    const index_t W = s.w, OW = s.ow, count = n * W;  // n row pairs: n * 2 rows of OW column-pair maxima
    const float* const xs = x + r0 * 2 * W;
    alignas(64) float h[kPairFloats];
    index_t k = 0;
    for (; k + VL <= count; k += VL) {
        vf even, odd;
        vdeinterleave(vload(xs + 2 * k), vload(xs + 2 * k + VL), even, odd);
        vstore(h + k, vmax_nan(even, odd));
    }
    for (; k < count; ++k) h[k] = max_nan(xs[2 * k], xs[2 * k + 1]);
    float* const ys = y + r0 * OW;
    for (index_t i = 0; i < n; ++i) {
        const float* const top = h + i * 2 * OW;
        for (index_t c = 0; c < OW; c += VL) {
            const index_t m = imin(VL, OW - c);
            vstore_n(ys + i * OW + c, vmax_nan(vload_n(top + c, m, 0.f), vload_n(top + OW + c, m, 0.f)), m);
        }
    }
}

// 3x3 stride-1 max pooling padded by 1 (the output the input's size: Inception's pool branches) of a plane
// whose rows are narrower than two vectors, flat: VL pixels at a time wherever the rows break (a 14x14 plane
// is 13 vectors; row by row it takes 14 of which an eighth of the lanes are used). Each vector's column
// maxima (the rows above and below masked to -inf on the plane's first and last row) are computed once; the
// left and right taps are those of the previous and next vector shifted by a lane, -inf in the first and
// last column.
inline bool max_pool_flat_applies(const Pool2dShape& s) {
    return kVecBytes >= 32 && s.kh == 3 && s.kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 1 &&
           s.pad_w == 1 && s.oh == s.h && s.ow == s.w && s.w < 2 * VL && s.h * s.w < (index_t(1) << 30);
}

typedef int vi_flat __attribute__((vector_size(kVecBytes)));

// The columns of a plane's first VL pixels (i % W), once per call: a division per lane and plane would cost
// more than the plane's maxima.
inline vi_flat flat_first_columns(index_t W) {
    vi_flat col;
    for (int i = 0; i < VL; ++i) col[i] = static_cast<int>(i % W);
    return col;
}

void max_pool_flat_plane(const Pool2dShape& s, const float* __restrict xp, float* __restrict yp, vi_flat col,
                         const float* y_stop) {
    typedef vi_flat vi;
    const index_t W = s.w, HW = s.h * s.w;
    const int w = static_cast<int>(W), hw = static_cast<int>(HW), step = VL % w;
    const float ninf = -__builtin_inff();
    const vf ninfv = vbroadcast(ninf);
    vi lane, before, after;  // pixel p0 + i; lanes VL - 1 .. 2 VL - 2 and 1 .. VL of a:b
    for (int i = 0; i < VL; ++i) {
        lane[i] = i;
        before[i] = VL - 1 + i;
        after[i] = i + 1;
    }
    // max of the pixels p, p - W and p + W that are in the plane, for p in [p0, p0 + VL)
    auto column_max = [&](index_t p0) {
        const float* c = xp + p0;
        if (p0 >= W && p0 + VL + W <= HW) return vmax_nan(vmax_nan(vload(c - W), vload(c)), vload(c + W));
        const vi pix = lane + static_cast<int>(p0), in = pix < hw;
        return vmax_nan(vmax_nan(vload_mask(c - W, in & (pix >= w), ninf), vload_mask(c, in, ninf)),
                        vload_mask(c + W, pix < hw - w, ninf));
    };
    vf prev = ninfv, cur = column_max(0);
    for (index_t p0 = 0; p0 < HW; p0 += VL) {
        prefetch_ahead(xp, p0 + W + kPoolAhead);  // a line per vector: the one kPoolAhead on
        prefetch_ahead_w(yp, p0 + 4 * kLineFloats, y_stop);
        const vf next = p0 + VL < HW ? column_max(p0 + VL) : ninfv;
        const vf left = col != 0 ? __builtin_shuffle(prev, cur, before) : ninfv;
        const vf right = col != w - 1 ? __builtin_shuffle(cur, next, after) : ninfv;
        vstore_n(yp + p0, vmax_nan(vmax_nan(left, cur), right), imin(VL, HW - p0));
        prev = cur;
        cur = next;
        col += step;
        col = col >= w ? col - w : col;
    }
}

}  // namespace

void pool2d(PoolKind kind, const Pool2dShape& s, const float* x, float* y) {
    const index_t planes = s.n * s.c;
    if (planes == 0 || s.oh == 0 || s.ow == 0) return;
    const int threads = planes * s.h * s.w < (1 << 15) ? 1 : get_num_threads();
    const index_t wext = (s.ow - 1) * s.stride_w + s.kw;
    // NOTE: the separable passes need a row as wide as the padded windows; kernels far wider than the image
    // (allowed: the padding may be half the kernel) take the per-window path instead.
    const bool separable = wext <= 4 * s.w + 1024;
    if (kind == PoolKind::max && max_pool_pairs_applies(s)) {
        const index_t rows = planes * s.oh, run = pair_run(s), runs = ceil_div(rows, run);
        parallel(threads, [&] {
#pragma omp for schedule(static)
            for (index_t r = 0; r < runs; ++r) max_pool_pairs(s, x, y, r * run, imin(run, rows - r * run));
        });
        return;
    }
    const bool flat = kind == PoolKind::max && max_pool_flat_applies(s);
    const bool rows = kind == PoolKind::max && !flat && max_pool_rows_applies(s);
    const index_t half = wext / 2 + 1;
    const index_t scratch = rows || flat ? 0 : separable ? wext + s.ow + 2 * half : 0;
    PerThread<float> tmps(threads, static_cast<std::size_t>(scratch));
    const vi_flat first_columns = flat ? flat_first_columns(s.w) : vi_flat{};
    parallel(threads, [&] {
        float* const tmp = tmps.get();
        float *cols = tmp + wext, *even = cols + s.ow, *odd = even + half;
        // this thread's planes, one run, so that its output ends where the next thread's begins (y_stop)
        const index_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
        const index_t p_end = planes * (tid + 1) / nth;
        const float* const y_stop = y + p_end * s.oh * s.ow;
        for (index_t p = planes * tid / nth; p < p_end; ++p) {
            const float* xp = x + p * s.h * s.w;
            float* yp = y + p * s.oh * s.ow;
            if (flat)
                max_pool_flat_plane(s, xp, yp, first_columns, y_stop);
            else if (rows)
                max_pool_rows(s, xp, yp, y_stop);
            else if (!separable)
                pool_plane_windows(kind, s, xp, yp);
            else if (kind == PoolKind::max)
                pool_plane<PoolKind::max>(s, xp, yp, tmp, cols, even, odd);
            else
                pool_plane<PoolKind::avg>(s, xp, yp, tmp, cols, even, odd);
        }
    });
}

// Sums of planes: [u's groups of G lanes folded to G / 2, v's folded likewise]; lane order is kept, so VL
// vectors of one plane each fold, pair by pair over log2(VL) levels, into one vector of VL planes' sums.
template <int G>
inline vf fold_pair(vf u, vf v) {
    typedef int vi __attribute__((vector_size(kVecBytes)));
    vi lo, hi;
    for (int l = 0; l < VL; ++l) {
        const int base = l < VL / 2 ? 0 : VL, r = l % (VL / 2), j = r / (G / 2), t = r % (G / 2);
        lo[l] = base + j * G + t;
        hi[l] = base + j * G + G / 2 + t;
    }
    return __builtin_shuffle(u, v, lo) + __builtin_shuffle(u, v, hi);
}

template <int G>
inline void fold_all(vf* a, int count) {
    if constexpr (G > 1) {
        for (int i = 0; i < count / 2; ++i) a[i] = fold_pair<G>(a[2 * i], a[2 * i + 1]);
        fold_all<G / 2>(a, count / 2);
    }
}

inline float plane_sum(const float* xp, index_t hw) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (index_t i = 0; i < hw; ++i) acc += xp[i];
    return acc;
}

// NOTE: small planes (ResNet's and GoogLeNet's 7x7) are summed VL at a time: a vector per plane, then one
// shuffle tree instead of a horizontal sum per plane, whose latency otherwise sets the pace (49 floats in
// about 30 cycles).
void global_avg_pool(index_t planes, index_t hw, const float* x, float* y) {
    if (planes == 0) return;
    const int threads = planes * hw < (1 << 15) ? 1 : get_num_threads();
    const float inv = hw > 0 ? 1.0f / static_cast<float>(hw) : 0.f;
    const bool grouped = hw > 0 && hw <= 8 * VL;
    const index_t groups = grouped ? planes / VL : 0, full = hw / VL * VL;
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t gi = 0; gi < groups; ++gi) {
            vf a[VL];
            for (int i = 0; i < VL; ++i) {
                const float* xp = x + (gi * VL + i) * hw;
                vf acc = vload_n(xp + full, hw - full, 0.f);
                for (index_t j = 0; j < full; j += VL) acc += vload(xp + j);
                a[i] = acc;
            }
            fold_all<VL>(a, VL);
            vstore(y + gi * VL, a[0] * vbroadcast(inv));
        }
#pragma omp for schedule(static)
        for (index_t p = groups * VL; p < planes; ++p) y[p] = hw > 0 ? plane_sum(x + p * hw, hw) * inv : __builtin_nanf("");
    });
}

// dx = d(pool)/dx^T dy. Max pooling sends each output's gradient to the first maximum of its window (the
// last NaN if any), as PyTorch does; average pooling spreads it over the window with the forward's divisor.
void pool2d_backward(PoolKind kind, const Pool2dShape& s, const float* x, const float* dy, float* dx) {
    const index_t planes = s.n * s.c, HW = s.h * s.w;
    if (planes == 0 || HW == 0) return;
    const int threads = get_num_threads();
    parallel(threads, [&] {
#pragma omp for schedule(static)
        for (index_t p = 0; p < planes; ++p) {
            const float* xp = x + p * HW;
            const float* dyp = dy + p * s.oh * s.ow;
            float* dxp = dx + p * HW;
            for (index_t i = 0; i < HW; ++i) dxp[i] = 0.f;
            for (index_t oh = 0; oh < s.oh; ++oh) {
                const index_t h0 = oh * s.stride_h - s.pad_h;
                const index_t hs = imax(h0, 0), he = imin(h0 + s.kh, s.h);
                for (index_t ow = 0; ow < s.ow; ++ow) {
                    const index_t w0 = ow * s.stride_w - s.pad_w;
                    const index_t ws = imax(w0, 0), we = imin(w0 + s.kw, s.w);
                    const float g = dyp[oh * s.ow + ow];
                    if (kind == PoolKind::max) {
                        // PyTorch's rule: start at the window's first element, move on `v > m || isnan(v)`
                        index_t arg = hs * s.w + ws;
                        float m = -__builtin_inff();
                        for (index_t ih = hs; ih < he; ++ih)
                            for (index_t iw = ws; iw < we; ++iw) {
                                const float v = xp[ih * s.w + iw];
                                if (v > m || v != v) {
                                    m = v;
                                    arg = ih * s.w + iw;
                                }
                            }
                        if (hs < he && ws < we) dxp[arg] += g;
                    } else {
                        const index_t h_end_pad = imin(h0 + s.kh, s.h + s.pad_h),
                                      w_end_pad = imin(w0 + s.kw, s.w + s.pad_w);
                        const index_t count = s.count_include_pad ? (h_end_pad - h0) * (w_end_pad - w0)
                                                                  : (he - hs) * (we - ws);
                        if (count <= 0) continue;
                        const float share = g / static_cast<float>(count);
                        for (index_t ih = hs; ih < he; ++ih)
                            for (index_t iw = ws; iw < we; ++iw) dxp[ih * s.w + iw] += share;
                    }
                }
            }
        }
    });
}

void global_avg_pool_backward(index_t planes, index_t hw, const float* dy, float* dx) {
    if (planes == 0 || hw == 0) return;
    const int threads = planes * hw < (1 << 16) ? 1 : get_num_threads();
    const float inv = 1.0f / static_cast<float>(hw);
    parallel_for(threads, planes, [&](index_t p) {
        const float g = dy[p] * inv;
        float* d = dx + p * hw;
#pragma omp simd
        for (index_t i = 0; i < hw; ++i) d[i] = g;
    });
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
