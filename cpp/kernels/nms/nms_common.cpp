#include "nms_common.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace cnnfast {

index_t nms_candidates(index_t n, const float* scores, const NmsOptions& opt, std::int64_t* order) {
    index_t m = 0;
    for (index_t i = 0; i < n; ++i) {
        const float s = scores[i];
        if (s != s) continue;
        if (opt.has_score_threshold && !(s > opt.score_threshold)) continue;
        order[m++] = i;
    }
    std::stable_sort(order, order + m, [scores](std::int64_t a, std::int64_t b) { return scores[a] > scores[b]; });
    return m;
}

index_t nms_dense_classes(index_t count, const std::int64_t* order, const std::int64_t* class_ids,
                          std::int64_t* dense, std::int64_t* offsets) {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(count));
    for (index_t i = 0; i < count; ++i) ids[i] = class_ids[order[i]];
    std::vector<std::int64_t> uniq(ids);
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    const index_t classes = static_cast<index_t>(uniq.size());
    std::fill(offsets, offsets + classes + 1, 0);
    for (index_t i = 0; i < count; ++i) {
        dense[i] = std::lower_bound(uniq.begin(), uniq.end(), ids[i]) - uniq.begin();
        ++offsets[dense[i] + 1];
    }
    std::partial_sum(offsets, offsets + classes + 1, offsets);
    return classes;
}

}  // namespace cnnfast
