// FMA throughput probe for the avx2 path: the shared body, compiled with this ISA's flags.
#define CNNFAST_ISA_NS isa_avx2
#define CNNFAST_VEC_BYTES 32
#include "fma_probe_body.h"
