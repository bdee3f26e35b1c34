// dual_gemm_sm80.cu: fsg::cuda_dual_gemm_sm80, the fused SwiGLU dual GEMM for sm_80 and newer.
//
// One launch: each block loads an x tile (128 rows) once and gate + up weight tiles (64 columns
// each) beside it, accumulates A = x·Wg and B = x·Wu in fp32 (mma_tile.cuh), then runs the
// epilogue on registers:
//   kForward:  z = silu(A + bg) * (B + bu) (or a GLU variant, activation_math.h); a_out / b_out
//              get the pre-activations when present (fp8 ones quantized here, fp8_block.cuh);
//   kBackward: da = dz * B * silu'(A), db = dz * silu(A) (recompute-mode backward).
// Instantiations: dtype x smem layout of x x smem layout of the weights x epilogue (x, for f16,
// fp32 or f16 accumulation). The layouts and the cp.async/generic loaders are chosen at launch
// from strides and alignment; each kernel holds one inlined epilogue per lean GLU kind.
#include <cuda_runtime.h>

#include "activation_math.h"
#include "backend.h"
#include "fp8_block.cuh"
#include "kernels.h"
#include "kernel_util.cuh"
#include "mma_tile.cuh"

namespace fsg {
namespace {

constexpr int kCols = kTileR / 2;  // output columns per block (64 gate + 64 up)
// The forward's epilogue with fp8 saves, beside the lean GLU kinds (lean_glu_kind): the block
// quantization inline and the GLU value as glu_value gives it (plain SwiGLU inline).
constexpr int kFp8Saves = -3;

struct DualParams {
  Product prod;
  int64_t m, n, m_tiles, n_tiles;
  VecRef bg, bu;
  MatRef z, a_out, b_out;  // kForward (a_out/b_out: p == nullptr when absent or fp8)
  Fp8Ref a8, b8;           // kForward fp8 saves (p == nullptr unless fp8)
  MatRef dz, da, db;       // kBackward
  fsg_glu_params act;
  LeanGlu glu;             // lean_glu(act), its kind kFp8Saves when the forward saves fp8
};

// 2 blocks per SM (at 8 warps per block 3xTF32 needs more registers: 1).
template <DType D> constexpr int min_blocks() { return D == DType::F32 && kThreads > 128 ? 1 : 2; }

// The epilogue on the accumulators of the tile at (m0, n0), for lean kind kKind (the general one,
// kGluGeneral, calls its per-element math out of line) or kFp8Saves: one copy per kind, so the
// element loop has no branch or call for the kinds that users run (bench/NOTES.md, "GLU
// variants", steps 19-20).
template <DType D, int EPI, int kKind>
__device__ __forceinline__ void epilogue(const DualParams& p, const Acc& acc, int64_t m0, int64_t n0) {
  using T = typename Elem<D>::T;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1, g = lane >> 2, t = lane & 3;
  // Biases of this thread's 8 columns (n8 tile ni, element e).
  float bg[4][2], bu[4][2];
#pragma unroll
  for (int ni = 0; ni < 4; ++ni)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t col = n0 + wn * 32 + ni * 8 + 2 * t + e;
      bg[ni][e] = col < p.n ? p.bg.load_or(col, 0.f) : 0.f;
      bu[ni][e] = col < p.n ? p.bu.load_or(col, 0.f) : 0.f;
    }
#pragma unroll
  for (int mi = 0; mi < kWarpM16; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = m0 + wm * kWarpRows + mi * 16 + h * 8 + g;
      if (row >= p.m) continue;  // uniform over the quad that shares the row
      Block8 av, bv;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          av.v[2 * ni + e] = acc[mi][ni][2 * h + e] + bg[ni][e];
          bv.v[2 * ni + e] = acc[mi][ni + 4][2 * h + e] + bu[ni][e];
        }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t col = n0 + wn * 32 + ni * 8 + 2 * t + e;
          if constexpr (EPI == DualGemmArgs::kForward) {
            // The value first, the column test only around the stores, so that elements' math
            // can interleave (bench/NOTES.md, "GLU variants", step 27).
            const float a = av.v[2 * ni + e], b = bv.v[2 * ni + e];
            float z;
            if constexpr (kKind == kFp8Saves) z = glu_value(p.act, a, b);
            else z = glu_value_lean<kKind>(p.act, p.glu.silu, a, b);
            if (col >= p.n) continue;
            p.z.store<T>(row, col, z);
            if (p.a_out.p) p.a_out.store<T>(row, col, a);
            if (p.b_out.p) p.b_out.store<T>(row, col, b);
          } else {
            if (col >= p.n) continue;
            const float a = av.v[2 * ni + e], b = bv.v[2 * ni + e];
            const float d = p.dz.load<T>(row, col);
            float da, db;
            glu_grads_lean<kKind>(p.act, p.glu.silu, a, b, d, &da, &db);
            p.da.store<T>(row, col, da);
            p.db.store<T>(row, col, db);
          }
        }
      if constexpr (kKind == kFp8Saves) {
        // This warp's 32 columns are one block (n0 is a multiple of 64).
        if (p.a8.p) fp8_block_store(p.a8, row, n0 + wn * 32, p.n, av);
        if (p.b8.p) fp8_block_store(p.b8, row, n0 + wn * 32, p.n, bv);
      }
    }
}

template <DType D, Layout LA, Layout LB, int EPI, bool kF16Acc>
__global__ void __launch_bounds__(kThreads, min_blocks<D>()) dual_gemm_kernel(const __grid_constant__ DualParams p) {
  extern __shared__ __align__(16) char smem[];
  int64_t tm, tn;
  if (!tile_coords(p.m_tiles, p.n_tiles, tm, tn)) return;
  const int64_t m0 = tm * kTileR, n0 = tn * kCols;
  Acc acc;
  mainloop<D, LA, LB, 2, kF16Acc>(p.prod, p.prod, 1, m0, n0, smem, acc);
  if constexpr (EPI == DualGemmArgs::kForward)
    if (p.glu.kind == kFp8Saves) return epilogue<D, EPI, kFp8Saves>(p, acc, m0, n0);
  with_lean_kind(p.glu.kind, [&](auto kind) { epilogue<D, EPI, decltype(kind)::value>(p, acc, m0, n0); });
}

template <DType D, Layout LA, Layout LB, int EPI, bool kF16Acc>
fsg_status launch(const DualParams& p, cudaStream_t s) {
  auto* kernel = dual_gemm_kernel<D, LA, LB, EPI, kF16Acc>;
  const int smem = smem_bytes(D);
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) {
    set_error("dual_gemm_kernel: cudaFuncSetAttribute(%d bytes of shared memory): %s", smem, cudaGetErrorString(e));
    return FSG_ERR_CUDA;
  }
  dim3 grid;
  if (!tile_grid(p.m_tiles, p.n_tiles, &grid)) {
    set_error("cuda_dual_gemm: %lld x %lld output tiles exceed the launch limits", static_cast<long long>(p.m_tiles),
              static_cast<long long>(p.n_tiles));
    return FSG_ERR_TOO_LARGE;
  }
  kernel<<<grid, kThreads, smem, s>>>(p);
  return launch_status("dual_gemm_kernel");
}

template <DType D, Layout LA, Layout LB, bool kF16Acc>
fsg_status pick_epilogue(const DualParams& p, int epi, cudaStream_t s) {
  return epi == DualGemmArgs::kForward ? launch<D, LA, LB, DualGemmArgs::kForward, kF16Acc>(p, s)
                                       : launch<D, LA, LB, DualGemmArgs::kBackward, kF16Acc>(p, s);
}

template <DType D, bool kF16Acc>
fsg_status pick_layouts(const DualParams& p, Layout la, Layout lb, int epi, cudaStream_t s) {
  if (la == Layout::kKMajor)
    return lb == Layout::kKMajor ? pick_epilogue<D, Layout::kKMajor, Layout::kKMajor, kF16Acc>(p, epi, s)
                                 : pick_epilogue<D, Layout::kKMajor, Layout::kMNMajor, kF16Acc>(p, epi, s);
  return lb == Layout::kKMajor ? pick_epilogue<D, Layout::kMNMajor, Layout::kKMajor, kF16Acc>(p, epi, s)
                               : pick_epilogue<D, Layout::kMNMajor, Layout::kMNMajor, kF16Acc>(p, epi, s);
}

template <DType D>
fsg_status run(const DualGemmArgs& a, cudaStream_t s) {
  const int bytes = dtype_bytes(D);
  DualParams p{};
  p.m = a.x.rows, p.n = a.wg.cols;
  p.m_tiles = (p.m + kTileR - 1) / kTileR;
  p.n_tiles = (p.n + kCols - 1) / kCols;
  const int64_t k = a.x.cols;
  p.prod.a = TileSrc{a.x.data, a.x.rs, a.x.cs, p.m, k, 0};
  p.prod.b[0] = TileSrc{a.wg.data, a.wg.cs, a.wg.rs, p.n, k, 0};
  p.prod.b[1] = TileSrc{a.wu.data, a.wu.cs, a.wu.rs, p.n, k, 0};
  p.prod.ktiles = k_tiles(k, bytes);
  const Layout la = preferred_layout(p.prod.a), lb = preferred_layout(p.prod.b[0]);
  p.prod.a.async = can_async(p.prod.a, la, bytes);
  p.prod.b[0].async = can_async(p.prod.b[0], lb, bytes);
  p.prod.b[1].async = can_async(p.prod.b[1], lb, bytes);  // up follows gate's layout
  p.bg = vec_ref(a.bg), p.bu = vec_ref(a.bu);
  p.z = mat_ref(a.z), p.a_out = mat_ref(a.a_out), p.b_out = mat_ref(a.b_out);
  p.a8 = fp8_ref(a.a_out), p.b8 = fp8_ref(a.b_out);
  if (p.a8.p) p.a_out.p = nullptr;
  if (p.b8.p) p.b_out.p = nullptr;
  p.dz = mat_ref(a.dz), p.da = mat_ref(a.da), p.db = mat_ref(a.db);
  p.act = a.act;
  p.glu = lean_glu(a.act);
  if (p.a8.p || p.b8.p) p.glu.kind = kFp8Saves;
  if constexpr (D == DType::F16)
    if (a.fp16_accumulate) return pick_layouts<D, true>(p, la, lb, a.epilogue, s);
  return pick_layouts<D, false>(p, la, lb, a.epilogue, s);
}

}  // namespace

fsg_status cuda_dual_gemm_sm80(const DualGemmArgs& a, Stream s) {
  switch (a.x.dtype) {
    case DType::F32: return run<DType::F32>(a, s);
    case DType::F16: return run<DType::F16>(a, s);
    case DType::BF16: return run<DType::BF16>(a, s);
  }
  set_error("cuda_dual_gemm: unknown dtype %d", static_cast<int>(a.x.dtype));
  return FSG_ERR_DTYPE;
}

}  // namespace fsg
