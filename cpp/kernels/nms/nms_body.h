// Internal: pairwise IoU and greedy NMS, compiled once per ISA. NMS checks each candidate against the boxes
// already kept (of its class), in vector chunks with an early exit, so clustered inputs, where few boxes
// survive, cost O(n * kept) rather than O(n^2).
#pragma once

#include <omp.h>

#include "../simd.h"
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

inline float iou_one(float ax1, float ay1, float ax2, float ay2, float aarea, float bx1, float by1, float bx2,
                     float by2, float barea) {
    const float iw = (ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1);
    const float ih = (ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1);
    const float inter = (iw > 0.f ? iw : 0.f) * (ih > 0.f ? ih : 0.f);
    const float uni = aarea + barea - inter;
    return uni > 0.f ? inter / uni : 0.f;
}

constexpr index_t kGridSwitch = 4096;

}  // namespace

void box_iou(index_t na, const float* a, index_t nb, const float* b, float* iou) {
    if (na == 0 || nb == 0) return;
    Scratch soa(static_cast<std::size_t>(5 * nb));
    float *bx1 = soa.p, *by1 = bx1 + nb, *bx2 = by1 + nb, *by2 = bx2 + nb, *bar = by2 + nb;
    for (index_t j = 0; j < nb; ++j) {
        bx1[j] = b[4 * j];
        by1[j] = b[4 * j + 1];
        bx2[j] = b[4 * j + 2];
        by2[j] = b[4 * j + 3];
        bar[j] = (bx2[j] - bx1[j]) * (by2[j] - by1[j]);
    }
    const int threads = na * nb < (1 << 14) ? 1 : get_num_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (index_t i = 0; i < na; ++i) {
        const float ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
        const float aar = (ax2 - ax1) * (ay2 - ay1);
        float* row = iou + i * nb;
#pragma omp simd
        for (index_t j = 0; j < nb; ++j) row[j] = iou_one(ax1, ay1, ax2, ay2, aar, bx1[j], by1[j], bx2[j], by2[j], bar[j]);
    }
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
    float *kx1 = soa.p, *ky1 = kx1 + m, *kx2 = ky1 + m, *ky2 = kx2 + m, *kar = ky2 + m;
    const index_t limit = opt.max_output < 0 ? m : imin(opt.max_output, m);
    const float thr = opt.iou_threshold;
    index_t kept = 0, kept_single = 0;
    constexpr index_t kChunk = 4 * VL;

    for (index_t i = 0; i < m && kept < limit; ++i) {
        // NOTE: the scan costs O(kept) per candidate: cheap while few boxes survive (clustered detections),
        // quadratic when many do. Once many have and many candidates remain, a spatial grid takes over.
        if (kept == kGridSwitch && m - i > kGridSwitch) {
            const index_t grid_kept = nms_grid(boxes, order.p, m, class_ids ? dense.p : nullptr, opt, keep);
            if (grid_kept >= 0) return grid_kept;
        }
        const std::int64_t idx = order.p[i];
        const float* bx = boxes + 4 * idx;
        const float x1 = bx[0], y1 = bx[1], x2 = bx[2], y2 = bx[3];
        const float area = (x2 - x1) * (y2 - y1);
        index_t begin = 0, count = kept_single;
        if (class_ids) {
            begin = offsets.p[dense.p[i]];
            count = filled.p[dense.p[i]];
        }
        bool suppressed = false;
        for (index_t j0 = begin; j0 < begin + count && !suppressed; j0 += kChunk) {
            const index_t j1 = imin(begin + count, j0 + kChunk);
            int hit = 0;
#pragma omp simd reduction(| : hit)
            for (index_t j = j0; j < j1; ++j)
                hit |= iou_one(kx1[j], ky1[j], kx2[j], ky2[j], kar[j], x1, y1, x2, y2, area) > thr;
            suppressed = hit != 0;
        }
        if (suppressed) continue;
        const index_t slot = begin + count;
        kx1[slot] = x1;
        ky1[slot] = y1;
        kx2[slot] = x2;
        ky2[slot] = y2;
        kar[slot] = area;
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
