// mma_tile.cuh: the tensor-core main loop shared by the dual GEMM and the GEMM (sm_80+).
//
// A block computes a 128 x 128 fp32 accumulator tile: rows are M, columns are the B tile's 128
// rows, which come from NSRC sources sharing the A tile: one [K,N] operand (GEMM, 128 columns)
// or gate + up (dual GEMM, 64 columns each). Warps are (128 / kWarpRows) (M) x 2 (N); a warp owns
// kWarpRows rows x 64 columns = acc[kWarpM16 m16][8 n8][4]. In the dual GEMM a warp's n8 tiles 0..3 are gate
// columns and 4..7 the matching up columns, so the epilogue finds A and B in one thread.
//
// Math per dtype:
//   f16/bf16: mma.sync m16n8k16 (fp32 accumulate), fragments by ldmatrix (.trans for an
//             MN-major tile, so a transposed operand stays on the fast path);
//   f16 with fp16 accumulation (fsg_context_set_fp16_accumulation): the same with f16
//             accumulators (HalfAcc, two f16x2 registers per m16n8 tile), which GeForce GPUs run
//             at twice the fp32-accumulate rate; the sums are widened to the fp32 Acc once, after
//             the last K tile, so the epilogues are the same for both;
//   f32:      3xTF32 on mma.sync m16n8k8: each operand is split into hi = tf32(x) and
//             lo = tf32(x - hi), and lo*hi + hi*lo + hi*hi (lo*lo, ~2^-22 relative, is dropped)
//             is summed by the tensor core into a zeroed temporary per k8 step, which is then
//             added to the accumulator with an IEEE fp32 add: the tensor core's own fp32
//             accumulation truncates, and over K = 1000 that alone cost ~1e-5. This keeps
//             fp32-level accuracy (~1e-6) at a third of TF32 throughput, where plain TF32 would
//             give ~1e-3. Fragments are scalar shared loads.
// Pipeline: kStages-deep ring of (A, B) tiles filled by tile_load.cuh; one __syncthreads per
// K tile. A "product" list lets the GEMM run A0·B0 then A1·B1 (its own K) into one accumulator.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "backend.h"
#include "tile_load.cuh"

namespace fsg {

// One product's operands: A (rows M) and NSRC B sources (rows N), and its K tiles.
struct Product {
  TileSrc a;
  TileSrc b[2];
  int64_t ktiles;
};

// Host: K tiles of a product for an element of `bytes` bytes.
inline int64_t k_tiles(int64_t k, int bytes) {
  const int bk = 64 / bytes;
  return (k + bk - 1) / bk;
}

// Host: the grid of a tile_coords kernel, one block per tile numbered blockIdx.y * gridDim.x +
// blockIdx.x. The tile count, not the column tiles, meets the launch limits (grid.y <= 65535 would
// cap N at 65535 tiles: 4-8 M columns). False past (2^31 - 1) x 65535 tiles.
inline bool tile_grid(int64_t m_tiles, int64_t n_tiles, dim3* grid) {
  const int64_t tiles = m_tiles * n_tiles, max_x = 0x7fffffff;
  const int64_t gy = (tiles + max_x - 1) / max_x;
  if (gy > 65535) return false;
  *grid = dim3(static_cast<unsigned>((tiles + gy - 1) / gy), static_cast<unsigned>(gy));
  return true;
}

// Block -> (M tile, N tile) with M tiles grouped by 16: blocks running together share a band of
// x rows and of weight columns in L2 instead of streaming all of x once per N tile. False for the
// grid's blocks past the last tile (tile_grid rounds up when it needs a second dimension).
__device__ __forceinline__ bool tile_coords(int64_t m_tiles, int64_t n_tiles, int64_t& tm, int64_t& tn) {
  constexpr int64_t kGroup = 16;
  const int64_t pid = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  if (pid >= m_tiles * n_tiles) return false;
  const int64_t per_group = kGroup * n_tiles;
  const int64_t first = (pid / per_group) * kGroup;
  const int64_t size = m_tiles - first < kGroup ? m_tiles - first : kGroup;
  const int64_t in = pid % per_group;
  tm = first + in % size;
  tn = in / size;
  return true;
}

// ---- fragments and mma ----
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

template <DType D>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (D == DType::BF16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// fp16 products summed into f16 accumulators: c = {row g, row g+8} x cols {2t, 2t+1}, f16x2 each.
__device__ __forceinline__ void mma16816(uint32_t (&c)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%0,%1};\n"
               : "+r"(c[0]), "+r"(c[1])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <DType D>
__device__ __forceinline__ void mma16816(uint32_t (&c)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  static_assert(D == DType::F16, "f16 accumulators take f16 operands only");
  mma16816(c, a, b0, b1);
}

__device__ __forceinline__ void mma1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// x = hi + lo with hi, lo both tf32 (round to nearest, ties away: cvt.rna).
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(hi) : "f"(x));
  // An infinite hi leaves no finite remainder: Inf - Inf would turn Inf inputs into NaN.
  const float rest = isinf(__uint_as_float(hi)) ? 0.0f : x - __uint_as_float(hi);
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(lo) : "f"(rest));
}

// Offset (elements) of operand element (row, k) inside a tile of layout L.
template <int kBytes, Layout L> __device__ __forceinline__ int tile_off(int row, int k) {
  return L == Layout::kKMajor ? row * Geo<kBytes>::LDK + k : k * Geo<kBytes>::LDN + row;
}

// Tile column (B-tile row) of this warp's n8 tile `ni` when NSRC sources share the tile.
template <int NSRC> __device__ __forceinline__ int warp_col(int wn, int ni) {
  constexpr int kSrcCols = kTileR / NSRC, kPer = 8 / NSRC;
  return (ni / kPer) * kSrcCols + wn * (kSrcCols / 2) + (ni % kPer) * 8;
}

using Acc = float[kWarpM16][8][4];
using HalfAcc = uint32_t[kWarpM16][8][2];  // f16x2 pairs: [0] = Acc's [0..1], [1] = Acc's [2..3]

// Zeroes accumulators (Acc or HalfAcc) before a tile's K loop.
template <class T, int A, int B, int C> __device__ __forceinline__ void zero(T (&acc)[A][B][C]) {
#pragma unroll
  for (int a = 0; a < A; ++a)
#pragma unroll
    for (int b = 0; b < B; ++b)
#pragma unroll
      for (int c = 0; c < C; ++c) acc[a][b][c] = T(0);
}

// acc += A_tile · B_tile^T over one K tile, 16-bit operands; AccT is Acc or HalfAcc (f16 only).
template <DType D, Layout LA, Layout LB, int NSRC, typename AccT>
__device__ __forceinline__ void mma_tile16(const uint16_t* sa, const uint16_t* sb, AccT& acc, int wm, int wn,
                                           int lane) {
  using G = Geo<2>;
  const int i = lane >> 3, r = lane & 7;
  // Per-lane ldmatrix row (see the fragment layouts of m16n8k16 in the PTX ISA).
  const int a_row = LA == Layout::kKMajor ? (lane & 15) : (i & 1) * 8;
  const int a_k = LA == Layout::kKMajor ? (lane >> 4) * 8 : r + (i >> 1) * 8;
  const int b_row = LB == Layout::kKMajor ? r + (i >> 1) * 8 : (i >> 1) * 8;
  const int b_k = LB == Layout::kKMajor ? (i & 1) * 8 : r + (i & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < G::BK; kk += 16) {
    uint32_t af[kWarpM16][4], bf[8][2];
#pragma unroll
    for (int mi = 0; mi < kWarpM16; ++mi) {
      const uint32_t addr = smem_u32(sa + tile_off<2, LA>(wm * kWarpRows + mi * 16 + a_row, kk + a_k));
      if (LA == Layout::kKMajor) ldsm_x4(addr, af[mi]); else ldsm_x4_t(addr, af[mi]);
    }
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t t[4];
      const uint32_t addr = smem_u32(sb + tile_off<2, LB>(warp_col<NSRC>(wn, 2 * np) + b_row, kk + b_k));
      if (LB == Layout::kKMajor) ldsm_x4(addr, t); else ldsm_x4_t(addr, t);
      bf[2 * np][0] = t[0], bf[2 * np][1] = t[1], bf[2 * np + 1][0] = t[2], bf[2 * np + 1][1] = t[3];
    }
#pragma unroll
    for (int mi = 0; mi < kWarpM16; ++mi)
#pragma unroll
      for (int ni = 0; ni < 8; ++ni) mma16816<D>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
  }
}

// acc += A_tile · B_tile^T over one K tile, f32 operands through 3xTF32.
template <Layout LA, Layout LB, int NSRC>
__device__ __forceinline__ void mma_tile32(const float* sa, const float* sb, Acc& acc, int wm, int wn,
                                           int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kk = 0; kk < Geo<4>::BK; kk += 8) {
    uint32_t ah[kWarpM16][4], al[kWarpM16][4];
#pragma unroll
    for (int mi = 0; mi < kWarpM16; ++mi) {
      const int m = wm * kWarpRows + mi * 16 + g;
      split_tf32(sa[tile_off<4, LA>(m, kk + t)], ah[mi][0], al[mi][0]);
      split_tf32(sa[tile_off<4, LA>(m + 8, kk + t)], ah[mi][1], al[mi][1]);
      split_tf32(sa[tile_off<4, LA>(m, kk + t + 4)], ah[mi][2], al[mi][2]);
      split_tf32(sa[tile_off<4, LA>(m + 8, kk + t + 4)], ah[mi][3], al[mi][3]);
    }
#pragma unroll
    for (int ni = 0; ni < 8; ++ni) {
      const int n = warp_col<NSRC>(wn, ni) + g;
      uint32_t bh0, bl0, bh1, bl1;
      split_tf32(sb[tile_off<4, LB>(n, kk + t)], bh0, bl0);
      split_tf32(sb[tile_off<4, LB>(n, kk + t + 4)], bh1, bl1);
#pragma unroll
      for (int mi = 0; mi < kWarpM16; ++mi) {
        float part[4] = {0.f, 0.f, 0.f, 0.f};
        mma1688_tf32(part, al[mi], bh0, bh1);
        mma1688_tf32(part, ah[mi], bl0, bl1);
        // The correction terms are tiny unless an operand is Inf or NaN (Inf * lo, whose sign
        // may oppose the hi term's, or Inf * 0). The hi*hi term below carries the true Inf or
        // NaN, so a non-finite correction is dropped rather than allowed to poison it.
#pragma unroll
        for (int j = 0; j < 4; ++j) part[j] = isfinite(part[j]) ? part[j] : 0.0f;
        mma1688_tf32(part, ah[mi], bh0, bh1);
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[mi][ni][j] += part[j];
      }
    }
  }
}

// Issues the loads of K tile `kt` of product `p` into pipeline stage buffer `st`.
template <DType D, Layout LA, Layout LB, int NSRC>
__device__ __forceinline__ void load_stage(const Product& p, int64_t kt, int64_t m0, int64_t n0, char* st,
                                           int tid) {
  constexpr int kB = D == DType::F32 ? 4 : 2;
  using G = Geo<kB>;
  const int64_t k0 = kt * G::BK;
  load_tile<kB, LA, kTileR>(p.a, m0, k0, st, 0, tid);
#pragma unroll
  for (int s = 0; s < NSRC; ++s)
    load_tile<kB, LB, kTileR / NSRC>(p.b[s], n0, k0, st + G::kTileElems * kB, s * (kTileR / NSRC), tid);
}

// The K-tile pipeline of mainloop over accumulators AccT (Acc, or HalfAcc for f16 accumulation).
template <DType D, Layout LA, Layout LB, int NSRC, typename AccT>
__device__ __forceinline__ void pipeline(const Product& p0, const Product& p1, int nprod, int64_t m0, int64_t n0,
                                         char* smem, AccT& acc) {
  constexpr int kB = D == DType::F32 ? 4 : 2;
  using G = Geo<kB>;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t t0 = p0.ktiles, total = t0 + (nprod > 1 ? p1.ktiles : 0);
  auto load = [&](int64_t t) {
    char* st = smem + (t % kStages) * G::kStageBytes;
    if (t < t0) load_stage<D, LA, LB, NSRC>(p0, t, m0, n0, st, tid);
    else load_stage<D, LA, LB, NSRC>(p1, t - t0, m0, n0, st, tid);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < total) load(s);
    cp_async_commit();
  }
  for (int64_t t = 0; t < total; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t is visible to all; everyone is done reading tile t-1's stage
    if (t + kStages - 1 < total) load(t + kStages - 1);
    cp_async_commit();
    const char* st = smem + (t % kStages) * G::kStageBytes;
    if constexpr (D == DType::F32) {
      mma_tile32<LA, LB, NSRC>(reinterpret_cast<const float*>(st),
                               reinterpret_cast<const float*>(st + G::kTileElems * kB), acc, wm, wn, lane);
    } else {
      mma_tile16<D, LA, LB, NSRC>(reinterpret_cast<const uint16_t*>(st),
                                  reinterpret_cast<const uint16_t*>(st + G::kTileElems * kB), acc, wm, wn, lane);
    }
  }
  cp_async_wait<0>();
}

// The block's main loop: acc = sum over products of A·B for rows [m0, m0+128) and source
// columns [n0, n0 + 128/NSRC). `smem` holds kStages stages of Geo::kStageBytes. kF16Acc (f16
// operands only) keeps the running sums in f16 and widens them into acc at the end.
template <DType D, Layout LA, Layout LB, int NSRC, bool kF16Acc = false>
__device__ __forceinline__ void mainloop(const Product& p0, const Product& p1, int nprod, int64_t m0,
                                         int64_t n0, char* smem, Acc& acc) {
  if constexpr (kF16Acc) {
    static_assert(D == DType::F16, "f16 accumulation takes f16 operands only");
    HalfAcc half;
    zero(half);
    pipeline<D, LA, LB, NSRC>(p0, p1, nprod, m0, n0, smem, half);
#pragma unroll
    for (int mi = 0; mi < kWarpM16; ++mi)
#pragma unroll
      for (int ni = 0; ni < 8; ++ni)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&half[mi][ni][j]));
          acc[mi][ni][2 * j] = v.x;
          acc[mi][ni][2 * j + 1] = v.y;
        }
  } else {
    zero(acc);
    pipeline<D, LA, LB, NSRC>(p0, p1, nprod, m0, n0, smem, acc);
  }
}

// Host: the dynamic shared memory of a block, and the occupancy the register budget targets.
constexpr int smem_bytes(DType d) { return kStages * (d == DType::F32 ? Geo<4>::kStageBytes : Geo<2>::kStageBytes); }

}  // namespace fsg
