// FMA throughput probe for the generic path: the shared body, compiled with this ISA's flags.
#define CNNFAST_ISA_NS isa_generic
#define CNNFAST_VEC_BYTES 16
#include "fma_probe_body.h"
