// conv2d kernels (forward and backward) for the generic path: the shared body, compiled with this ISA's flags.
#define CNNFAST_ISA_NS isa_generic
#define CNNFAST_VEC_BYTES 16
#include "conv2d_body.h"
#include "conv2d_backward_body.h"
