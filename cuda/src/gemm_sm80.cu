// gemm_sm80.cu: fsg::cuda_gemm_sm80, C = A0·B0 (+ A1·B1) (+ bias) (+ C) for sm_80 and newer.
//
// The same tensor-core main loop as the dual GEMM (mma_tile.cuh) with one 128-column B source;
// the optional second product (its own K) continues the K-tile sequence into the same fp32
// accumulator, so dX = dA·Wg^T + dB·Wu^T is one pass. Instantiations: dtype x smem layout of A
// x smem layout of B (x, for f16, fp32 or f16 accumulation), picked from product 0's strides;
// product 1 uses the same layouts, through the generic loader where its strides do not fit them.
#include <cuda_runtime.h>

#include "backend.h"
#include "kernels.h"
#include "kernel_util.cuh"
#include "mma_tile.cuh"

namespace fsg {
namespace {

struct GemmParams {
  Product p0, p1;
  int nprod;
  int64_t m, n, m_tiles, n_tiles;
  VecRef bias;
  MatRef c;
  int accumulate;
};

template <DType D> constexpr int min_blocks() { return D == DType::F32 && kThreads > 128 ? 1 : 2; }

template <DType D, Layout LA, Layout LB, bool kF16Acc>
__global__ void __launch_bounds__(kThreads, min_blocks<D>()) gemm_kernel(const __grid_constant__ GemmParams p) {
  using T = typename Elem<D>::T;
  extern __shared__ __align__(16) char smem[];
  int64_t tm, tn;
  if (!tile_coords(p.m_tiles, p.n_tiles, tm, tn)) return;
  const int64_t m0 = tm * kTileR, n0 = tn * kTileR;
  Acc acc;
  mainloop<D, LA, LB, 1, kF16Acc>(p.p0, p.p1, p.nprod, m0, n0, smem, acc);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ni = 0; ni < 8; ++ni)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t col = n0 + wn * 64 + ni * 8 + 2 * t + e;
      if (col >= p.n) continue;
      const float bias = p.bias.load_or(col, 0.f);
#pragma unroll
      for (int mi = 0; mi < kWarpM16; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = m0 + wm * kWarpRows + mi * 16 + h * 8 + g;
          if (row >= p.m) continue;
          float v = acc[mi][ni][2 * h + e] + bias;
          if (p.accumulate) v += p.c.load<T>(row, col);
          p.c.store<T>(row, col, v);
        }
    }
}

template <DType D, Layout LA, Layout LB, bool kF16Acc>
fsg_status launch(const GemmParams& p, cudaStream_t s) {
  auto* kernel = gemm_kernel<D, LA, LB, kF16Acc>;
  const int smem = smem_bytes(D);
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) {
    set_error("gemm_kernel: cudaFuncSetAttribute(%d bytes of shared memory): %s", smem, cudaGetErrorString(e));
    return FSG_ERR_CUDA;
  }
  dim3 grid;
  if (!tile_grid(p.m_tiles, p.n_tiles, &grid)) {
    set_error("cuda_gemm: %lld x %lld output tiles exceed the launch limits", static_cast<long long>(p.m_tiles),
              static_cast<long long>(p.n_tiles));
    return FSG_ERR_TOO_LARGE;
  }
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("gemm_kernel");
}

template <DType D, bool kF16Acc>
fsg_status pick_layouts(const GemmParams& p, Layout la, Layout lb, cudaStream_t s) {
  if (la == Layout::kKMajor)
    return lb == Layout::kKMajor ? launch<D, Layout::kKMajor, Layout::kKMajor, kF16Acc>(p, s)
                                 : launch<D, Layout::kKMajor, Layout::kMNMajor, kF16Acc>(p, s);
  return lb == Layout::kKMajor ? launch<D, Layout::kMNMajor, Layout::kKMajor, kF16Acc>(p, s)
                               : launch<D, Layout::kMNMajor, Layout::kMNMajor, kF16Acc>(p, s);
}

// rows x K operand of a Mat: A is [M, K] (rows along Mat rows), B is [K, N] (rows along Mat cols).
TileSrc src_a(const Mat& m) { return TileSrc{m.data, m.rs, m.cs, m.rows, m.cols, 0}; }
TileSrc src_b(const Mat& m) { return TileSrc{m.data, m.cs, m.rs, m.cols, m.rows, 0}; }

template <DType D>
fsg_status run(const GemmArgs& a, cudaStream_t s) {
  const int bytes = dtype_bytes(D);
  GemmParams p{};
  p.m = a.c.rows, p.n = a.c.cols;
  p.m_tiles = (p.m + kTileR - 1) / kTileR;
  p.n_tiles = (p.n + kTileR - 1) / kTileR;
  p.p0.a = src_a(a.a0), p.p0.b[0] = src_b(a.b0), p.p0.ktiles = k_tiles(a.a0.cols, bytes);
  p.nprod = a.a1.present() ? 2 : 1;
  if (p.nprod == 2) p.p1.a = src_a(a.a1), p.p1.b[0] = src_b(a.b1), p.p1.ktiles = k_tiles(a.a1.cols, bytes);
  const Layout la = preferred_layout(p.p0.a), lb = preferred_layout(p.p0.b[0]);
  p.p0.a.async = can_async(p.p0.a, la, bytes);
  p.p0.b[0].async = can_async(p.p0.b[0], lb, bytes);
  if (p.nprod == 2) {
    p.p1.a.async = can_async(p.p1.a, la, bytes);
    p.p1.b[0].async = can_async(p.p1.b[0], lb, bytes);
  }
  p.bias = vec_ref(a.bias), p.c = mat_ref(a.c), p.accumulate = a.accumulate ? 1 : 0;
  if constexpr (D == DType::F16)
    if (a.fp16_accumulate) return pick_layouts<D, true>(p, la, lb, s);
  return pick_layouts<D, false>(p, la, lb, s);
}

}  // namespace

fsg_status cuda_gemm_sm80(const GemmArgs& a, Stream s) {
  switch (a.c.dtype) {
    case DType::F32: return run<DType::F32>(a, s);
    case DType::F16: return run<DType::F16>(a, s);
    case DType::BF16: return run<DType::BF16>(a, s);
  }
  set_error("cuda_gemm: unknown dtype %d", static_cast<int>(a.c.dtype));
  return FSG_ERR_DTYPE;
}

}  // namespace fsg
