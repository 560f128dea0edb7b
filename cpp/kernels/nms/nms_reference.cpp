// The specification of box IoU and NMS: torchvision's greedy algorithm, written plainly (O(n^2)).
#include <algorithm>
#include <vector>

#include "cnnfast/cnnfast.h"
#include "nms_common.h"

namespace cnnfast {

namespace {
float iou_ref(const float* a, const float* b) {
    const float aa = (a[2] - a[0]) * (a[3] - a[1]), ab = (b[2] - b[0]) * (b[3] - b[1]);
    const float iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
    const float ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
    const float inter = std::max(iw, 0.f) * std::max(ih, 0.f);
    const float uni = aa + ab - inter;
    return uni > 0.f ? inter / uni : 0.f;
}
}  // namespace

void box_iou_f32_reference(index_t na, const float* a, index_t nb, const float* b, float* iou) {
    for (index_t i = 0; i < na; ++i)
        for (index_t j = 0; j < nb; ++j) iou[i * nb + j] = iou_ref(a + 4 * i, b + 4 * j);
}

index_t nms_f32_reference(index_t n, const float* boxes, const float* scores, const std::int64_t* class_ids,
                          const NmsOptions& opt, std::int64_t* keep) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    const index_t m = nms_candidates(n, scores, opt, order.data());
    std::vector<char> suppressed(static_cast<std::size_t>(m), 0);
    index_t kept = 0;
    for (index_t i = 0; i < m; ++i) {
        if (suppressed[i]) continue;
        if (opt.max_output >= 0 && kept >= opt.max_output) break;
        keep[kept++] = order[i];
        for (index_t j = i + 1; j < m; ++j) {
            if (suppressed[j]) continue;
            if (class_ids && class_ids[order[i]] != class_ids[order[j]]) continue;
            if (iou_ref(boxes + 4 * order[i], boxes + 4 * order[j]) > opt.iou_threshold) suppressed[j] = 1;
        }
    }
    return kept;
}

}  // namespace cnnfast
