// activation_math.h: the SwiGLU scalar math shared by the CUDA kernels and the CPU backend, so
// both backends round and saturate identically. Always evaluated in fp32.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define FSG_HD __host__ __device__ __forceinline__
#else
#define FSG_HD inline
#endif

namespace fsg {

// sigmoid(a) = 1 / (1 + exp(-a)). For a -> -inf, exp(-a) overflows to +inf and the result is +0,
// never NaN; for a -> +inf it is exactly 1. NaN propagates.
FSG_HD float sigmoidf_safe(float a) {
#if defined(__CUDA_ARCH__)
  return 1.0f / (1.0f + __expf(-a));
#else
  return 1.0f / (1.0f + std::exp(-a));
#endif
}

// silu(a) = a * sigmoid(a): silu(-1e4) = -1e4 * 0 = -0.
FSG_HD float siluf(float a) { return a * sigmoidf_safe(a); }

// d silu / da = s * (1 + a * (1 - s)), s = sigmoid(a). At a = -1e4: s = 0 -> 0 * (...) = -0,
// finite for every finite a because (1 + a*(1-s)) is finite.
FSG_HD float dsiluf(float a) {
  float s = sigmoidf_safe(a);
  return s * (1.0f + a * (1.0f - s));
}

}  // namespace fsg
