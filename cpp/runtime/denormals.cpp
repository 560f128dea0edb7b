// Denormal floats make some CPUs' FP units 10-100x slower; the kernels run with FTZ/DAZ set.
#include "cnnfast/runtime.h"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace cnnfast {

unsigned denormals_off() {
#if defined(__SSE2__)
    const unsigned prev = _mm_getcsr();
    _mm_setcsr(prev | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
    return prev;
#else
    return 0;
#endif
}

void denormals_restore(unsigned previous) {
#if defined(__SSE2__)
    _mm_setcsr(previous);
#else
    (void)previous;
#endif
}

}  // namespace cnnfast
