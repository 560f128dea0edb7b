// FMA throughput probe for the avx512 path: the shared body, compiled with this ISA's flags.
#define CNNFAST_ISA_NS isa_avx512
#define CNNFAST_VEC_BYTES 64
#include "fma_probe_body.h"
