// kernels.h: the kernel families of the CUDA backend and the one place that chooses among them
// (kernel_select.cpp). Each family lives in its own files:
//   small_m.cu          M up to a few dozen rows (decode): weight-streaming, split over K and N
//   small_m_sm90.cu     Hopper decode sizes (M >= 17): swap-AB wgmma, weights streamed by TMA
//   dual_gemm_sm90.cu   Hopper (sm_90a): wgmma + TMA
//   gemm_sm90.cu        Hopper (sm_90a) GEMM of the backward passes (dX, dW): wgmma + TMA
//   *_sm80.cu           mma.sync tensor-core kernels for sm_80 and newer: handle every call
// Every family runs the GLU variants (fsg_glu_params) in its epilogue.
#pragma once
#include "backend.h"

namespace fsg {

// Values of fsg_context_set_kernel_path.
enum KernelPath : int {
  kPathAuto = 0,    // choose by device and shape
  kPathSmallM = 1,  // the small-M kernels wherever they apply, else the sm_80 kernels
  kPathSm80 = 80,   // always the sm_80 kernels
  kPathSm90 = 90,   // the Hopper kernels wherever they apply, else the sm_80 kernels (sm_90 only)
};

fsg_status cuda_dual_gemm_sm80(const DualGemmArgs& a, Stream s);
fsg_status cuda_gemm_sm80(const GemmArgs& a, Stream s);

// The specialised families decline what they do not support by leaving *handled false (and
// returning FSG_OK); the caller then falls back to the sm_80 kernels. `forced`: the caller asked
// for this family, so take every call it can do correctly, not only those where it is fastest.
fsg_status cuda_dual_gemm_small_m(const DualGemmArgs& a, Stream s, bool forced, bool* handled);
// small_m_sm90.cu: the Hopper decode kernel (swap-AB wgmma + TMA), sm_90 only. Tried before
// cuda_dual_gemm_small_m: kPathAuto for 17..256 rows (measured crossovers, small_m_sm90.cu),
// kPathSmallM from 17 rows on (small_m.cu keeps 1..16, so both families stay tested).
fsg_status cuda_dual_gemm_small_m_sm90(const DualGemmArgs& a, Stream s, bool forced, bool* handled);
fsg_status cuda_dual_gemm_sm90(const DualGemmArgs& a, Stream s, bool forced, bool* handled);
fsg_status cuda_gemm_sm90(const GemmArgs& a, Stream s, bool forced, bool* handled);
// Scratch that lets cuda_gemm_sm90 split K for an m x n output over a reduction of k on the
// current device (0: it would not split).
uint64_t gemm_sm90_split_scratch_bytes(int64_t m, int64_t n, int64_t k);
// gemm_short.cu: short reductions (dW at small M) and few rows with a long reduction (dX at
// small M); taken by kPathAuto where measured faster and by kPathSmallM wherever they apply.
fsg_status cuda_gemm_short(const GemmArgs& a, Stream s, bool forced, bool* handled);

}  // namespace fsg
