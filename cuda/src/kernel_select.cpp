// kernel_select.cpp: cuda_dual_gemm / cuda_gemm pick a kernel family (see kernels.h) from the
// context's kernel path, whether the sm_90a kernels run on the device (compute capability 9.0
// and a library built with 90a: code_probe.cu) and the call's shape.
#include "kernels.h"

namespace fsg {

fsg_status cuda_dual_gemm(const DualGemmArgs& a, Stream s, int kernel_path, bool sm90) {
  bool handled = false;
  // fp8 saves (training) are written by the sm_80 and sm_90a epilogues only.
  const bool fp8_saves = a.a_out.fp8() || a.b_out.fp8();
  // The recompute backward from 32 rows on: the sm_90a dual GEMM, whose epilogue stages dz by
  // TMA, beats the swap-AB decode kernel (M = 32: 0.291 vs 0.302 ms; 128: 0.311 vs 0.358 at
  // K = 4096, N = 14336; bench/NOTES.md, Hopper step 11).
  if (kernel_path == kPathAuto && sm90 && a.epilogue == DualGemmArgs::kBackward && a.x.rows >= 32) {
    fsg_status st = cuda_dual_gemm_sm90(a, s, true, &handled);
    if (handled || st != FSG_OK) return st;
  }
  if ((kernel_path == kPathAuto || kernel_path == kPathSmallM) && !fp8_saves) {
    const bool forced = kernel_path == kPathSmallM;
    fsg_status st = sm90 ? cuda_dual_gemm_small_m_sm90(a, s, forced, &handled) : FSG_OK;
    if (!handled && st == FSG_OK) st = cuda_dual_gemm_small_m(a, s, forced, &handled);
    if (handled || st != FSG_OK) return st;
  }
  if ((kernel_path == kPathAuto || kernel_path == kPathSm90) && sm90) {
    fsg_status st = cuda_dual_gemm_sm90(a, s, kernel_path == kPathSm90, &handled);
    if (handled || st != FSG_OK) return st;
  }
  return cuda_dual_gemm_sm80(a, s);
}

fsg_status cuda_gemm(const GemmArgs& a, Stream s, int kernel_path, bool sm90) {
  bool handled = false;
  // On Hopper the sm_90a GEMM goes first for two small-M backward shapes (bench/NOTES.md, Hopper
  // step 11, K = 4096, N = 14336): short reductions (dW at M <= 128: 0.05 ms against gemm_short's
  // 0.066-0.115) and, with split-K scratch, more than 16 rows over a long reduction (whole backward
  // at M = 32: 0.207 vs 0.214 ms packed, 0.200 vs 0.223 nn.Linear; at 48: ~0.10 ms for dX against
  // 0.15). Up to 16 rows gemm_short's weight streaming stays ahead for dX.
  if (kernel_path == kPathAuto && sm90) {
    const int64_t reduction = a.reduction();
    const bool short_reduction = reduction <= 128;
    const bool split_rows = a.scratch != nullptr && a.c.rows > 16 && reduction >= 1024;
    if (short_reduction || split_rows) {
      fsg_status st = cuda_gemm_sm90(a, s, split_rows, &handled);
      if (handled || st != FSG_OK) return st;
    }
  }
  // Small-M backward shapes (short reduction, or few rows over a long one): gemm_short.cu.
  if (kernel_path == kPathAuto || kernel_path == kPathSmallM) {
    fsg_status st = cuda_gemm_short(a, s, kernel_path == kPathSmallM, &handled);
    if (handled || st != FSG_OK) return st;
  }
  if ((kernel_path == kPathAuto || kernel_path == kPathSm90) && sm90) {
    fsg_status st = cuda_gemm_sm90(a, s, kernel_path == kPathSm90, &handled);
    if (handled || st != FSG_OK) return st;
  }
  return cuda_gemm_sm80(a, s);
}

}  // namespace fsg
