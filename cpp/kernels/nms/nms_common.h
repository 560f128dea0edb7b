// Internal: the ISA-independent half of NMS (filtering and ordering the candidates), built with baseline
// flags so its standard-library code is shared safely by every ISA's kernel.
#pragma once

#include "cnnfast/cnnfast.h"

namespace cnnfast {

// Writes to order the indices of the boxes that are candidates (score not NaN and, when asked, above the
// score threshold), by descending score with ties in ascending index. Returns how many.
index_t nms_candidates(index_t n, const float* scores, const NmsOptions& opt, std::int64_t* order);

// For each candidate order[i], its class as a dense index in [0, classes) written to dense[i]; counts per class
// prefix-summed into offsets[0..classes] (offsets must hold count + 1). Returns the number of classes.
index_t nms_dense_classes(index_t count, const std::int64_t* order, const std::int64_t* class_ids,
                          std::int64_t* dense, std::int64_t* offsets);

}  // namespace cnnfast

namespace cnnfast {

// Greedy NMS over candidates already in order (see nms_candidates), with kept boxes indexed in a uniform grid
// so each candidate is compared only with kept boxes near it: O(n) in practice rather than O(n * kept).
// Exact for iou_threshold >= 0 (a pair that does not overlap has IoU 0 and cannot suppress); returns -1
// without doing anything when it cannot be used (negative threshold, non-finite coordinates), so the caller
// falls back to the exhaustive scan. dense: class per candidate (or null for one class).
index_t nms_grid(const float* boxes, const std::int64_t* order, index_t m, const std::int64_t* dense,
                 const NmsOptions& opt, std::int64_t* keep);

}  // namespace cnnfast
