// Multiply, add, subtract and divide rounded once and never contracted into an FMA, host and device: every
// backend then rounds the same intermediate values, so dropout_add and the activations are bit-identical across
// devices. On the device the _rn intrinsics, which nvcc never contracts; on the host plain operators (the host code
// is built with -ffp-contract=off).
#pragma once

#include "host_device.h"

namespace fused_dropout {

FD_HOST_DEVICE float fd_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FD_HOST_DEVICE double fd_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FD_HOST_DEVICE float fd_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FD_HOST_DEVICE double fd_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
FD_HOST_DEVICE float fd_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
FD_HOST_DEVICE double fd_sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
FD_HOST_DEVICE float fd_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
FD_HOST_DEVICE double fd_div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

}  // namespace fused_dropout
