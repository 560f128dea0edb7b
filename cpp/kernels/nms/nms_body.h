// Internal: pairwise IoU and greedy NMS, compiled once per ISA. NMS checks each candidate against the boxes
// already kept (of its class), in vector chunks with an early exit, so clustered inputs, where few boxes
// survive, cost O(n * kept) rather than O(n^2).
#pragma once

#include <omp.h>

#include "../simd.h"
#include "../parallel.h"
#include "nms_common.h"
#include "runtime/kernel_table.h"

namespace cnnfast {
namespace CNNFAST_ISA_NS {
namespace {

struct ScratchI64 {
    explicit ScratchI64(std::size_t count)
        : bytes(count * sizeof(std::int64_t)), p(static_cast<std::int64_t*>(workspace_alloc(bytes))) {}
    ~ScratchI64() { workspace_free(p, bytes); }
    ScratchI64(const ScratchI64&) = delete;
    ScratchI64& operator=(const ScratchI64&) = delete;
    std::size_t bytes;
    std::int64_t* p;
};

// IoU of boxes a and b, one pair per lane for T = vf (the same operations, so the same bits, as for float).
// The division by 1 where the union is empty changes no result but lets whole vectors be divided unmasked.
template <class T>
inline T iou_of(T ax1, T ay1, T ax2, T ay2, T aarea, T bx1, T by1, T bx2, T by2, T barea) {
    const T zero{}, one = zero + 1.f;
    const T iw = (ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1);
    const T ih = (ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1);
    const T inter = (iw > zero ? iw : zero) * (ih > zero ? ih : zero);
    const T uni = aarea + barea - inter;
    return uni > zero ? inter / (uni > zero ? uni : one) : zero;
}

// Boxes as structure of arrays: x1, y1, x2, y2 and area, each array `stride` floats after the previous.
struct BoxesSoA {
    float* p;
    index_t stride;
    void set(index_t j, const float* box) {  // box j from (x1, y1, x2, y2), with its area
        for (int a = 0; a < 4; ++a) p[a * stride + j] = box[a];
        p[4 * stride + j] = (box[2] - box[0]) * (box[3] - box[1]);
    }
    // IoU of each box j, j + 1, ... with the box c (broadcast_box), of the first n only with kTail (the
    // others read as 0): the array's box first, as nms computes it, or c first (kCFirst), as box_iou does.
    template <bool kCFirst = false, bool kTail = false>
    vf iou(index_t j, const vf* c, index_t n = VL) const {
        const auto at = [&](int a) { return kTail ? vload_n(p + a * stride + j, n, 0.f) : vload(p + a * stride + j); };
        const vf x1 = at(0), y1 = at(1), x2 = at(2), y2 = at(3), area = at(4);
        return kCFirst ? iou_of<vf>(c[0], c[1], c[2], c[3], c[4], x1, y1, x2, y2, area)
                       : iou_of<vf>(x1, y1, x2, y2, area, c[0], c[1], c[2], c[3], c[4]);
    }
};
// Box (x1, y1, x2, y2) and its area in every lane.
inline void broadcast_box(const float* box, vf* v) {
    for (int a = 0; a < 4; ++a) v[a] = vbroadcast(box[a]);
    v[4] = vbroadcast((box[2] - box[0]) * (box[3] - box[1]));
}

// Whether a box among [begin, end) of `kept` has IoU above thr with the candidate c (kept box first, as the
// scalar reference computes it): four vectors between exits, so a candidate whose suppressor comes early
// stops early. The lanes past `end` are masked off (with a negative threshold even IoU 0 would count).
inline bool any_iou_above(const BoxesSoA& kept, index_t begin, index_t end, const vf* c, vf thr) {
    index_t j = begin;
    for (; j + 4 * VL <= end; j += 4 * VL) {
        const vmask hit = (kept.iou(j, c) > thr) | (kept.iou(j + VL, c) > thr) | (kept.iou(j + 2 * VL, c) > thr) |
                          (kept.iou(j + 3 * VL, c) > thr);
        if (vany(hit)) return true;
    }
    for (; j + VL <= end; j += VL)
        if (vany(kept.iou(j, c) > thr)) return true;
    return j < end && vany((kept.iou<false, true>(j, c, end - j) > thr) & vfirst_lanes(end - j));
}

constexpr index_t kGridSwitch = 4096;

}  // namespace

void box_iou(index_t na, const float* a, index_t nb, const float* b, float* iou) {
    if (na == 0 || nb == 0) return;
    Scratch soa(static_cast<std::size_t>(5 * nb));
    BoxesSoA bs{soa.p, nb};
    for (index_t j = 0; j < nb; ++j) bs.set(j, b + 4 * j);
    const int threads = na * nb < (1 << 14) ? 1 : get_num_threads();
    parallel_for(threads, na, [&](index_t i) {
        vf box[5];
        broadcast_box(a + 4 * i, box);
        float* row = iou + i * nb;
        index_t j = 0;
        for (; j + VL <= nb; j += VL) vstore(row + j, bs.iou<true>(j, box));
        if (j < nb) vstore_n(row + j, bs.iou<true, true>(j, box, nb - j), nb - j);
    });
}

index_t nms(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids, const NmsOptions& opt,
            std::int64_t* keep) {
    if (n == 0 || opt.max_output == 0) return 0;
    ScratchI64 order(static_cast<std::size_t>(n));
    const index_t m = nms_candidates(n, scores, opt, order.p);
    if (m == 0) return 0;

    // Kept boxes as structure-of-arrays, one region per class.
    ScratchI64 dense(class_ids ? static_cast<std::size_t>(m) : 0), offsets(class_ids ? static_cast<std::size_t>(m + 1) : 0),
        filled(class_ids ? static_cast<std::size_t>(m) : 0);
    index_t classes = 1;
    if (class_ids) {
        classes = nms_dense_classes(m, order.p, class_ids, dense.p, offsets.p);
        for (index_t c = 0; c < classes; ++c) filled.p[c] = 0;
    }
    Scratch soa(static_cast<std::size_t>(5 * m));
    BoxesSoA kept_boxes{soa.p, m};
    const index_t limit = opt.max_output < 0 ? m : imin(opt.max_output, m);
    const vf thr_v = vbroadcast(opt.iou_threshold);
    index_t kept = 0, kept_single = 0;

    for (index_t i = 0; i < m && kept < limit; ++i) {
        // NOTE: the scan costs O(kept) per candidate: cheap while few boxes survive (clustered detections),
        // quadratic when many do. Once many have and many candidates remain, a spatial grid takes over.
        if (kept == kGridSwitch && m - i > kGridSwitch) {
            const index_t grid_kept = nms_grid(boxes, order.p, m, class_ids ? dense.p : nullptr, opt, keep);
            if (grid_kept >= 0) return grid_kept;
        }
        const std::int64_t idx = order.p[i];
        const float* bx = boxes + 4 * idx;
        index_t begin = 0, count = kept_single;
        if (class_ids) {
            begin = offsets.p[dense.p[i]];
            count = filled.p[dense.p[i]];
        }
        vf cand[5];
        broadcast_box(bx, cand);
        if (any_iou_above(kept_boxes, begin, begin + count, cand, thr_v)) continue;
        kept_boxes.set(begin + count, bx);
        if (class_ids)
            ++filled.p[dense.p[i]];
        else
            ++kept_single;
        keep[kept++] = idx;
    }
    return kept;
}

}  // namespace CNNFAST_ISA_NS
}  // namespace cnnfast
