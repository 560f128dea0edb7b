// conv2d kernels (forward and backward) for the avx512 path: the shared body, compiled with this ISA's flags.
#define CNNFAST_ISA_NS isa_avx512
#define CNNFAST_VEC_BYTES 64
#include "conv2d_body.h"
#include "conv2d_backward_body.h"
