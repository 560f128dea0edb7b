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
