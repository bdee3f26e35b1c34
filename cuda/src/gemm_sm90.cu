// gemm_sm90.cu: fsg::cuda_gemm_sm90, the Hopper (sm_90a) GEMM of the backward passes:
// C = A0·B0 (+ A1·B1) (+ bias over rows) (+ C), fp32 accumulation, on wgmma fed by TMA. The same
// machinery as dual_gemm_sm90.cu (sm90_ptx.cuh, sm90_tma.h) with one 256-column B tile in place of
// the gate and up tiles:
//   persistent grid, 3 warpgroups: a TMA producer (one thread) and 2 wgmma consumers owning 64
//   rows each of a 128 x 256 tile (one m64n256k16 accumulator per consumer); 4-stage mbarrier ring
//   of 48 KB stages (A 128x64, B 64x256), 128-byte swizzle; C staged in shared memory and stored
//   with TMA (sm90_store.cuh), or from registers when C is accumulated into or TMA cannot
//   address it.
// Both majors of both operands: A K-major ([M,K] K-contiguous: dX's dA, dB) or MN-major
// (M-contiguous: x^T in dW = x^T·dA, transposed wgmma A); B K-major ([N,K] K-contiguous: W^T for
// [K,N] weights) or MN-major (N-contiguous: nn.Linear weights seen transposed, dA in dW). The second
// product continues the first's K-tile sequence into the same accumulator (dX = dA·Wg^T + dB·Wu^T
// in one pass) and must share its majors. A C with unit row stride (a transposed output such as
// nn.Linear's [N,K] weight grads) is computed as C^T = B^T·A^T, so the epilogue always writes
// row-contiguous pairs. Declined (the sm_80 kernels take them): f32, operands TMA cannot address
// (non-unit inner stride, strides or bases not 16-byte aligned), products of different majors,
// and, unless forced, C smaller than 64 x 64.
// Split-K, when the caller gives scratch (the backward's workspace) and the output tiles alone
// would leave SMs idle (dX at a few hundred rows, dW at short K): the K-tile sequence is cut into
// S pieces, each CTA writes its piece's fp32 partial tile from registers, and split_k_reduce adds
// the S partials in order (plus bias and C), so the result is still deterministic.
//
// Build (standalone check): nvcc -std=c++17 -O3 --expt-relaxed-constexpr
//   -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80
//   -I cuda/include -I cuda/src -c cuda/src/gemm_sm90.cu
#include <cuda.h>  // CUtensorMap: type only
#include <cuda_runtime.h>

#include "backend.h"
#include "kernel_util.cuh"
#include "kernels.h"
#include "sm90_ptx.cuh"
#include "sm90_store.cuh"
#include "sm90_tma.h"

namespace fsg {
namespace {

#ifndef FSG_GEMM90_MIN_MN
#define FSG_GEMM90_MIN_MN 64
#endif

constexpr int kBM = 128;  // rows per tile (2 consumer warpgroups x 64)
constexpr int kBN = 256;  // columns per tile (one m64n256 accumulator per consumer)
constexpr int kBK = 64;   // K per stage: 64 16-bit elements = one 128-byte swizzle row
constexpr int kStages = 4;
constexpr int kGroupM = 16;  // row tiles per band of the tile order (shares A and B tiles in L2)
constexpr int kThreads = 384;
constexpr int kABytes = kBM * kBK * 2;  // 16 KB
constexpr int kBBytes = kBN * kBK * 2;  // 32 KB
[[maybe_unused]] constexpr int kBox = 64 * 64 * 2;  // one 64 x 64 MN-major box, 8 KB
constexpr int kStageBytes = kABytes + kBBytes;
// + the consumers' output staging buffers (sm90_store.cuh) + slack to align to 1024
constexpr int kSmemBytes = kStages * kStageBytes + 2 * sm90::kSlabBytes + 1024;
static_assert(kStageBytes % 1024 == 0, "stages must keep 1024-byte alignment (128B swizzle)");

struct GemmParams {
  int m, n;
  int m_tiles, n_tiles;
  int k_tiles0, k_tiles;  // K tiles of product 0, of both products together
  int splits, k_per_split;  // split-K: pieces of the K-tile sequence (1: none), K tiles per piece
  int64_t tiles;            // m_tiles * n_tiles * splits
  float* partial;           // splits > 1: fp32 partials [splits][m][ld]
  int ld;                   // their row stride: n rounded up to 4
  VecRef bias;
  MatRef c;
  bool bias_rows;   // bias indexed by row (C was transposed on the host)
  bool c_v2;        // two adjacent columns of C form one aligned 4-byte access
  bool accumulate;
  bool tma_store;   // C stored with TMA through shared memory (sm90_store.cuh)
};

}  // namespace

// Device helpers (named namespace: the non-sm_90a passes compile them without using them).
namespace gemm_sm90_detail {

// Unit t -> (split, row tile, column tile; the split's K tiles [kb, ke)): splits outermost, then
// bands of kGroupM row tiles, column-major inside a band.
__device__ __forceinline__ void tile_coords(int64_t t, const GemmParams& p, int& tm, int& tn, int& split, int& kb,
                                            int& ke) {
  const int64_t per_split = static_cast<int64_t>(p.m_tiles) * p.n_tiles;
  split = static_cast<int>(t / per_split);
  t -= split * per_split;
  kb = split * p.k_per_split;
  ke = min(p.k_tiles, kb + p.k_per_split);
  const int64_t band_tiles = static_cast<int64_t>(kGroupM) * p.n_tiles;
  const int band = static_cast<int>(t / band_tiles);
  const int first = band * kGroupM;
  const int rows = min(kGroupM, p.m_tiles - first);
  const int r = static_cast<int>(t - band * band_tiles);
  tm = first + r % rows;
  tn = r / rows;
}

template <DType D, int kTransA, int kTransB>
__device__ __forceinline__ void mma(float (&d)[128], uint64_t da, uint64_t db, int scale_d) {
#if FSG_SM90_ENABLED
  if constexpr (D == DType::BF16)
    sm90::wgmma_m64n256k16_bf16<kTransB, kTransA>(d, da, db, scale_d);
  else
    sm90::wgmma_m64n256k16_f16<kTransB, kTransA>(d, da, db, scale_d);
#endif
}

// Columns c and c+1 of row r (c+1 only when has1), added to C's values when accumulating.
template <class T>
__device__ __forceinline__ void store_pair(const GemmParams& p, int64_t r, int64_t c, float v0, float v1, bool has1) {
  const MatRef& o = p.c;
  if (p.c_v2 && has1) {
    auto* q = reinterpret_cast<typename Pair<T>::T2*>(static_cast<T*>(o.p) + r * o.rs + c);
    if (p.accumulate) {
      const float2 old = Pair<T>::split(*q);
      v0 += old.x, v1 += old.y;
    }
    *q = Pair<T>::make(v0, v1);
  } else {
    if (p.accumulate) {
      v0 += o.load<T>(r, c);
      if (has1) v1 += o.load<T>(r, c + 1);
    }
    o.store<T>(r, c, v0);
    if (has1) o.store<T>(r, c + 1, v1);
  }
}

}  // namespace gemm_sm90_detail

namespace {
using namespace gemm_sm90_detail;

template <DType D, int kTransA, int kTransB>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_sm90_kernel(const __grid_constant__ CUtensorMap tm_a0, const __grid_constant__ CUtensorMap tm_b0,
                     const __grid_constant__ CUtensorMap tm_a1, const __grid_constant__ CUtensorMap tm_b1,
                     const __grid_constant__ CUtensorMap tm_c, const __grid_constant__ GemmParams p) {
#if FSG_SM90_ENABLED
  using namespace sm90;
  using T = typename Elem<D>::T;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  unsigned char* smem =
      smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023);
  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 8);  // lane 0 of each consumer warp
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    // ---- producer ----
    reg_dealloc<40>();
    if (threadIdx.x == 0) {
      const bool two = p.k_tiles > p.k_tiles0;
      tma_prefetch_desc(&tm_a0);
      tma_prefetch_desc(&tm_b0);
      if (two) {
        tma_prefetch_desc(&tm_a1);
        tma_prefetch_desc(&tm_b1);
      }
      int s = 0;
      uint32_t phase = 0;
      for (int64_t t = blockIdx.x; t < p.tiles; t += gridDim.x) {
        int tm, tn, split, kb, ke;
        tile_coords(t, p, tm, tn, split, kb, ke);
        const int m0 = tm * kBM, n0 = tn * kBN;
        for (int kt = kb; kt < ke; ++kt) {
          mbar_wait(&empty[s], phase ^ 1);
          uint64_t* bar = &full[s];
          mbar_expect_tx(bar, kStageBytes);
          unsigned char* st = smem + s * kStageBytes;
          const bool second = kt >= p.k_tiles0;
          const CUtensorMap* ma = second ? &tm_a1 : &tm_a0;
          const CUtensorMap* mb = second ? &tm_b1 : &tm_b0;
          const int k0 = (second ? kt - p.k_tiles0 : kt) * kBK;
          if constexpr (kTransA) {  // MN-major A: two 64-row boxes of 64 K lines
            tma_load_2d(st, ma, bar, m0, k0);
            tma_load_2d(st + kBox, ma, bar, m0 + 64, k0);
          } else {  // K-major A: 128 rows of 64 K
            tma_load_2d(st, ma, bar, k0, m0);
          }
          if constexpr (kTransB) {  // MN-major B: four 64-column boxes of 64 K lines
#pragma unroll
            for (int q = 0; q < 4; ++q) tma_load_2d(st + kABytes + q * kBox, mb, bar, n0 + 64 * q, k0);
          } else {  // K-major B: 256 columns (rows of B^T) of 64 K
            tma_load_2d(st + kABytes, mb, bar, k0, n0);
          }
          if (++s == kStages) s = 0, phase ^= 1;
        }
      }
    }
  } else {
    // ---- consumers ----
    reg_alloc<232>();
    const int c = wg - 1;
    const int tid = threadIdx.x & 127, warp = tid >> 5, lane = tid & 31;
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) d[i] = 0.f;
    int s = 0;
    uint32_t phase = 0;
    auto release = [&](int stage) {
      if (lane == 0) mbar_arrive(&empty[stage]);
    };
    for (int64_t t = blockIdx.x; t < p.tiles; t += gridDim.x) {
      int tm, tn, split, kb, ke;
      tile_coords(t, p, tm, tn, split, kb, ke);
      int prev = -1;
      for (int kt = kb; kt < ke; ++kt) {
        mbar_wait(&full[s], phase);
        const uint32_t st = smem_u32(smem + s * kStageBytes);
        const uint32_t a_base = st + c * kBox, b_base = st + kABytes;  // this consumer's 64 rows
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < kBK / 16; ++j) {
          // MN-major: 16 K lines of 128 bytes per step, atoms of 64 elements kBox apart.
          // K-major: 16 elements (32 bytes) per step along the swizzled 128-byte rows.
          const uint64_t da = kTransA ? make_desc(a_base + j * 2048, kBox, 1024) : make_desc(a_base + j * 32, 16, 1024);
          const uint64_t db = kTransB ? make_desc(b_base + j * 2048, kBox, 1024) : make_desc(b_base + j * 32, 16, 1024);
          mma<D, kTransA, kTransB>(d, da, db, (kt > kb || j > 0) ? 1 : 0);
        }
        wgmma_commit();
        // Keep this stage's MMAs in flight; the previous stage's are done: free it.
        wgmma_wait<1>();
        fence_regs(d);
        if (prev >= 0) release(prev);
        prev = s;
        if (++s == kStages) s = 0, phase ^= 1;
      }
      wgmma_wait<0>();
      fence_regs(d);
      if (prev >= 0) release(prev);

      // ---- epilogue; the fragment: accumulator i <-> (row w*16 + lane/4 + 8*((i/2)&1),
      //      column 8*(i/4) + 2*(lane&3) + (i&1)) ----
      const int64_t row0 = static_cast<int64_t>(tm) * kBM + c * 64 + warp * 16 + (lane >> 2);
      const int col0 = tn * kBN + 2 * (lane & 3);
      if (p.splits > 1) {  // this piece's fp32 partial (ld even: col + 1 < ld whenever col < ld)
        float* out = p.partial + static_cast<int64_t>(split) * p.m * p.ld;
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) {
          const int col = col0 + j * 8;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t row = row0 + 8 * h;
            if (row < p.m && col < p.ld)
              *reinterpret_cast<float2*>(out + row * p.ld + col) = make_float2(d[j * 4 + h * 2], d[j * 4 + h * 2 + 1]);
          }
        }
        continue;
      }
      if (p.tma_store) {
        // Bias added in place (the next tile's first MMA overwrites d), then the two 64 x 128
        // halves of this warpgroup's 64 x 256 block through the staging buffer.
        if (p.bias.p) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t row = row0 + 8 * h;
            const float rb = p.bias_rows && row < p.m ? p.bias.load(row) : 0.f;
#pragma unroll
            for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int col = col0 + j * 8 + e;
                d[j * 4 + h * 2 + e] += p.bias_rows ? rb : col < p.n ? p.bias.load(col) : 0.f;
              }
          }
        }
        const uint32_t buf = smem_u32(smem + kStages * kStageBytes + c * kSlabBytes);
        const int r0 = tm * kBM + c * 64, rows_left = p.m - r0;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int c0 = tn * kBN + half * 128;
          store_slab<T>(buf, &tm_c, r0, c0, rows_left, p.n - c0, 1 + c, [&](int j, int h) {
            const int i = (half * 16 + j) * 4 + h * 2;
            return make_float2(d[i], d[i + 1]);
          });
        }
        continue;
      }
      float rb[2] = {0.f, 0.f};
      if (p.bias_rows) {
#pragma unroll
        for (int h = 0; h < 2; ++h) rb[h] = row0 + 8 * h < p.m ? p.bias.load_or(row0 + 8 * h, 0.f) : 0.f;
      }
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const int col = col0 + j * 8;
        if (col >= p.n) continue;
        const bool has1 = col + 1 < p.n;
        float cb0 = 0.f, cb1 = 0.f;
        if (!p.bias_rows) {
          cb0 = p.bias.load_or(col, 0.f);
          cb1 = has1 ? p.bias.load_or(col + 1, 0.f) : 0.f;
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = row0 + 8 * h;
          if (row >= p.m) continue;
          const int i = j * 4 + h * 2;
          store_pair<T>(p, row, col, d[i] + cb0 + rb[h], d[i + 1] + cb1 + rb[h], has1);
        }
      }
    }
    if (threadIdx.x % 128 == 0) bulk_wait_all();  // this warpgroup's TMA stores (if any) are done
  }
#endif
}

// C = the sum of the split-K partials in split order (+ bias) (+ C): one thread per element.
template <class T>
__global__ void split_k_reduce_kernel(const float* partial, int splits, int ld, MatRef c, VecRef bias, bool bias_rows,
                                      bool accumulate, int m, int n) {
  const int64_t total = static_cast<int64_t>(m) * n, split_stride = static_cast<int64_t>(m) * ld;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / n, col = e - r * n;
    float v = 0.f;
    for (int sp = 0; sp < splits; ++sp) v += partial[sp * split_stride + r * ld + col];
    if (bias.p) v += bias.load(bias_rows ? r : col);
    if (accumulate) v += c.load<T>(r, col);
    c.store<T>(r, col, v);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.
using namespace sm90_host;

// Split-K pieces for an m x n output over k_tiles K tiles on `sms` SMs: the count (<= 8, >= 4 K
// tiles each) that minimises the waves of tile time, ceil(tiles * S / sms) / S, when that beats
// no split by 15% or more; else 1.
int split_count(int64_t m, int64_t n, int64_t k_tiles, int sms) {
  const int64_t tiles = ((m + kBM - 1) / kBM) * ((n + kBN - 1) / kBN);
  auto waves = [&](int64_t splits) { return static_cast<double>((tiles * splits + sms - 1) / sms) / splits; };
  int best = 1;
  for (int splits = 2; splits <= 8 && k_tiles / splits >= 4; ++splits)
    if (waves(splits) < 0.85 * waves(best)) best = splits;
  return best;
}

int64_t round_up4(int64_t v) { return (v + 3) / 4 * 4; }

Mat transposed_view(const Mat& m) { return Mat{m.data, m.cols, m.rows, m.cs, m.rs, m.dtype}; }

// A [M, K]: K-major (trans 0, rows contiguous along K) or MN-major (trans 1, contiguous along M).
bool a_operand(const Mat& a, int trans, Operand2D* o) {
  const int64_t m = a.rows, k = a.cols;
  return trans == 0 ? (a.cs == 1 || k == 1) && tma_operand(a.data, k, m, a.rs, o)
                    : (a.rs == 1 || m == 1) && tma_operand(a.data, m, k, a.cs, o);
}
// B [K, N]: K-major (trans 0, contiguous along K) or MN-major (trans 1, contiguous along N).
bool b_operand(const Mat& b, int trans, Operand2D* o) {
  const int64_t k = b.rows, n = b.cols;
  return trans == 0 ? (b.rs == 1 || k == 1) && tma_operand(b.data, k, n, b.cs, o)
                    : (b.cs == 1 || n == 1) && tma_operand(b.data, n, k, b.rs, o);
}

template <DType D, int kTransA, int kTransB>
fsg_status launch(const CUtensorMap (&maps)[5], const GemmParams& p, cudaStream_t s) {
  auto* kernel = gemm_sm90_kernel<D, kTransA, kTransB>;
  int dev = 0, sms = 0;
  const fsg_status setup = launch_setup(kernel, "gemm_sm90_kernel", kSmemBytes, false, &dev, &sms);
  if (setup != FSG_OK) return setup;
  const int64_t grid = p.tiles < sms ? p.tiles : sms;
  kernel<<<static_cast<unsigned>(grid), kThreads, kSmemBytes, s>>>(maps[0], maps[1], maps[2], maps[3], maps[4], p);
  return launch_status("gemm_sm90_kernel");
}

template <DType D>
fsg_status pick_majors(int ta, int tb, const CUtensorMap (&maps)[5], const GemmParams& p, cudaStream_t s) {
  if (ta) return tb ? launch<D, 1, 1>(maps, p, s) : launch<D, 1, 0>(maps, p, s);
  return tb ? launch<D, 0, 1>(maps, p, s) : launch<D, 0, 0>(maps, p, s);
}

}  // namespace

fsg_status cuda_gemm_sm90(const GemmArgs& args, Stream s, bool forced, bool* handled) {
  *handled = false;
  const DType dt = args.c.dtype;
  if (dt != DType::BF16 && dt != DType::F16) return FSG_OK;
  if (encode_fn() == nullptr) return FSG_OK;

  // A C stored column-contiguous is computed transposed: C^T = B^T·A^T (bias then runs along rows).
  GemmArgs g = args;
  const bool swap = args.c.cs != 1 && args.c.rs == 1;
  if (swap) {
    g.c = transposed_view(args.c);
    g.a0 = transposed_view(args.b0), g.b0 = transposed_view(args.a0);
    if (args.a1.present()) g.a1 = transposed_view(args.b1), g.b1 = transposed_view(args.a1);
  }
  const int64_t m = g.c.rows, n = g.c.cols;
  if (!forced && (m < FSG_GEMM90_MIN_MN || n < FSG_GEMM90_MIN_MN)) return FSG_OK;
  const bool two = g.a1.present();

  // Majors shared by both products (K-major preferred).
  Operand2D oa0, ob0, oa1, ob1;
  int ta = -1, tb = -1;
  for (int t = 0; t < 2 && ta < 0; ++t)
    if (a_operand(g.a0, t, &oa0) && (!two || a_operand(g.a1, t, &oa1))) ta = t;
  for (int t = 0; t < 2 && tb < 0; ++t)
    if (b_operand(g.b0, t, &ob0) && (!two || b_operand(g.b1, t, &ob1))) tb = t;
  if (ta < 0 || tb < 0) return FSG_OK;

  CUtensorMap maps[5];  // A0, B0, A1, B1, C (when stored with TMA)
  auto encode_a = [&](CUtensorMap* mp, const Operand2D& o) { return ta ? encode(mp, dt, o, 64, 64) : encode(mp, dt, o, kBK, kBM); };
  auto encode_b = [&](CUtensorMap* mp, const Operand2D& o) { return tb ? encode(mp, dt, o, 64, kBK) : encode(mp, dt, o, kBK, kBN); };
  bool ok = encode_a(&maps[0], oa0) && encode_b(&maps[1], ob0);
  if (two) {
    ok = ok && encode_a(&maps[2], oa1) && encode_b(&maps[3], ob1);
  } else {
    maps[2] = maps[0], maps[3] = maps[1];
  }
  if (!ok) return FSG_OK;  // the driver refused a map: let the sm_80 kernels take the call

  GemmParams p{};
  p.m = static_cast<int>(m), p.n = static_cast<int>(n);
  p.m_tiles = static_cast<int>((m + kBM - 1) / kBM);
  p.n_tiles = static_cast<int>((n + kBN - 1) / kBN);
  const int64_t kt0 = (g.a0.cols + kBK - 1) / kBK, kt1 = two ? (g.a1.cols + kBK - 1) / kBK : 0;
  if (kt0 + kt1 > (int64_t{1} << 30)) return FSG_OK;
  p.k_tiles0 = static_cast<int>(kt0), p.k_tiles = static_cast<int>(kt0 + kt1);
  p.splits = 1, p.k_per_split = p.k_tiles;
  if (args.scratch != nullptr) {
    const int sms = current_sm_count();
    const int want = sms > 0 ? split_count(m, n, p.k_tiles, sms) : 1;
    if (want > 1) {
      const int per = (p.k_tiles + want - 1) / want;
      const int splits = (p.k_tiles + per - 1) / per;  // every piece non-empty
      const uint64_t bytes = static_cast<uint64_t>(splits) * m * round_up4(n) * sizeof(float);
      if (splits > 1 && bytes <= args.scratch_bytes) {
        p.splits = splits, p.k_per_split = per;
        p.partial = static_cast<float*>(args.scratch);
        p.ld = static_cast<int>(round_up4(n));
      }
    }
  }
  p.tiles = static_cast<int64_t>(p.m_tiles) * p.n_tiles * p.splits;
  p.bias = vec_ref(args.bias);
  p.bias_rows = swap;
  p.c = mat_ref(g.c);
  p.c_v2 = pairs_aligned(g.c);
  p.accumulate = args.accumulate;
  // C through TMA stores unless it is accumulated into (read back) or TMA cannot address it.
  maps[4] = maps[0];  // placeholder
  p.tma_store = !p.accumulate && store_map(g.c, &maps[4]);

  *handled = true;
  const fsg_status st =
      dt == DType::BF16 ? pick_majors<DType::BF16>(ta, tb, maps, p, s) : pick_majors<DType::F16>(ta, tb, maps, p, s);
  if (st != FSG_OK || p.splits == 1) return st;
  const unsigned blocks = clamp_grid(static_cast<int64_t>(m) * n / 256 + 1, 65535);
  auto* reduce = dt == DType::BF16 ? split_k_reduce_kernel<__nv_bfloat16> : split_k_reduce_kernel<__half>;
  reduce<<<blocks, 256, 0, s>>>(p.partial, p.splits, p.ld, p.c, p.bias, p.bias_rows, p.accumulate, p.m, p.n);
  return launch_status("split_k_reduce_kernel");
}

uint64_t gemm_sm90_split_scratch_bytes(int64_t m, int64_t n, int64_t k) {
  const int sms = current_sm_count();
  if (sms <= 0 || m > INT32_MAX || n > INT32_MAX) return 0;
  const int64_t k_tiles = (k + kBK - 1) / kBK;
  // Either orientation (a column-contiguous C runs as C^T).
  const int64_t a = split_count(m, n, k_tiles, sms), b = split_count(n, m, k_tiles, sms);
  const int64_t splits = a > b ? a : b;
  return splits > 1 ? static_cast<uint64_t>(splits) * round_up4(m) * round_up4(n) * sizeof(float) : 0;
}

}  // namespace fsg
