// sm90_tma.h: host side of the Hopper kernels: the driver's cuTensorMapEncodeTiled (reached
// through the runtime, libcuda is not linked), the 2-D operand check and the encoding with
// 128-byte swizzle that the sm90 kernels' shared-memory descriptors expect, and the setup before a
// launch (shared memory opt-in, SM count). Shared by dual_gemm_sm90.cu, gemm_sm90.cu and
// small_m_sm90.cu. Host code only.
#pragma once
#include <cuda.h>  // CUtensorMap and the driver enums: types only
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend.h"

namespace fsg {
namespace sm90_host {

// cuTensorMapEncodeTiled, or nullptr when the driver does not offer it (the kernels then decline).
inline PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A 2-D operand as TMA sees it: `inner` contiguous elements (of elem_bytes: 2, or 1 for fp8) per
// line, `outer` lines `stride` elements apart. False when TMA cannot address it (base or stride
// not 16-byte aligned, overlapping lines).
struct Operand2D {
  void* base;
  uint64_t inner, outer, stride_bytes;
};
inline bool tma_operand(void* base, int64_t inner, int64_t outer, int64_t stride, Operand2D* out,
                        int64_t elem_bytes = 2) {
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0) return false;
  uint64_t sb;
  if (outer == 1) {
    sb = (static_cast<uint64_t>(inner) * elem_bytes + 15) / 16 * 16;  // never stepped over
  } else {
    if (stride < inner || (stride * elem_bytes) % 16 != 0 || stride * elem_bytes >= (int64_t{1} << 40)) return false;
    sb = static_cast<uint64_t>(stride * elem_bytes);
  }
  *out = Operand2D{base, static_cast<uint64_t>(inner), static_cast<uint64_t>(outer), sb};
  return true;
}

// Box of box_inner x box_outer elements (box_inner * element size <= 128 bytes: one swizzle row),
// 128-byte swizzle, out-of-bounds parts zero-filled. dt: BF16, F16, or F8E4M3 (as bytes). False
// when the driver refuses the map.
inline bool encode(CUtensorMap* map, DType dt, const Operand2D& o, uint32_t box_inner, uint32_t box_outer) {
  const cuuint64_t dims[2] = {o.inner, o.outer};
  const cuuint64_t strides[1] = {o.stride_bytes};
  const cuuint32_t box[2] = {box_inner, box_outer};
  const cuuint32_t estr[2] = {1, 1};
  const CUtensorMapDataType type = dt == DType::BF16     ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                   : dt == DType::F8E4M3 ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encode_fn()(map, type,
                                 2, o.base, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                 CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// The TMA store map of an output [rows, cols] with contiguous rows (sm90_store.cuh's staging
// boxes): 64 x 64 boxes of 16-bit elements, or 64-row x 128-byte boxes of fp8 codes. False when
// TMA cannot address it.
inline bool store_map(const Mat& o, CUtensorMap* map) {
  Operand2D op;
  const bool fp8 = o.fp8();
  return (o.cs == 1 || o.cols == 1) && tma_operand(o.data, o.cols, o.rows, o.rs, &op, fp8 ? 1 : 2) &&
         encode(map, o.dtype, op, fp8 ? 128 : 64, 64);
}

// Two adjacent columns of m form one aligned 4-byte access (the register-store fallbacks' pairs).
inline bool pairs_aligned(const Mat& m) {
  return m.present() && m.cs == 1 && m.rs % 2 == 0 && reinterpret_cast<uintptr_t>(m.data) % 4 == 0;
}

// The current device and its multiprocessor count.
inline cudaError_t current_device_sms(int* dev, int* sms) {
  cudaError_t e = cudaGetDevice(dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, *dev);
  return e;
}

// Multiprocessors of the current device (0 when it cannot be read).
inline int current_sm_count() {
  int dev = 0, sms = 0;
  if (current_device_sms(&dev, &sms) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return sms;
}

// Before a launch: lets `kernel` use smem_bytes of dynamic shared memory (and the largest shared
// memory carveout when max_carveout), then reads the current device and its multiprocessor count.
// Errors name `name`.
template <class Kernel>
fsg_status launch_setup(Kernel* kernel, const char* name, int smem_bytes, bool max_carveout, int* dev, int* sms) {
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (e == cudaSuccess && max_carveout)
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess) {
    set_error("%s: cudaFuncSetAttribute(%d bytes of shared memory): %s", name, smem_bytes, cudaGetErrorString(e));
    return FSG_ERR_CUDA;
  }
  if ((e = current_device_sms(dev, sms)) != cudaSuccess) {
    set_error("%s: reading the multiprocessor count: %s", name, cudaGetErrorString(e));
    return FSG_ERR_CUDA;
  }
  return FSG_OK;
}

}  // namespace sm90_host
}  // namespace fsg
