#include "nms_common.h"

#include "cnnfast/runtime.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace cnnfast {

namespace {

// A key whose ascending unsigned order is the scores' descending order (NaN excluded beforehand); -0 and +0
// map to the same key, as they compare equal.
inline std::uint32_t descending_key(float s) {
    if (s == 0.f) s = 0.f;
    std::uint32_t u;
    std::memcpy(&u, &s, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // ascending in s
    return ~u;
}

}  // namespace

// NOTE: an LSD radix sort on the scores' bits, 8 at a time, carrying the indices: stable, so ties stay in
// ascending index, and linear in the candidates; a pass whose digit all keys share is skipped (scores in
// (0, 1] share their top byte). The bench's clustered NMS, Intel Xeon: 5,000 boxes 0.60 -> 0.29 ms, 20,000
// boxes 2.8 -> 1.3 ms (std::stable_sort on the scores took half).
index_t nms_candidates(index_t n, const float* scores, const NmsOptions& opt, std::int64_t* order) {
    Workspace<std::uint32_t> keys(static_cast<std::size_t>(2 * n));
    Workspace<std::int64_t> other(static_cast<std::size_t>(n));
    std::uint32_t *key = keys.get(), *key2 = key + n;
    index_t m = 0;
    for (index_t i = 0; i < n; ++i) {
        const float s = scores[i];
        if (s != s) continue;
        if (opt.has_score_threshold && !(s > opt.score_threshold)) continue;
        key[m] = descending_key(s);
        order[m++] = i;
    }
    if (m < 2) return m;
    index_t counts[4][256] = {};
    for (index_t i = 0; i < m; ++i)
        for (int d = 0; d < 4; ++d) ++counts[d][(key[i] >> (8 * d)) & 255u];
    std::int64_t *idx = order, *idx2 = other.get();
    for (int d = 0; d < 4; ++d) {
        index_t* c = counts[d];
        if (c[(key[0] >> (8 * d)) & 255u] == m) continue;  // one digit for all
        index_t sum = 0;
        for (int b = 0; b < 256; ++b) {
            const index_t t = c[b];
            c[b] = sum;
            sum += t;
        }
        for (index_t i = 0; i < m; ++i) {
            const index_t at = c[(key[i] >> (8 * d)) & 255u]++;
            key2[at] = key[i];
            idx2[at] = idx[i];
        }
        std::swap(key, key2);
        std::swap(idx, idx2);
    }
    if (idx != order) std::copy(idx, idx + m, order);
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

namespace cnnfast {

namespace {

inline float iou_pair(float ax1, float ay1, float ax2, float ay2, float aarea, const float* b, float barea) {
    const float iw = std::min(ax2, b[2]) - std::max(ax1, b[0]);
    const float ih = std::min(ay2, b[3]) - std::max(ay1, b[1]);
    const float inter = std::max(iw, 0.f) * std::max(ih, 0.f);
    const float uni = aarea + barea - inter;
    return uni > 0.f ? inter / uni : 0.f;
}

}  // namespace

index_t nms_grid(const float* boxes, const std::int64_t* order, index_t m, const std::int64_t* dense,
                 const NmsOptions& opt, std::int64_t* keep) {
    const float thr = opt.iou_threshold;
    if (!(thr >= 0.f) || m == 0) return -1;
    float minx = std::numeric_limits<float>::infinity(), miny = minx, maxx = -minx, maxy = -minx;
    double sum_w = 0, sum_h = 0;
    for (index_t i = 0; i < m; ++i) {
        const float* b = boxes + 4 * order[i];
        for (int c = 0; c < 4; ++c)
            if (!std::isfinite(b[c])) return -1;
        minx = std::min(minx, std::min(b[0], b[2]));
        maxx = std::max(maxx, std::max(b[0], b[2]));
        miny = std::min(miny, std::min(b[1], b[3]));
        maxy = std::max(maxy, std::max(b[1], b[3]));
        sum_w += std::fabs(b[2] - b[0]);
        sum_h += std::fabs(b[3] - b[1]);
    }
    // Cells about the size of a mean box, and no more of them than candidates.
    const double ext_w = std::max(1e-6, double(maxx) - minx), ext_h = std::max(1e-6, double(maxy) - miny);
    double cw = std::max(sum_w / m, ext_w / 4096), ch = std::max(sum_h / m, ext_h / 4096);
    while ((ext_w / cw + 1) * (ext_h / ch + 1) > 4.0 * m + 16) {
        cw *= 1.5;
        ch *= 1.5;
    }
    const index_t gx = static_cast<index_t>(ext_w / cw) + 1, gy = static_cast<index_t>(ext_h / ch) + 1;
    auto cell_x = [&](float v) { return std::min<index_t>(gx - 1, std::max<index_t>(0, static_cast<index_t>((v - minx) / cw))); };
    auto cell_y = [&](float v) { return std::min<index_t>(gy - 1, std::max<index_t>(0, static_cast<index_t>((v - miny) / ch))); };
    constexpr index_t kBig = 64;  // boxes covering more cells than this are checked by everyone

    // Each cell holds the kept boxes touching it, contiguous: x1, y1, x2, y2, area, class.
    struct Cell {
        std::vector<float> box;
        std::vector<std::int64_t> cls;
    };
    std::vector<Cell> cells(static_cast<std::size_t>(gx * gy));
    Cell big, all;
    const index_t limit = opt.max_output < 0 ? m : std::min(opt.max_output, m);
    index_t kept = 0;
    // A kept box suppresses when the boxes overlap (cheap test first) and their IoU is > thr, computed as the
    // kept-first formula of the exhaustive scan so both give the same bits.
    auto suppresses = [&](const Cell& c, const float* b, float area, std::int64_t cls) {
        const std::size_t count = c.cls.size();
        for (std::size_t j = 0; j < count; ++j) {
            const float* k = c.box.data() + 5 * j;
            if (k[2] <= b[0] || b[2] <= k[0] || k[3] <= b[1] || b[3] <= k[1]) continue;
            if (c.cls[j] != cls) continue;
            if (iou_pair(k[0], k[1], k[2], k[3], k[4], b, area) > thr) return true;
        }
        return false;
    };
    auto add = [](Cell& c, const float* b, float area, std::int64_t cls) {
        c.box.insert(c.box.end(), {b[0], b[1], b[2], b[3], area});
        c.cls.push_back(cls);
    };
    for (index_t i = 0; i < m && kept < limit; ++i) {
        const float* b = boxes + 4 * order[i];
        const float area = (b[2] - b[0]) * (b[3] - b[1]);
        const std::int64_t cls = dense ? dense[i] : 0;
        const index_t cx0 = cell_x(std::min(b[0], b[2])), cx1 = cell_x(std::max(b[0], b[2]));
        const index_t cy0 = cell_y(std::min(b[1], b[3])), cy1 = cell_y(std::max(b[1], b[3]));
        const bool wide = (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > kBig;
        bool suppressed;
        if (wide) {
            suppressed = suppresses(all, b, area, cls);
        } else {
            suppressed = suppresses(big, b, area, cls);
            for (index_t cy = cy0; cy <= cy1 && !suppressed; ++cy)
                for (index_t cx = cx0; cx <= cx1 && !suppressed; ++cx)
                    suppressed = suppresses(cells[cy * gx + cx], b, area, cls);
        }
        if (suppressed) continue;
        add(all, b, area, cls);
        if (wide) {
            add(big, b, area, cls);
        } else {
            for (index_t cy = cy0; cy <= cy1; ++cy)
                for (index_t cx = cx0; cx <= cx1; ++cx) add(cells[cy * gx + cx], b, area, cls);
        }
        keep[kept++] = order[i];
    }
    return kept;
}

}  // namespace cnnfast
