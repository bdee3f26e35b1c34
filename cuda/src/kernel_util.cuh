// kernel_util.cuh: small pieces shared by every CUDA kernel file of the library:
//   - Elem<D>: the element type of each DType, to_f32 / from_f32 (round-to-nearest-even);
//   - Pair<T>: two adjacent 16-bit elements as one 4-byte value, to and from float2;
//   - MatRef / VecRef: strided views as kernel parameters, with scalar fp32 loads and stores
//     (VecRef keeps a runtime dtype: token weights may be F32 while the matrices are BF16);
//   - launch_status(): the cudaGetLastError() check after every launch; clamp_grid() for grid sizes.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend.h"

namespace fsg {

template <DType D> struct Elem;
template <> struct Elem<DType::F32> { using T = float; };
template <> struct Elem<DType::F16> { using T = __half; };
template <> struct Elem<DType::BF16> { using T = __nv_bfloat16; };

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Two adjacent 16-bit elements as one 4-byte value (the epilogues' paired stores).
template <class T> struct Pair;
template <> struct Pair<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static __device__ __forceinline__ T2 make(float a, float b) { return __floats2bfloat162_rn(a, b); }
  static __device__ __forceinline__ float2 split(T2 v) { return __bfloat1622float2(v); }
};
template <> struct Pair<__half> {
  using T2 = __half2;
  static __device__ __forceinline__ T2 make(float a, float b) { return __floats2half2_rn(a, b); }
  static __device__ __forceinline__ float2 split(T2 v) { return __half22float2(v); }
};

// A strided matrix view with the element type fixed by the kernel's template.
struct MatRef {
  void* p;
  int64_t rs, cs;
  template <class T> __device__ __forceinline__ float load(int64_t r, int64_t c) const {
    return to_f32(static_cast<const T*>(p)[r * rs + c * cs]);
  }
  template <class T> __device__ __forceinline__ void store(int64_t r, int64_t c, float v) const {
    static_cast<T*>(p)[r * rs + c * cs] = from_f32<T>(v);
  }
};

inline MatRef mat_ref(const Mat& m) { return MatRef{m.data, m.rs, m.cs}; }

// A strided vector whose dtype is only known at run time; p == nullptr means absent.
struct VecRef {
  void* p;
  int64_t stride;
  DType dtype;
  __device__ __forceinline__ float load(int64_t i) const {
    const int64_t o = i * stride;
    switch (dtype) {
      case DType::F16: return __half2float(static_cast<const __half*>(p)[o]);
      case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[o]);
      default: return static_cast<const float*>(p)[o];
    }
  }
  // Absent vectors read as `dflt` (0 for biases, 1 for token weights).
  __device__ __forceinline__ float load_or(int64_t i, float dflt) const { return p ? load(i) : dflt; }
  __device__ __forceinline__ void store(int64_t i, float v) const {
    const int64_t o = i * stride;
    switch (dtype) {
      case DType::F16: static_cast<__half*>(p)[o] = __float2half_rn(v); break;
      case DType::BF16: static_cast<__nv_bfloat16*>(p)[o] = __float2bfloat16_rn(v); break;
      default: static_cast<float*>(p)[o] = v; break;
    }
  }
};

inline VecRef vec_ref(const Vec& v) { return VecRef{v.data, v.stride, v.dtype}; }

// After a launch: FSG_OK, or the error (named after the kernel) in fsg_last_error().
inline fsg_status launch_status(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return FSG_OK;
  set_error("%s: launch failed: %s (%s)", kernel, cudaGetErrorName(e), cudaGetErrorString(e));
  return e == cudaErrorMemoryAllocation ? FSG_ERR_OUT_OF_MEMORY : FSG_ERR_CUDA;
}

// A grid dimension of v blocks (at least 1), capped at `cap` (grid-stride loops cover the rest).
inline unsigned clamp_grid(int64_t v, int64_t cap) { return static_cast<unsigned>(v < cap ? (v < 1 ? 1 : v) : cap); }

}  // namespace fsg
