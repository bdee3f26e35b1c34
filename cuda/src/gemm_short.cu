// gemm_short.cu: cuda_gemm_short, the GEMMs of the small-M backward (issue 5):
//   C [M, N] = A0·B0 (+ A1·B1) (+ bias) (+ C when accumulate), the GemmArgs of backend.h.
//
// With M <= 128 tokens the backward's two GEMMs are shapes that the 128x128 tiles of gemm_sm80.cu
// run almost empty:
//   dW = x^T·dA:              output [K, N] (the size of the weights), reduction over the M tokens;
//   dX = dA·Wg^T + dB·Wu^T:   M output rows, reduction over 2N (the weights read once).
// Both are memory-bound at decode sizes (dW on writing [K, N], dX on reading the weights), so each
// family below is shaped after the bytes it moves.
//
// (a) Short reduction (K0 + K1 <= kShortMaxK), "dW": a CTA owns a 128x128 tile of C and runs the
//     sm_80 tensor-core main loop (mma_tile.cuh: every dtype and stride pattern, 3xTF32 for f32)
//     over the whole reduction, then stages the fp32 tile in shared memory and writes C once with
//     16-byte stores along C's contiguous dimension: rows, or columns for the nn.Linear-layout
//     weight gradients (reading C the same way to accumulate). C without a unit stride (the
//     interleaved layout) gets scalar stores along rows. When one K tile holds the whole reduction
//     (one product, M <= 32 tokens in bf16/f16, 16 in f32), persistent CTAs walk the tiles and
//     load the next tile's operands while the current one is multiplied and stored.
// (b) Few rows, long reduction, "dX": weight streaming as in small_m.cu. The reduction steps of
//     both products form one sequence (full steps first, then the at most two partial ones) split
//     evenly over the 8 warps of a CTA; each warp owns 32 columns of C and one block of up to 32
//     rows of A, loads the weights straight into mma.sync fragments (swap-AB: weight columns on
//     the 16-row side of m16n8k16, rows of A on the 8-column side), two steps of loads in flight,
//     and the 8 partial sums meet in a fixed binary tree in shared memory. Layouts of B:
//       RContig  B [R, Nc] with rs = 1 (the transposed [K, N] weights of dX): 16-byte loads of 8
//                consecutive reduction elements of a column, which are A fragments as they are
//                (the reduction order is permuted identically on the A side);
//       NContig  cs = 1 (the nn.Linear layout's dX, and forward GEMMs at decode): 8-byte loads of
//                4 columns, rows paired by byte permutes;
//       generic  f32 or other strides: lanes along columns, fp32 FMA on CUDA cores.
//     M above one block of 32 rows loops over row blocks (each re-reading the weights; consecutive
//     CTAs share the columns, so the re-reads mostly hit L2): 64 rows still beat the sm_90a GEMM.
// Deterministic: fixed partition of every reduction, fixed summation trees, no atomics; no
// allocation and no host synchronization (graph-capturable). Declines nothing it is forced to do
// (kPathSmallM); in the automatic path it takes only the shapes where it was measured faster.
//
// Compile check:
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a \
//     -gencode=arch=compute_80,code=sm_80 -I cuda/include -I cuda/src -Xptxas -v -c gemm_short.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernel_util.cuh"
#include "kernels.h"
#include "mma_tile.cuh"

namespace fsg {
namespace {

// ======================================= (a) short reduction =======================================

enum StoreMode : int { kRowVec = 0, kColVec = 1, kScalar = 2 };

struct ShortParams {
  Product p0, p1;
  int nprod;
  int64_t m, n, m_tiles, n_tiles;
  VecRef bias;
  MatRef c;
  int accumulate;
  int mode;  // StoreMode
};

constexpr int kStagePitch = kTileR + 4;  // floats per staged line (keeps the two staging patterns conflict-light)
static_assert(kTileR * kStagePitch * 4 <= smem_bytes(DType::BF16), "staged tile must fit the pipeline's smem");
static_assert(kTileR * kStagePitch * 4 <= smem_bytes(DType::F32), "staged tile must fit the pipeline's smem");

template <class T> __device__ __forceinline__ uint16_t bits16(float v);
template <> __device__ __forceinline__ uint16_t bits16<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <> __device__ __forceinline__ uint16_t bits16<__half>(float v) { return __half_as_ushort(__float2half_rn(v)); }
template <class T> __device__ __forceinline__ float from_bits16(uint32_t b);
template <> __device__ __forceinline__ float from_bits16<__nv_bfloat16>(uint32_t b) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(b)));
}
template <> __device__ __forceinline__ float from_bits16<__half>(uint32_t b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
}

// 16 bytes of C: load (as fp32) and store (from fp32).
template <class T> struct Chunk {
  static constexpr int kN = 8;
  static __device__ __forceinline__ void load(const T* p, float (&v)[kN]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = from_bits16<T>(w[i] & 0xffffu);
      v[2 * i + 1] = from_bits16<T>(w[i] >> 16);
    }
  }
  static __device__ __forceinline__ void store(T* p, const float (&v)[kN]) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = bits16<T>(v[2 * i]) | (static_cast<uint32_t>(bits16<T>(v[2 * i + 1])) << 16);
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  }
};
template <> struct Chunk<float> {
  static constexpr int kN = 4;
  static __device__ __forceinline__ void load(const float* p, float (&v)[kN]) {
    const float4 u = *reinterpret_cast<const float4*>(p);
    v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
  }
  static __device__ __forceinline__ void store(float* p, const float (&v)[kN]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

// The tile epilogue of both (a) kernels: stages acc + bias in `st` (128 x kStagePitch floats, free
// for writing: the caller synchronized), then writes the tile at (m0, n0) of C once.
template <DType D>
__device__ __forceinline__ void store_tile(const ShortParams& p, const Acc& acc, float* st, int64_t m0, int64_t n0) {
  using T = typename Elem<D>::T;
  using Ch = Chunk<T>;
  constexpr int kEpc = Ch::kN;
  constexpr int kChunksPerLine = kTileR / kEpc;
  // Stage acc + bias: st[outer][inner], inner along C's contiguous dimension.
  const bool by_col = p.mode == kColVec;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ni = 0; ni < 8; ++ni)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int c = wn * 64 + ni * 8 + 2 * t + e;
      const float bias = n0 + c < p.n ? p.bias.load_or(n0 + c, 0.f) : 0.f;
#pragma unroll
      for (int mi = 0; mi < kWarpM16; ++mi)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = wm * kWarpRows + mi * 16 + h * 8 + g;
          st[by_col ? c * kStagePitch + r : r * kStagePitch + c] = acc[mi][ni][2 * h + e] + bias;
        }
    }
  __syncthreads();

  // Write C once: consecutive threads take consecutive 16-byte chunks of a line.
  for (int q = threadIdx.x; q < kTileR * kChunksPerLine; q += kThreads) {
    const int outer = q / kChunksPerLine, inner = (q % kChunksPerLine) * kEpc;
    const float* src = st + outer * kStagePitch + inner;
    const int64_t row0 = m0 + (by_col ? inner : outer), col0 = n0 + (by_col ? outer : inner);
    const bool full = by_col ? (col0 < p.n && row0 + kEpc <= p.m) : (row0 < p.m && col0 + kEpc <= p.n);
    if (p.mode != kScalar && full) {
      T* dst = static_cast<T*>(p.c.p) + row0 * p.c.rs + col0 * p.c.cs;
      float v[kEpc];
#pragma unroll
      for (int i = 0; i < kEpc; ++i) v[i] = src[i];
      if (p.accumulate) {
        float old[kEpc];
        Ch::load(dst, old);
#pragma unroll
        for (int i = 0; i < kEpc; ++i) v[i] += old[i];
      }
      Ch::store(dst, v);
    } else {
#pragma unroll
      for (int i = 0; i < kEpc; ++i) {
        const int64_t row = by_col ? row0 + i : row0, col = by_col ? col0 : col0 + i;
        if (row >= p.m || col >= p.n) continue;
        float v = src[i];
        if (p.accumulate) v += p.c.load<T>(row, col);
        p.c.store<T>(row, col, v);
      }
    }
  }
}

// One 128x128 tile per CTA, the whole (short) reduction through the sm_80 main loop.
template <DType D, Layout LA, Layout LB>
__global__ void __launch_bounds__(kThreads, D == DType::F32 ? 1 : 2) short_kernel(const __grid_constant__ ShortParams p) {
  extern __shared__ __align__(16) char smem[];
  int64_t tm, tn;
  if (!tile_coords(p.m_tiles, p.n_tiles, tm, tn)) return;
  const int64_t m0 = tm * kTileR, n0 = tn * kTileR;
  Acc acc;
  mainloop<D, LA, LB, 1>(p.p0, p.p1, p.nprod, m0, n0, smem, acc);
  __syncthreads();  // every warp is done reading the last stage before the staging overwrites it
  store_tile<D>(p, acc, reinterpret_cast<float*>(smem), m0, n0);
}

// One product whose reduction fits one K tile (M <= 32 tokens for dW): persistent CTAs walk the
// tiles, loading the next tile's operands (cp.async, second buffer) while the current tile is
// multiplied, staged and stored, so a CTA's load latency hides behind its own stores.
template <DType D, Layout LA, Layout LB>
__global__ void __launch_bounds__(kThreads, D == DType::F32 ? 1 : 2) short1_kernel(const __grid_constant__ ShortParams p) {
  constexpr int kB = D == DType::F32 ? 4 : 2;
  using G = Geo<kB>;
  extern __shared__ __align__(16) char smem[];
  float* st = reinterpret_cast<float*>(smem + 2 * G::kStageBytes);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t ntiles = p.m_tiles * p.n_tiles;
  int64_t tile = blockIdx.x;
  if (tile < ntiles) load_stage<D, LA, LB, 1>(p.p0, 0, (tile % p.m_tiles) * kTileR, (tile / p.m_tiles) * kTileR, smem, tid);
  cp_async_commit();
  for (int i = 0; tile < ntiles; tile += gridDim.x, ++i) {
    const int64_t m0 = (tile % p.m_tiles) * kTileR, n0 = (tile / p.m_tiles) * kTileR;
    const int64_t next = tile + gridDim.x;
    // The other buffer was last read by the previous tile's MMAs, which every thread finished
    // before store_tile's barrier.
    if (next < ntiles)
      load_stage<D, LA, LB, 1>(p.p0, 0, (next % p.m_tiles) * kTileR, (next / p.m_tiles) * kTileR,
                               smem + ((i + 1) & 1) * G::kStageBytes, tid);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // this tile's operands are visible; the previous tile's stores are done reading st
    const char* stage = smem + (i & 1) * G::kStageBytes;
    Acc acc;
    zero(acc);
    if constexpr (D == DType::F32) {
      mma_tile32<LA, LB, 1>(reinterpret_cast<const float*>(stage),
                            reinterpret_cast<const float*>(stage + G::kTileElems * kB), acc, wm, wn, lane);
    } else {
      mma_tile16<D, LA, LB, 1>(reinterpret_cast<const uint16_t*>(stage),
                               reinterpret_cast<const uint16_t*>(stage + G::kTileElems * kB), acc, wm, wn, lane);
    }
    store_tile<D>(p, acc, st, m0, n0);
  }
  cp_async_wait<0>();
}

constexpr int short1_smem(DType d) {
  return 2 * (d == DType::F32 ? Geo<4>::kStageBytes : Geo<2>::kStageBytes) + kTileR * kStagePitch * 4;
}

// Test hook: build with -DFSG_EMULATE_SMEM_OPTIN=101376 to choose kernels on an H100 as on a GPU
// whose blocks may use only 99 KB of shared memory.
#ifndef FSG_EMULATE_SMEM_OPTIN
#define FSG_EMULATE_SMEM_OPTIN 0
#endif

// Whether a block of the current device may use `smem` bytes of shared memory. short1_kernel's
// double buffer and staging (106 KB) exceed the 99 KB that compute capability 8.6, 8.9 and 12.x
// allow; there the general kernel, whose staging reuses its ring, takes one-tile reductions too.
bool smem_fits(int smem) {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (FSG_EMULATE_SMEM_OPTIN > 0 && optin > FSG_EMULATE_SMEM_OPTIN) optin = FSG_EMULATE_SMEM_OPTIN;
  return smem <= optin;
}

template <DType D, Layout LA, Layout LB>
fsg_status launch_short_kernel(const ShortParams& p, cudaStream_t s) {
  const bool one_tile = p.nprod == 1 && p.p0.ktiles == 1 && smem_fits(short1_smem(D));
  auto* kernel = one_tile ? short1_kernel<D, LA, LB> : short_kernel<D, LA, LB>;
  const int smem = one_tile ? short1_smem(D) : smem_bytes(D);
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) {
    set_error("gemm_short_kernel: cudaFuncSetAttribute(%d bytes of shared memory): %s", smem, cudaGetErrorString(e));
    return FSG_ERR_CUDA;
  }
  if (!one_tile) {
    dim3 grid;
    if (!tile_grid(p.m_tiles, p.n_tiles, &grid)) {
      set_error("gemm_short_kernel: %lld x %lld output tiles exceed the launch limits", static_cast<long long>(p.m_tiles),
                static_cast<long long>(p.n_tiles));
      return FSG_ERR_TOO_LARGE;
    }
    kernel<<<grid, kThreads, smem, s>>>(p);
    return launch_status("gemm_short_kernel");
  }
  // Persistent: as many CTAs as fit at once (host queries only, capture-safe).
  int dev = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess) {
    cudaGetLastError();
    sms = 132, per_sm = 1;
  }
  const int64_t ntiles = p.m_tiles * p.n_tiles, slots = static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  kernel<<<static_cast<unsigned>(ntiles < slots ? ntiles : slots), kThreads, smem, s>>>(p);
  return launch_status("gemm_short1_kernel");
}

// rows x K operand of a Mat: A is [M, K] (rows along Mat rows), B is [K, N] (rows along Mat cols).
TileSrc src_a(const Mat& m) { return TileSrc{m.data, m.rs, m.cs, m.rows, m.cols, 0}; }
TileSrc src_b(const Mat& m) { return TileSrc{m.data, m.cs, m.rs, m.cols, m.rows, 0}; }

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }
bool aligned8(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 7u) == 0; }

template <DType D>
fsg_status run_short(const GemmArgs& a, cudaStream_t s) {
  const int bytes = dtype_bytes(D);
  ShortParams p{};
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
  const Mat& c = a.c;
  if (c.cs == 1 && aligned16(c.data) && (c.rows == 1 || (c.rs * bytes) % 16 == 0)) p.mode = kRowVec;
  else if (c.rs == 1 && aligned16(c.data) && (c.cols == 1 || (c.cs * bytes) % 16 == 0)) p.mode = kColVec;
  else p.mode = kScalar;
  if (la == Layout::kKMajor)
    return lb == Layout::kKMajor ? launch_short_kernel<D, Layout::kKMajor, Layout::kKMajor>(p, s)
                                 : launch_short_kernel<D, Layout::kKMajor, Layout::kMNMajor>(p, s);
  return lb == Layout::kKMajor ? launch_short_kernel<D, Layout::kMNMajor, Layout::kKMajor>(p, s)
                               : launch_short_kernel<D, Layout::kMNMajor, Layout::kMNMajor>(p, s);
}

// ===================================== (b) weight streaming =====================================

struct StreamParams {
  const void* a[2];
  int64_t ars[2], acs[2];
  const void* b[2];
  int64_t brs[2], bcs[2];
  int64_t r[2];            // reduction length of each product (0 for an absent second product)
  int64_t full[2], part[2];  // whole steps of each product, and 1 if a partial step ends it
  int64_t steps;           // full[0] + full[1] + part[0] + part[1]
  int64_t m, n;
  VecRef bias;
  MatRef c;
  int accumulate;
  int a_vec;  // rows of A in both products take the layout's vector loads
};

// Step s of the sequence -> product and first reduction index. Full steps first, then partial.
__device__ __forceinline__ void step_of(const StreamParams& p, int64_t s, int kstep, int& pi, int64_t& k0) {
  if (s < p.full[0]) {
    pi = 0, k0 = s * kstep;
  } else if (s < p.full[0] + p.full[1]) {
    pi = 1, k0 = (s - p.full[0]) * kstep;
  } else {
    pi = (s == p.full[0] + p.full[1] && p.part[0]) ? 0 : 1;
    k0 = p.full[pi] * kstep;
  }
}

__device__ __forceinline__ uint4 ldg_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 ldg_stream8(const void* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

// Raw 16-bit element (r, c) of a strided matrix, 0 outside [0, rows) x [0, cols).
__device__ __forceinline__ uint32_t raw16(const void* base, int64_t r, int64_t c, int64_t rs, int64_t cs,
                                          int64_t rows, int64_t cols) {
  if (r >= rows || c >= cols) return 0u;
  return static_cast<const uint16_t*>(base)[r * rs + c * cs];
}

// 2*NW consecutive reduction elements k.. of row `row` of A (product pi), packed in pairs.
template <int NW>
__device__ __forceinline__ void load_a(const StreamParams& p, int pi, int64_t row, int64_t k, bool fast,
                                       uint32_t (&w)[NW]) {
  if (row >= p.m) {
#pragma unroll
    for (int i = 0; i < NW; ++i) w[i] = 0u;
    return;
  }
  const uint16_t* ar = static_cast<const uint16_t*>(p.a[pi]) + row * p.ars[pi];
  if (fast && p.a_vec) {
    if constexpr (NW == 4) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(ar + k));
      w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(ar + k));
      w[0] = v.x, w[1] = v.y;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < NW; ++i) {
    const int64_t k0 = k + 2 * i, k1 = k0 + 1;
    const uint32_t lo = k0 < p.r[pi] ? ar[k0 * p.acs[pi]] : 0u;
    const uint32_t hi = k1 < p.r[pi] ? ar[k1 * p.acs[pi]] : 0u;
    w[i] = lo | (hi << 16);
  }
}

template <class T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};

// ---------------------------------------------------------------------------------------------
// RContig: B (r, n) at b + r + n*bcs. Warp: CG groups of 16 columns; step = 64 reduction
// elements. Thread (g, t) loads, for chunk c = 0, 1, k = k0 + 32c + 8t .. +7 of columns
// n + g and n + g + 8 (16 bytes each): words {P.x, Q.x, P.y, Q.y} are the A fragment of one
// m16n8k16 (A rows g / g+8 = the two columns, k slots {2t,2t+1} <-> k+0,1 and {2t+8,2t+9} <->
// k+2,3) and {P.z, Q.z, P.w, Q.w} of the next (k+4..7). The B fragment (8 rows of A on the n
// side) reads 16 bytes of A's row g at the same k: words 0,1 for the first mma, 2,3 for the next.
// D: row g / g+8 = the two columns, columns 2t, 2t+1 = rows of A.
// ---------------------------------------------------------------------------------------------
template <class T, int MB, int CG>
struct RContig {
  static constexpr int kStep = 64;
  static constexpr int kMB = MB;
  static constexpr int kCols = 16 * CG;
  static constexpr int kAcc = CG * MB * 4;
  struct Buf {
    uint4 w[2][CG][2];
    uint32_t x[2][MB][4];
  };
  using Acc = float[CG][MB][4];
  const StreamParams& p;
  int64_t n_warp, m_base;
  int g, t;

  __device__ __forceinline__ void load(int64_t s, bool fast, Buf& b) const {
    int pi;
    int64_t kb;
    step_of(p, s, kStep, pi, kb);
    const T* B = static_cast<const T*>(p.b[pi]);
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int64_t k = kb + 32 * c + 8 * t;
#pragma unroll
      for (int cg = 0; cg < CG; ++cg)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t n = n_warp + 16 * cg + 8 * h + g;
          if (fast) {
            b.w[c][cg][h] = ldg_stream16(B + n * p.bcs[pi] + k);
          } else {
            uint32_t q[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
              q[i] = raw16(B, k + 2 * i, n, p.brs[pi], p.bcs[pi], p.r[pi], p.n) |
                     (raw16(B, k + 2 * i + 1, n, p.brs[pi], p.bcs[pi], p.r[pi], p.n) << 16);
            b.w[c][cg][h] = make_uint4(q[0], q[1], q[2], q[3]);
          }
        }
#pragma unroll
      for (int mb = 0; mb < MB; ++mb) load_a<4>(p, pi, m_base + 8 * mb + g, k, fast, b.x[c][mb]);
    }
  }

  __device__ __forceinline__ void compute(const Buf& b, Acc& acc) const {
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
      for (int cg = 0; cg < CG; ++cg) {
        const uint4& P = b.w[c][cg][0];
        const uint4& Q = b.w[c][cg][1];
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          Mma<T>::run(acc[cg][mb], P.x, Q.x, P.y, Q.y, b.x[c][mb][0], b.x[c][mb][1]);
          Mma<T>::run(acc[cg][mb], P.z, Q.z, P.w, Q.w, b.x[c][mb][2], b.x[c][mb][3]);
        }
      }
  }

  // Shared-memory index of column `col` (within the warp's kCols) and row `row` (within the block).
  static __device__ __forceinline__ int index_of(int col, int row) {
    const int cg = col >> 4, h = (col >> 3) & 1, g = col & 7;
    const int mb = row >> 3, t = (row & 7) >> 1, el = row & 1;
    return (((cg * MB + mb) * 4 + h * 2 + el) * 32) + 4 * g + t;
  }
};

// ---------------------------------------------------------------------------------------------
// NContig: B (r, n) at b + r*brs + n. Warp: 32 columns; step = 32 reduction elements in two
// k16 halves. Thread (g, t) loads rows k = k0 + 16h + 4t .. +3, columns n + 4g .. +3 (8 bytes
// each). For j = 0, 1: A row g <-> column 4g + 2j, row g + 8 <-> 4g + 2j + 1, k slots {2t,2t+1}
// <-> rows 4t, 4t+1 and {2t+8, 2t+9} <-> rows 4t+2, 4t+3 (byte permutes pair the rows). The B
// fragment reads 8 bytes of A's row g at k. D: row g / g+8 = columns 4g+2j / +1, columns 2t,
// 2t+1 = rows of A.
// ---------------------------------------------------------------------------------------------
template <class T, int MB>
struct NContig {
  static constexpr int kStep = 32;
  static constexpr int kMB = MB;
  static constexpr int kCols = 32;
  static constexpr int kAcc = 2 * MB * 4;
  struct Buf {
    uint2 w[2][4];
    uint32_t x[2][MB][2];
  };
  using Acc = float[2][MB][4];
  const StreamParams& p;
  int64_t n_warp, m_base;
  int g, t;

  __device__ __forceinline__ void load(int64_t s, bool fast, Buf& b) const {
    int pi;
    int64_t kb;
    step_of(p, s, kStep, pi, kb);
    const T* B = static_cast<const T*>(p.b[pi]);
    const int64_t n = n_warp + 4 * g;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t k = kb + 16 * h + 4 * t;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (fast) {
          b.w[h][i] = ldg_stream8(B + (k + i) * p.brs[pi] + n);
        } else {
          uint32_t q[2];
#pragma unroll
          for (int j = 0; j < 2; ++j)
            q[j] = raw16(B, k + i, n + 2 * j, p.brs[pi], p.bcs[pi], p.r[pi], p.n) |
                   (raw16(B, k + i, n + 2 * j + 1, p.brs[pi], p.bcs[pi], p.r[pi], p.n) << 16);
          b.w[h][i] = make_uint2(q[0], q[1]);
        }
      }
#pragma unroll
      for (int mb = 0; mb < MB; ++mb) load_a<2>(p, pi, m_base + 8 * mb + g, k, fast, b.x[h][mb]);
    }
  }

  __device__ __forceinline__ void compute(const Buf& b, Acc& acc) const {
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const uint32_t r0 = j ? b.w[h][0].y : b.w[h][0].x, r1 = j ? b.w[h][1].y : b.w[h][1].x;
        const uint32_t r2 = j ? b.w[h][2].y : b.w[h][2].x, r3 = j ? b.w[h][3].y : b.w[h][3].x;
        const uint32_t a0 = __byte_perm(r0, r1, 0x5410);  // column 2j,   rows 0,1
        const uint32_t a1 = __byte_perm(r0, r1, 0x7632);  // column 2j+1, rows 0,1
        const uint32_t a2 = __byte_perm(r2, r3, 0x5410);  // column 2j,   rows 2,3
        const uint32_t a3 = __byte_perm(r2, r3, 0x7632);  // column 2j+1, rows 2,3
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) Mma<T>::run(acc[j][mb], a0, a1, a2, a3, b.x[h][mb][0], b.x[h][mb][1]);
      }
  }

  static __device__ __forceinline__ int index_of(int col, int row) {
    const int g = col >> 2, j = (col & 3) >> 1, eh = col & 1;
    const int mb = row >> 3, t = (row & 7) >> 1, el = row & 1;
    return (((j * MB + mb) * 4 + eh * 2 + el) * 32) + 4 * g + t;
  }
};

// Steps [s0, s1) of one warp: unguarded with two steps of loads in flight over the full steps
// (when all the warp's columns exist), then guarded single steps. The guarded buffer is a
// separate variable so that the pipelined buffers stay in registers.
template <class L>
__device__ __forceinline__ void stream_steps(const L& l, int64_t s0, int64_t s1, bool cols_full, typename L::Acc& acc) {
  const int64_t nfull = l.p.full[0] + l.p.full[1];
  const int64_t e = cols_full ? (s1 < nfull ? s1 : nfull) : s0;
  if (e > s0) {
    typename L::Buf b0, b1;
    l.load(s0, true, b0);
    if (s0 + 1 < e) l.load(s0 + 1, true, b1);
    for (int64_t s = s0; s < e; s += 2) {
      l.compute(b0, acc);
      if (s + 2 < e) l.load(s + 2, true, b0);
      if (s + 1 < e) {
        l.compute(b1, acc);
        if (s + 3 < e) l.load(s + 3, true, b1);
      }
    }
  }
  for (int64_t s = e > s0 ? e : s0; s < s1; ++s) {
    typename L::Buf b;
    l.load(s, false, b);
    l.compute(b, acc);
  }
}

// CTA: KW warps along the reduction, one warp's kCols columns. Work items (row block, column
// group) with the row block varying fastest, so CTAs running together share weight columns in L2.
template <class T, class L, int KW>
__global__ void __launch_bounds__(KW * 32, 1) stream_tc(const __grid_constant__ StreamParams p) {
  constexpr int kAcc = L::kAcc;
  constexpr int kSlots = KW / 2 > 0 ? KW / 2 : 1;
  constexpr int kRows = 8 * L::kMB;
  constexpr int kThreadsTc = KW * 32;
  __shared__ float red[kSlots][kAcc * 32];
  const int lane = threadIdx.x & 31, kw = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t s0 = p.steps * kw / KW, s1 = p.steps * (kw + 1) / KW;
  const int64_t rblocks = (p.m + kRows - 1) / kRows, cgroups = (p.n + L::kCols - 1) / L::kCols;
  for (int64_t item = blockIdx.x; item < rblocks * cgroups; item += gridDim.x) {
    const int64_t m_base = (item % rblocks) * kRows, n_warp = (item / rblocks) * L::kCols;
    const L l{p, n_warp, m_base, g, t};
    typename L::Acc acc;
    float* a = reinterpret_cast<float*>(&acc);
#pragma unroll
    for (int i = 0; i < kAcc; ++i) a[i] = 0.0f;
    stream_steps(l, s0, s1, n_warp + L::kCols <= p.n, acc);

    // Fixed-order tree over the KW warps: warp kw += warp kw + h for h = KW/2, ..., 1.
#pragma unroll
    for (int h = KW / 2; h >= 1; h /= 2) {
      if (kw >= h && kw < 2 * h) {
#pragma unroll
        for (int i = 0; i < kAcc; ++i) red[kw - h][i * 32 + lane] = a[i];
      }
      __syncthreads();
      if (kw < h) {
#pragma unroll
        for (int i = 0; i < kAcc; ++i) a[i] += red[kw][i * 32 + lane];
      }
      __syncthreads();
    }
    if (kw == 0) {
#pragma unroll
      for (int i = 0; i < kAcc; ++i) red[0][i * 32 + lane] = a[i];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kRows * L::kCols; idx += kThreadsTc) {
      const int r = idx / L::kCols, c = idx % L::kCols;
      const int64_t row = m_base + r, col = n_warp + c;
      if (row >= p.m || col >= p.n) continue;
      float v = red[0][L::index_of(c, r)] + p.bias.load_or(col, 0.0f);
      if (p.accumulate) v += p.c.load<T>(row, col);
      p.c.store<T>(row, col, v);
    }
    __syncthreads();
  }
}

// Any dtype and strides: lanes along columns (one each), 8 warps along the reduction in steps of
// 32 (each lane loads one element of every row of A, broadcast by shuffles), MR rows per block.
// Partial sums added in warp order 0..7.
template <class T, int MR>
__global__ void __launch_bounds__(256) stream_generic(const __grid_constant__ StreamParams p) {
  constexpr int KW = 8;
  __shared__ float red[KW][MR][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t s0 = p.steps * warp / KW, s1 = p.steps * (warp + 1) / KW;
  const int64_t rblocks = (p.m + MR - 1) / MR, cgroups = (p.n + 31) / 32;
  for (int64_t item = blockIdx.x; item < rblocks * cgroups; item += gridDim.x) {
    const int64_t m_base = (item % rblocks) * MR, n = (item / rblocks) * 32 + lane;
    const bool n_ok = n < p.n;
    float acc[MR];
#pragma unroll
    for (int r = 0; r < MR; ++r) acc[r] = 0.0f;
    for (int64_t s = s0; s < s1; ++s) {
      int pi;
      int64_t k0;
      step_of(p, s, 32, pi, k0);
      const T* A = static_cast<const T*>(p.a[pi]);
      const T* B = static_cast<const T*>(p.b[pi]);
      const int64_t left = p.r[pi] - k0;
      const int cnt = left < 32 ? static_cast<int>(left) : 32;
      float xr[MR];
#pragma unroll
      for (int r = 0; r < MR; ++r) {
        const int64_t row = m_base + r;
        xr[r] = (row < p.m && lane < cnt) ? to_f32(A[row * p.ars[pi] + (k0 + lane) * p.acs[pi]]) : 0.0f;
      }
      const T* bcol = B + (n_ok ? n * p.bcs[pi] : 0) + k0 * p.brs[pi];
#pragma unroll 4
      for (int kk = 0; kk < cnt; ++kk) {
        const float wv = n_ok ? to_f32(bcol[kk * p.brs[pi]]) : 0.0f;
#pragma unroll
        for (int r = 0; r < MR; ++r) acc[r] = fmaf(__shfl_sync(0xffffffffu, xr[r], kk), wv, acc[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < MR; ++r) red[warp][r][lane] = acc[r];
    __syncthreads();
    for (int idx = threadIdx.x; idx < MR * 32; idx += 256) {
      const int r = idx / 32, l = idx % 32;
      const int64_t row = m_base + r, col = (item / rblocks) * 32 + l;
      if (row >= p.m || col >= p.n) continue;
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < KW; ++w) v += red[w][r][l];
      v += p.bias.load_or(col, 0.0f);
      if (p.accumulate) v += p.c.load<T>(row, col);
      p.c.store<T>(row, col, v);
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------
// Host side of (b).
// ---------------------------------------------------------------------------------------------

enum class StreamKind { kRContig, kNContig, kGeneric };

// Every product's B in the layout, with the alignment its vector loads need.
StreamKind stream_kind(const GemmArgs& a) {
  if (a.c.dtype == DType::F32) return StreamKind::kGeneric;
  const Mat* bs[2] = {&a.b0, a.a1.present() ? &a.b1 : nullptr};
  bool rc = true, nc = true;
  for (const Mat* b : bs) {
    if (b == nullptr) continue;
    rc = rc && b->rs == 1 && aligned16(b->data) && (b->cols == 1 || b->cs % 8 == 0);
    nc = nc && b->cs == 1 && aligned8(b->data) && (b->rows == 1 || b->rs % 4 == 0);
  }
  if (rc) return StreamKind::kRContig;
  if (nc) return StreamKind::kNContig;
  return StreamKind::kGeneric;
}

StreamParams stream_params(const GemmArgs& a, int kstep, int a_align_elems) {
  StreamParams p{};
  const Mat* as[2] = {&a.a0, &a.a1};
  const Mat* bs[2] = {&a.b0, &a.b1};
  const int nprod = a.a1.present() ? 2 : 1;
  p.a_vec = 1;
  for (int i = 0; i < 2; ++i) {
    const int src = i < nprod ? i : 0;  // an absent second product points at the first, with r = 0
    p.a[i] = as[src]->data, p.ars[i] = as[src]->rs, p.acs[i] = as[src]->cs;
    p.b[i] = bs[src]->data, p.brs[i] = bs[src]->rs, p.bcs[i] = bs[src]->cs;
    p.r[i] = i < nprod ? as[i]->cols : 0;
    p.full[i] = p.r[i] / kstep;
    p.part[i] = p.r[i] % kstep != 0 ? 1 : 0;
    if (i < nprod) {
      const Mat& m = *as[i];
      const uintptr_t align = static_cast<uintptr_t>(a_align_elems) * 2;
      p.a_vec = p.a_vec && m.cs == 1 && (reinterpret_cast<uintptr_t>(m.data) % align) == 0 &&
                (m.rows == 1 || m.rs % a_align_elems == 0);
    }
  }
  p.steps = p.full[0] + p.full[1] + p.part[0] + p.part[1];
  p.m = a.c.rows, p.n = a.c.cols;
  p.bias = vec_ref(a.bias), p.c = mat_ref(a.c), p.accumulate = a.accumulate ? 1 : 0;
  return p;
}

unsigned grid_items(int64_t items) { return static_cast<unsigned>(items < 0x7fffffff ? items : 0x7fffffff); }

template <class T, class L, int KW>
fsg_status launch_tc(const StreamParams& p, cudaStream_t s, const char* name) {
  const int64_t rows = 8 * L::kMB;
  const int64_t items = ((p.m + rows - 1) / rows) * ((p.n + L::kCols - 1) / L::kCols);
  stream_tc<T, L, KW><<<grid_items(items), KW * 32, 0, s>>>(p);
  return launch_status(name);
}

template <class T>
fsg_status launch_rcontig(const GemmArgs& a, cudaStream_t s) {
  const StreamParams p = stream_params(a, 64, 8);
  if (p.m <= 8) return launch_tc<T, RContig<T, 1, 2>, 8>(p, s, "gemm_stream_rcontig<8 rows>");
  if (p.m <= 16) return launch_tc<T, RContig<T, 2, 2>, 8>(p, s, "gemm_stream_rcontig<16 rows>");
  return launch_tc<T, RContig<T, 4, 2>, 8>(p, s, "gemm_stream_rcontig<32 rows>");
}

template <class T>
fsg_status launch_ncontig(const GemmArgs& a, cudaStream_t s) {
  const StreamParams p = stream_params(a, 32, 4);
  if (p.m <= 8) return launch_tc<T, NContig<T, 1>, 8>(p, s, "gemm_stream_ncontig<8 rows>");
  if (p.m <= 16) return launch_tc<T, NContig<T, 2>, 8>(p, s, "gemm_stream_ncontig<16 rows>");
  return launch_tc<T, NContig<T, 4>, 8>(p, s, "gemm_stream_ncontig<32 rows>");
}

template <class T, int MR>
fsg_status launch_generic_mr(const StreamParams& p, cudaStream_t s) {
  const int64_t items = ((p.m + MR - 1) / MR) * ((p.n + 31) / 32);
  stream_generic<T, MR><<<grid_items(items), 256, 0, s>>>(p);
  return launch_status("gemm_stream_generic");
}

template <class T>
fsg_status launch_generic(const GemmArgs& a, cudaStream_t s) {
  const StreamParams p = stream_params(a, 32, 1);
  if (p.m <= 1) return launch_generic_mr<T, 1>(p, s);
  if (p.m <= 2) return launch_generic_mr<T, 2>(p, s);
  if (p.m <= 4) return launch_generic_mr<T, 4>(p, s);
  return launch_generic_mr<T, 8>(p, s);
}

template <class T>
fsg_status run_stream(const GemmArgs& a, StreamKind kind, cudaStream_t s) {
  if constexpr (std::is_same_v<T, float>) {
    return launch_generic<T>(a, s);
  } else {
    if (kind == StreamKind::kRContig) return launch_rcontig<T>(a, s);
    if (kind == StreamKind::kNContig) return launch_ncontig<T>(a, s);
    return launch_generic<T>(a, s);
  }
}

// Thresholds of the automatic path, from bench/backward-small-m.ts on H100 (bench/NOTES.md,
// "Small-M backward"), K = 4096, N = 14336 bf16:
//   (a) dW, R = M <= 128: 0.063 ms (M <= 32) .. 0.116 ms (M = 128) vs 0.18 (sm_90a) / 0.47 (sm_80);
//   (b) dX, reduction-contiguous B: 0.084 (M = 1) .. 0.142 ms (M = 64) vs 0.26 (sm_90a); at M = 128
//       0.258 vs 0.260: left to sm_90a. Column-contiguous B (nn.Linear layout): 0.089 .. 0.121 ms
//       up to M = 32, 0.40 vs 0.27 (sm_90a) at M = 128. The generic kernel is not measured: forced only.
// Those sm_90a numbers predate its TMA-store epilogue and split-K: on Hopper kernel_select.cpp now
// tries the sm_90a GEMM before this file for (a), and for (b) above 16 rows when the backward
// gives split-K scratch (bench/NOTES.md, Hopper step 11). The thresholds below serve other GPUs,
// f32, and calls without scratch.
constexpr int64_t kShortMaxK = 256;        // (a) takes reductions up to this when forced
constexpr int64_t kAutoShortMaxK = 128;    // ... and automatically
constexpr int64_t kAutoRContigMaxM = 64;   // (b) reduction-contiguous B, automatically
constexpr int64_t kAutoNContigMaxM = 32;   // (b) column-contiguous B, automatically
constexpr int64_t kAutoStreamMinK = 1024;  // (b) only for long reductions, automatically

}  // namespace

fsg_status cuda_gemm_short(const GemmArgs& a, Stream s, bool forced, bool* handled) {
  *handled = false;
  const int64_t M = a.c.rows;
  const int64_t R = a.reduction();
  if (R <= kShortMaxK) {
    if (!forced && R > kAutoShortMaxK) return FSG_OK;
    *handled = true;
    switch (a.c.dtype) {
      case DType::F32: return run_short<DType::F32>(a, s);
      case DType::F16: return run_short<DType::F16>(a, s);
      case DType::BF16: return run_short<DType::BF16>(a, s);
      default: *handled = false; return FSG_OK;
    }
  }
  const StreamKind kind = stream_kind(a);
  if (!forced) {
    const int64_t max_m = kind == StreamKind::kRContig ? kAutoRContigMaxM : kind == StreamKind::kNContig ? kAutoNContigMaxM : 0;
    if (R < kAutoStreamMinK || M > max_m) return FSG_OK;
  }
  *handled = true;
  switch (a.c.dtype) {
    case DType::F32: return run_stream<float>(a, kind, s);
    case DType::F16: return run_stream<__half>(a, kind, s);
    case DType::BF16: return run_stream<__nv_bfloat16>(a, kind, s);
    default: *handled = false; return FSG_OK;
  }
}

}  // namespace fsg
