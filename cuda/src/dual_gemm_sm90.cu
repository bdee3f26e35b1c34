// dual_gemm_sm90.cu: fsg::cuda_dual_gemm_sm90, the Hopper (sm_90a) fused SwiGLU dual GEMM:
// wgmma (m64n256k16, fp32 accumulators) fed by TMA through a multistage mbarrier ring, with
// producer/consumer warp specialisation on a persistent grid. Helpers: sm90_ptx.cuh.
//
// One CTA = 3 warpgroups (384 threads):
//   warpgroup 0  producer (setmaxnreg 40): one thread issues the TMA loads of each stage (x tile
//                128x64, gate and up tiles 64x128 each: 48 KB per stage, 4 stages) once the
//                consumers (of both CTAs of its 2-CTA cluster, which share the weight tiles: each
//                loads one and multicasts it) freed it;
//   warpgroups 1, 2  consumers (setmaxnreg 232): each owns 64 rows of the 128-row tile and
//                accumulates gate and up side by side in one m64n256 accumulator (columns 0..127
//                gate, 128..255 up: the two weight tiles sit back to back in shared memory, so one
//                descriptor spans both), keeps one stage of MMAs in flight (wait_group 1), then
//                runs the epilogue: the outputs (z, bf16/fp16 or fp8 saves; dA, dB in the
//                backward) computed in place in the accumulators, staged in 16 KB of shared
//                memory per consumer and stored with TMA (sm90_store.cuh). Outputs TMA cannot
//                address (rows not 16-byte aligned) are stored from registers instead.
// Tiles (128 rows x 128 output columns) are visited in bands of kGroupM row tiles so that the CTAs
// of one wave share x and weight tiles in L2 (measured: band 1 -> 308, 16 -> 441, 64 -> 418
// TFLOP/s). The producer runs ahead into the next tile while the consumers run the epilogue.
// Weights: N-contiguous ([K,N], packed halves of [K,2N]) are loaded as MN-major B (two 64-column
// boxes per weight, transposed wgmma B); K-contiguous (nn.Linear [N,K] seen transposed) as
// K-major B. Everything TMA cannot address (f32, non-unit inner stride, strides or bases not
// 16-byte aligned) is declined and runs on the sm_80 kernels.
//
// Compile-time options (defaults are the measured best on an H100):
//   FSG_SM90_CLUSTER 1  no clusters. The default, 2: 2-CTA clusters along M; each CTA loads one
//                       weight (gate or up) and multicasts it to both, halving weight traffic from
//                       L2. Never slower in interleaved A/B runs, 0-4% faster at 8192 rows (7 runs
//                       at 8192x4096x14336: median 734 vs 729 TFLOP/s, best 792 vs 767; H200 747
//                       and 805 vs 694 and 779); bench/NOTES.md, Hopper step 12.
//   FSG_SM90_WAIT1 0    wait for each stage's MMAs before freeing it (same speed within noise).
//   FSG_SM90_STAGES, FSG_SM90_GROUP_M, FSG_SM90_MIN_M (smallest M taken unless forced),
//   FSG_SM90_LEAN_KINDS 0 (GEGLU, ReGLU, bilinear, SiLU with parameters or fp8 saves through the
//                       general epilogue; for A/B runs).
//
// Build (standalone check): nvcc -std=c++17 -O3 --expt-relaxed-constexpr
//   -gencode=arch=compute_90a,code=sm_90a -I cuda/include -I cuda/src -c cuda/src/dual_gemm_sm90.cu
#include <cuda.h>  // CUtensorMap and the driver enums: types only, libcuda is not linked
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>

#include "activation_math.h"
#include "fp8_block.cuh"
#include "backend.h"
#include "kernel_util.cuh"
#include "kernels.h"
#include "sm90_ptx.cuh"
#include "sm90_store.cuh"
#include "sm90_tma.h"

namespace fsg {
namespace {

#ifndef FSG_SM90_STAGES
#define FSG_SM90_STAGES 4
#endif
#ifndef FSG_SM90_GROUP_M
#define FSG_SM90_GROUP_M 16
#endif
#ifndef FSG_SM90_CLUSTER
#define FSG_SM90_CLUSTER 2
#endif
#ifndef FSG_SM90_WAIT1
#define FSG_SM90_WAIT1 1
#endif
#ifndef FSG_SM90_LEAN_KINDS
#define FSG_SM90_LEAN_KINDS 1  // 0: every forward but plain SwiGLU runs the general epilogue (A/B)
#endif
#ifndef FSG_SM90_MIN_M
#define FSG_SM90_MIN_M 64
#endif

constexpr int kBM = 128;      // rows of x per tile (2 consumer warpgroups x 64)
constexpr int kBN = 128;      // output columns per tile (gate and up: 256 accumulator columns)
constexpr int kBK = 64;       // K per stage: 64 16-bit elements = one 128-byte swizzle row
constexpr int kStages = FSG_SM90_STAGES;
constexpr int kGroupM = FSG_SM90_GROUP_M;
constexpr int kCluster = FSG_SM90_CLUSTER;  // CTAs of a cluster: row tiles sharing weight tiles
[[maybe_unused]] constexpr bool kMulticast = kCluster > 1;  // weight tiles multicast to both CTAs of a cluster
constexpr int kThreads = 384;
// Epilogue instantiations (kKind) beyond activation_math.h's kGluGeneral (the general one) and
// kGluSiluParams (SiLU with its parameters folded, no fp8 saves):
constexpr int kSiluFp8 = -3;  // forward: SiLU (plain or with parameters) with fp8 saves
constexpr int kXBytes = kBM * kBK * 2;                     // 16 KB
constexpr int kWBytes = kBN * kBK * 2;                     // 16 KB per weight
constexpr int kStageBytes = kXBytes + 2 * kWBytes;         // 48 KB
// + the consumers' output staging buffers (sm90_store.cuh) + slack to align to 1024
constexpr int kSmemBytes = kStages * kStageBytes + 2 * sm90::kSlabBytes + 1024;
static_assert(kStageBytes % 1024 == 0, "stages must keep 1024-byte alignment (128B swizzle)");

struct Params {
  int m, n;
  int m_groups, n_tiles, k_tiles;  // m_groups: groups of kCluster row tiles
  int64_t tiles;                   // m_groups * n_tiles, the units a cluster takes in turn
  VecRef bg, bu;
  MatRef z, a_out, b_out;  // kForward (a_out/b_out: p == nullptr when absent or fp8)
  Fp8Ref a8, b8;           // kForward fp8 saves (p == nullptr unless fp8)
  MatRef dz, da, db;       // kBackward
  // Per matrix: two adjacent columns form one aligned 4-byte access (cs == 1, even rs, aligned).
  bool z_v2, a_v2, b_v2, dz_v2, da_v2, db_v2;
  bool tma_store;  // every output (but fp8 saves) stored with TMA (sm90_store.cuh)
  fsg_glu_params act;  // SwiGLU or a GLU variant (activation_math.h)
  SiluGlu silu;        // kGluSiluParams, kSiluFp8: act folded on the host (fold_silu_glu_unit_gate)
};

}  // namespace

// Device helpers (named namespace: the non-sm_90a passes compile them without using them).
namespace sm90_detail {

// Columns c and c+1 of row r (c+1 only when has1).
template <class T>
__device__ __forceinline__ void store2(const MatRef& o, bool v2, int64_t r, int64_t c, float v0, float v1,
                                       bool has1) {
  if (v2 && has1) {
    *reinterpret_cast<typename Pair<T>::T2*>(static_cast<T*>(o.p) + r * o.rs + c) = Pair<T>::make(v0, v1);
  } else {
    o.store<T>(r, c, v0);
    if (has1) o.store<T>(r, c + 1, v1);
  }
}
template <class T>
__device__ __forceinline__ float2 load2(const MatRef& o, bool v2, int64_t r, int64_t c, bool has1) {
  if (v2 && has1)
    return Pair<T>::split(*reinterpret_cast<const typename Pair<T>::T2*>(static_cast<const T*>(o.p) + r * o.rs + c));
  return make_float2(o.load<T>(r, c), has1 ? o.load<T>(r, c + 1) : 0.f);
}

// Unit t -> (row-tile group, column tile): bands of kGroupM row tiles, column-major in a band.
__device__ __forceinline__ void tile_coords(int64_t t, const Params& p, int& tg, int& tn) {
  constexpr int kGroups = kGroupM / kCluster;
  const int64_t band_tiles = static_cast<int64_t>(kGroups) * p.n_tiles;
  const int band = static_cast<int>(t / band_tiles);
  const int first = band * kGroups;
  const int rows = min(kGroups, p.m_groups - first);
  const int r = static_cast<int>(t - band * band_tiles);
  tg = first + r % rows;
  tn = r / rows;
}

#if FSG_SM90_ENABLED  // only the sm_90a pass has a caller
// The general epilogue's unit (see the kernel): 8 outputs of one lane for a 32-column block, and
// the block's fp8 saves when asked for.
static __device__ __noinline__ Block8 glu_block(const fsg_glu_params& act, const Fp8Ref& a8, const Fp8Ref& b8,
                                                int64_t row, int64_t c0, int64_t n, Block8 g, Block8 u) {
  Block8 z;
#pragma unroll
  for (int i = 0; i < 8; ++i) z.v[i] = glu_value(act, g.v[i], u.v[i]);
  if (a8.p) store_fp8_block(a8, row, c0, n, g);
  if (b8.p) store_fp8_block(b8, row, c0, n, u);
  return z;
}
#endif

// z = the lean kind's value into the gate half of the accumulators (g in d[0..63], u in d[64..127]).
// h = 0 or 1: row half h's values only (rows row0 + 8h: accumulator pairs with bit 1 of i = h), for
// unrolled loops, where the test folds away.
constexpr int kBothHalves = -1;
template <int kKind>
__device__ __forceinline__ void kind_in_place(float (&d)[128], const SiluGlu& f, int h = kBothHalves) {
#pragma unroll
  for (int i = 0; i < 64; ++i)
    if (h == kBothHalves || ((i >> 1) & 1) == h) d[i] = lean_glu_value<kKind>(f, d[i], d[i + 64]);
}

// Calls f with the lean SiLU kind for act: FSG_ACT_SILU for plain SwiGLU, kGluSiluParams
// otherwise, as a std::integral_constant, so each case instantiates its own code and nothing
// branches inside it.
template <class F> __device__ __forceinline__ void with_silu_kind(const fsg_glu_params& act, F&& f) {
  if (is_plain_swiglu(act)) f(std::integral_constant<int, FSG_ACT_SILU>{});
  else f(std::integral_constant<int, kGluSiluParams>{});
}

// z = the GLU of kind kAct with its parameters into the gate half of the accumulators.
template <int kAct>
__device__ __forceinline__ void glu_in_place(float (&d)[128], fsg_glu_params act) {
  act.activation = kAct;  // the activation's switch folds to this kind
#pragma unroll
  for (int i = 0; i < 64; ++i) d[i] = glu_value_general(act, d[i], d[i + 64]);
}

template <DType D, int kTransB>
__device__ __forceinline__ void wgmma_tile(float (&d)[128], uint64_t da, uint64_t db, int scale_d) {
#if FSG_SM90_ENABLED
  if constexpr (D == DType::BF16)
    sm90::wgmma_m64n256k16_bf16<kTransB>(d, da, db, scale_d);
  else
    sm90::wgmma_m64n256k16_f16<kTransB>(d, da, db, scale_d);
#endif
}

}  // namespace sm90_detail

namespace {
using namespace sm90_detail;


#if FSG_SM90_CLUSTER == 2
#define FSG_SM90_CLUSTER_DIMS __cluster_dims__(2, 1, 1)
#else
#define FSG_SM90_CLUSTER_DIMS
#endif

// kKind: the epilogue's instantiation. kGluGeneral: the GLU variants with their parameters, and
// fp8 saves. An FSG_ACT_* kind: that activation with default parameters and 16-bit outputs only
// (FSG_ACT_SILU: plain SwiGLU). kGluSiluParams: SiLU with its parameters folded, 16-bit outputs (the
// general instantiation spills 24 bytes and read gpt-oss +3.1% at 2048 rows: "GLU variants", step
// 8). Both serve the forward and the recompute backward (the general backward's out-of-line call
// per element made GEGLU's and gpt-oss's recompute backward +11-14% over SwiGLU's: steps 15-16).
// kSiluFp8: SiLU, plain or with parameters, with fp8 saves (forward only; the general one carries
// every kind's loop beside the quantizer). These lean instantiations leave the general code out:
// every instruction added to the unrolled epilogue slows it (bench/NOTES.md, "GLU variants in
// every kernel family": inlined, the variants took the plain forward from 3.9 to 5.9-7.1 ms; the
// general one cost ReGLU +3% for no math).
template <DType D, int kTransB, int EPI, int kKind>
__global__ void FSG_SM90_CLUSTER_DIMS __launch_bounds__(kThreads, 1)
    dual_gemm_sm90_kernel(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_g,
                          const __grid_constant__ CUtensorMap tm_u, const __grid_constant__ CUtensorMap tm_z,
                          const __grid_constant__ CUtensorMap tm_a, const __grid_constant__ CUtensorMap tm_b,
                          const __grid_constant__ Params p) {
#if FSG_SM90_ENABLED
  using namespace sm90;
  using T = typename Elem<D>::T;
  constexpr bool kGeneral = kKind == kGluGeneral;
  constexpr bool kFp8Saves = kGeneral || kKind == kSiluFp8;  // the instantiations that write fp8 saves
  static_assert(kKind != kSiluFp8 || EPI == DualGemmArgs::kForward, "fp8 saves are made by the forward only");
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  __shared__ __align__(8) uint64_t dz_full[2];  // backward: a consumer's dz slab has landed
  unsigned char* smem =
      smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023);
  const int wg = threadIdx.x / 128;
  const uint32_t rank = kCluster > 1 ? cluster_rank() : 0;
  const int64_t cluster_id = blockIdx.x / kCluster, clusters = gridDim.x / kCluster;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], kMulticast ? 8 * kCluster : 8);  // lane 0 of each consumer warp of every CTA it feeds
    }
    mbar_init(&dz_full[0], 1);
    mbar_init(&dz_full[1], 1);
    mbar_fence_init();
  }
  if constexpr (kCluster > 1) cluster_sync(); else __syncthreads();

  if (wg == 0) {
    // ---- producer ----
    reg_dealloc<40>();
    if (threadIdx.x == 0) {
      tma_prefetch_desc(&tm_x);
      tma_prefetch_desc(&tm_g);
      tma_prefetch_desc(&tm_u);
      int s = 0;
      uint32_t phase = 0;
      for (int64_t t = cluster_id; t < p.tiles; t += clusters) {
        int tg, tn;
        tile_coords(t, p, tg, tn);
        const int m0 = (tg * kCluster + static_cast<int>(rank)) * kBM, n0 = tn * kBN;
        for (int kt = 0; kt < p.k_tiles; ++kt) {
          mbar_wait(&empty[s], phase ^ 1);
          uint64_t* bar = &full[s];
          mbar_expect_tx(bar, kStageBytes);
          unsigned char* st = smem + s * kStageBytes;
          const int k0 = kt * kBK;
          tma_load_2d(st, &tm_x, bar, k0, m0);
          if constexpr (!kMulticast) {
            if constexpr (kTransB) {  // MN-major weights: 64-column boxes of 64 K rows
              tma_load_2d(st + kXBytes, &tm_g, bar, n0, k0);
              tma_load_2d(st + kXBytes + kWBytes / 2, &tm_g, bar, n0 + 64, k0);
              tma_load_2d(st + kXBytes + kWBytes, &tm_u, bar, n0, k0);
              tma_load_2d(st + kXBytes + kWBytes + kWBytes / 2, &tm_u, bar, n0 + 64, k0);
            } else {  // K-major weights: 128 rows (columns n) of 64 K
              tma_load_2d(st + kXBytes, &tm_g, bar, k0, n0);
              tma_load_2d(st + kXBytes + kWBytes, &tm_u, bar, k0, n0);
            }
          } else {
            // Both CTAs need the same weight tiles: rank 0 loads gate, rank 1 up, each
            // multicast into both CTAs' stage s.
            const CUtensorMap* w = rank == 0 ? &tm_g : &tm_u;
            unsigned char* dst = st + kXBytes + rank * kWBytes;
            if constexpr (kTransB) {
              tma_load_2d_multicast(dst, w, bar, n0, k0, 0x3);
              tma_load_2d_multicast(dst + kWBytes / 2, w, bar, n0 + 64, k0, 0x3);
            } else {
              tma_load_2d_multicast(dst, w, bar, k0, n0, 0x3);
            }
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
      if (lane == 0) {
        if constexpr (!kMulticast) {
          mbar_arrive(&empty[stage]);
        } else {
#pragma unroll
          for (int r = 0; r < kCluster; ++r) mbar_arrive_cluster(&empty[stage], r);
        }
      }
    };
    for (int64_t t = cluster_id; t < p.tiles; t += clusters) {
      int tg, tn;
      tile_coords(t, p, tg, tn);
      const int tm = tg * kCluster + static_cast<int>(rank);
      int prev = -1;
      for (int kt = 0; kt < p.k_tiles; ++kt) {
        mbar_wait(&full[s], phase);
        const uint32_t st = smem_u32(smem + s * kStageBytes);
        const uint32_t a_base = st + c * 64 * 128, b_base = st + kXBytes;
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < kBK / 16; ++j) {
          const uint64_t da = make_desc(a_base + j * 32, 16, 1024);
          const uint64_t db = kTransB ? make_desc(b_base + j * 2048, kWBytes / 2, 1024)
                                      : make_desc(b_base + j * 32, 16, 1024);
          wgmma_tile<D, kTransB>(d, da, db, (kt > 0 || j > 0) ? 1 : 0);
        }
        wgmma_commit();
        if constexpr (EPI == DualGemmArgs::kBackward) {
          // The epilogue's dz slab, loaded by TMA into the staging buffer under this tile's MMAs
          // (tm_z is dz's map here), once the previous tile's stores have read the buffer. Read
          // from global memory in the epilogue instead, dz cost ~0.6 ms of a 3.3 ms recompute
          // at 8192x4096x14336 (bench/NOTES.md).
          if (p.tma_store && kt == 0 && tid == 0) {
            const int r0 = tm * kBM + c * 64, c0 = tn * kBN;
            unsigned char* staging = smem + kStages * kStageBytes + c * kSlabBytes;
            bulk_wait_read();
            mbar_expect_tx(&dz_full[c], kSlabBytes);
            tma_load_2d(staging, &tm_z, &dz_full[c], c0, r0);
            tma_load_2d(staging + kSlabBytes / 2, &tm_z, &dz_full[c], c0 + 64, r0);
          }
        }
#if FSG_SM90_WAIT1
        // Keep this stage's MMAs in flight; the previous stage's are done: free it.
        wgmma_wait<1>();
        fence_regs(d);
        if (prev >= 0) release(prev);
        prev = s;
#else
        wgmma_wait<0>();
        fence_regs(d);
        release(s);
#endif
        if (++s == kStages) s = 0, phase ^= 1;
      }
#if FSG_SM90_WAIT1
      wgmma_wait<0>();
      fence_regs(d);
      if (prev >= 0) release(prev);
#endif

      // ---- epilogue; the fragment: accumulator i <-> (row w*16 + lane/4 + 8*((i/2)&1),
      //      column 8*(i/4) + 2*(lane&3) + (i&1)); up columns are i + 64 ----
      const int64_t row0 = static_cast<int64_t>(tm) * kBM + c * 64 + warp * 16 + (lane >> 2);
      const int col0 = tn * kBN + 2 * (lane & 3);
      if (p.tma_store) {
        // Outputs through the staging buffer (sm90_store.cuh): biases, then each output computed
        // in place in d (the next tile's first MMA overwrites it) and stored as 64 x 128 slabs.
        if (p.bg.p || p.bu.p) {
#pragma unroll
          for (int j = 0; j < 16; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = col0 + j * 8 + e;
              const float bg = col < p.n ? p.bg.load_or(col, 0.f) : 0.f, bu = col < p.n ? p.bu.load_or(col, 0.f) : 0.f;
#pragma unroll
              for (int h = 0; h < 2; ++h) d[j * 4 + h * 2 + e] += bg, d[j * 4 + h * 2 + e + 64] += bu;
            }
        }
        const uint32_t buf = smem_u32(smem + kStages * kStageBytes + c * kSlabBytes);
        const int r0 = tm * kBM + c * 64, c0 = tn * kBN;
        auto slab = [&](const CUtensorMap* map, int off) {  // d[off..off+63] (gate or up side)
          store_slab<T>(buf, map, r0, c0, p.m - r0, p.n - c0, 1 + c, [&](int j, int h) {
            const int i = j * 4 + h * 2 + off;
            return make_float2(d[i], d[i + 1]);
          });
        };
        if constexpr (EPI == DualGemmArgs::kForward) {
          if (p.a_out.p) slab(&tm_a, 0);
          if (p.b_out.p) slab(&tm_b, 64);
          if constexpr (kFp8Saves) {
            // fp8 saves: one 32-column block of a row per quad, codes staged for TMA (a in the
            // buffer's first 8 KB, b in the second), scale bytes stored directly. Then the variant
            // inline with its kind fixed at compile time (out-of-line calls with the accumulators
            // live cost +30-65% here; bench/NOTES.md, "GLU variants", step 3).
            bool activated = false;  // z already computed (the whole-tile path of kSiluFp8)
            if (p.a8.p || p.b8.p) {
              slab_acquire(1 + c);
              // Every lane runs every row, also rows past m (TMA clips them; their scale bytes are
              // not stored): skipping them per quad would leave the warp diverged at the block
              // shuffles. tile_cols: this tile's columns that exist (capped), per block below.
              const bool save_a = p.a8.p != nullptr, save_b = p.b8.p != nullptr;
              const int64_t cols_left = p.n - static_cast<int64_t>(tn) * kBN;
              const int tile_cols = static_cast<int>(cols_left < kBN ? cols_left : kBN);
              const int t = lane & 3;
              const uint32_t stage = fp8_stage_base(buf);
              // Row half h's blocks q = 0..3 of one side: lane values 32q + 8k + 2t + e (Block8 layout).
              auto blocks = [&](int h, int off, Block8 (&out)[4]) {
#pragma unroll
                for (int q = 0; q < 4; ++q)
#pragma unroll
                  for (int k = 0; k < 8; ++k) out[q].v[k] = d[(4 * q + k / 2) * 4 + h * 2 + k % 2 + off];
              };
              // Lane t holds block t's scale bytes of row half h: the quad writes its row's 4 side
              // by side (block_exists: the block has columns in the matrix).
              auto store_scales = [&](int h, uint8_t scale_a, uint8_t scale_b, bool block_exists) {
                const int64_t row = row0 + 8 * h;
                const int64_t block = static_cast<int64_t>(tn) * (kBN / kFp8Block) + t;
                if (row < p.m && block_exists) {
                  if (save_a) p.a8.scale[row * p.a8.scale_rs + block] = scale_a;
                  if (save_b) p.b8.scale[row * p.b8.scale_rs + block] = scale_b;
                }
              };
              // The common case, both saves of a tile whose columns all exist: no branch per block,
              // and each lane computes one block's scale per side (fp8_row4_scales). activate(h)
              // then computes z of row half h in the same straight-line code, so the SiLU's MUFU
              // work can interleave with the quantize's ALU work (GLU variants step 13).
              auto whole_tile = [&](auto activate) {
                int scale_a[2], scale_b[2];
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                  Block8 g[4], u[4];
                  blocks(h, 0, g);
                  blocks(h, 64, u);
                  float inv_a[4], inv_b[4];
                  scale_a[h] = fp8_row4_scales(g, inv_a), scale_b[h] = fp8_row4_scales(u, inv_b);
#pragma unroll
                  for (int q = 0; q < 4; ++q) {
                    uint16_t pa[4], pb[4];
                    fp8_block_codes(g[q], inv_a[q], pa);
                    fp8_block_codes(u[q], inv_b[q], pb);
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                      stage_fp8_pair(fp8_pair_addr(stage, q, k, h), pa[k]);
                      stage_fp8_pair(fp8_pair_addr(stage, q, k, h) + 8192, pb[k]);
                    }
                  }
                  activate(h);
                }
                // After both row halves, so that their work is one basic block the scheduler can
                // interleave (the stores' row test would end it).
#pragma unroll
                for (int h = 0; h < 2; ++h)
                  store_scales(h, static_cast<uint8_t>(scale_a[h]), static_cast<uint8_t>(scale_b[h]), true);
              };
              if (save_a && save_b && tile_cols == kBN) {
                if constexpr (kGeneral) {
                  whole_tile([](int) {});
                } else {
                  with_silu_kind(p.act, [&](auto kind) {
                    whole_tile([&](int h) { kind_in_place<decltype(kind)::value>(d, p.silu, h); });
                  });
                  activated = true;
                }
              } else {
                // Edge tiles and single saves: block by block, with the column count per block.
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                  Block8 g[4], u[4];
                  blocks(h, 0, g);
                  blocks(h, 64, u);
                  uint8_t scale_a = 0, scale_b = 0;  // lane t keeps block t's scale bytes (the quad shares them)
#pragma unroll
                  for (int q = 0; q < 4; ++q) {
                    const int cols = tile_cols - 32 * q;
                    if (save_a) {
                      const Fp8Codes qa = fp8_block_quantize(cols, g[q], 0xffffffffu);
#pragma unroll
                      for (int k = 0; k < 4; ++k) stage_fp8_pair(fp8_pair_addr(stage, q, k, h), qa.pair[k]);
                      if (t == q) scale_a = qa.scale;
                    }
                    if (save_b) {
                      const Fp8Codes qb = fp8_block_quantize(cols, u[q], 0xffffffffu);
#pragma unroll
                      for (int k = 0; k < 4; ++k) stage_fp8_pair(fp8_pair_addr(stage, q, k, h) + 8192, qb.pair[k]);
                      if (t == q) scale_b = qb.scale;
                    }
                  }
                  store_scales(h, scale_a, scale_b, 32 * t < tile_cols);
                }
              }
              slab_publish(1 + c);
              if (tid == 0) {
                if (p.m > r0 && p.n > c0) {
                  if (p.a8.p) tma_store_2d(&tm_a, buf, c0, r0);
                  if (p.b8.p) tma_store_2d(&tm_b, buf + 8192, c0, r0);
                }
                bulk_commit();
              }
            }
            if (!activated) {
              if constexpr (!kGeneral) {
                with_silu_kind(p.act, [&](auto kind) { kind_in_place<decltype(kind)::value>(d, p.silu); });
              } else if (is_plain_swiglu(p.act)) {  // fp8 saves of plain SwiGLU: no parameters to apply
                kind_in_place<FSG_ACT_SILU>(d, p.silu);
              } else switch (p.act.activation) {
                case FSG_ACT_GELU_TANH: glu_in_place<FSG_ACT_GELU_TANH>(d, p.act); break;
                case FSG_ACT_GELU_ERF: glu_in_place<FSG_ACT_GELU_ERF>(d, p.act); break;
                case FSG_ACT_RELU: glu_in_place<FSG_ACT_RELU>(d, p.act); break;
                case FSG_ACT_IDENTITY: glu_in_place<FSG_ACT_IDENTITY>(d, p.act); break;
                default: glu_in_place<FSG_ACT_SILU>(d, p.act); break;
              }
            }
          } else {
            kind_in_place<kKind>(d, p.silu);
          }
          slab(&tm_z, 0);
        } else {
          // dA = dz * u * act'(g) (gate side), dB = dz * act(g) (up side), with dz staged by TMA in
          // the buffer (zeros past the matrix's edges) and read pair by pair while dA is staged:
          // each thread reads its own dz pair just before overwriting it with dA. The lean kinds
          // compute the gradients per unit dz first (lean_glu_grad_factors; reading all of dz into
          // registers ahead of the math spilled 176 bytes); the general epilogue makes one
          // out-of-line call per element (inlined, it spilled ~1 KB).
          if constexpr (!kGeneral) {
#pragma unroll
            for (int i = 0; i < 64; ++i) {
              const GluGradFactors f = lean_glu_grad_factors<kKind>(p.silu, d[i], d[i + 64]);
              d[i] = f.up * f.grad, d[i + 64] = f.act;
            }
          }
          mbar_wait(&dz_full[c], static_cast<uint32_t>((t - cluster_id) / clusters) & 1);  // this CTA's tile count
          store_slab<T>(buf, &tm_a, r0, c0, p.m - r0, p.n - c0, 1 + c, [&](int j, int h) {
            const int i = j * 4 + h * 2;
            const float2 dz = load_slab_pair<T>(buf, j, h);
            if constexpr (kGeneral) {
              float da0, db0, da1, db1;  // not &d[...]: d must stay in registers
              glu_grads(p.act, d[i], d[i + 64], dz.x, &da0, &db0);
              glu_grads(p.act, d[i + 1], d[i + 65], dz.y, &da1, &db1);
              d[i + 64] = db0, d[i + 65] = db1;
              return make_float2(da0, da1);
            } else {
              d[i + 64] *= dz.x, d[i + 65] *= dz.y;
              return make_float2(d[i] * dz.x, d[i + 1] * dz.y);
            }
          });
          slab(&tm_b, 64);
        }
      } else if constexpr (kFp8Saves && EPI == DualGemmArgs::kForward) {
        // GLU variants and fp8 saves: one out-of-line call per 32-column block and row computes
        // this lane's 8 outputs and writes the block's fp8 saves. Calls cost a save of the live
        // accumulators each; per element (64 calls) they took the forward from 3.9 to 5.6 ms.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t row = row0 + 8 * h;
          if (row >= p.m) continue;  // uniform over the quad that shares the row
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            Block8 g, u;
#pragma unroll
            for (int k = 0; k < 4; ++k)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int j = 4 * q + k, i = j * 4 + h * 2 + e, col = col0 + j * 8 + e;
                g.v[2 * k + e] = d[i] + (col < p.n ? p.bg.load_or(col, 0.f) : 0.f);
                u.v[2 * k + e] = d[i + 64] + (col < p.n ? p.bu.load_or(col, 0.f) : 0.f);
              }
            const Block8 z = glu_block(p.act, p.a8, p.b8, row, static_cast<int64_t>(tn) * kBN + 32 * q, p.n, g, u);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const int col = col0 + (4 * q + k) * 8;
              if (col >= p.n) continue;
              const bool has1 = col + 1 < p.n;
              store2<T>(p.z, p.z_v2, row, col, z.v[2 * k], z.v[2 * k + 1], has1);
              if (p.a_out.p) store2<T>(p.a_out, p.a_v2, row, col, g.v[2 * k], g.v[2 * k + 1], has1);
              if (p.b_out.p) store2<T>(p.b_out, p.b_v2, row, col, u.v[2 * k], u.v[2 * k + 1], has1);
            }
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          const int col = col0 + j * 8;
          if (col >= p.n) continue;
          const bool has1 = col + 1 < p.n;
          const float bg0 = p.bg.load_or(col, 0.f), bg1 = has1 ? p.bg.load_or(col + 1, 0.f) : 0.f;
          const float bu0 = p.bu.load_or(col, 0.f), bu1 = has1 ? p.bu.load_or(col + 1, 0.f) : 0.f;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t row = row0 + 8 * h;
            if (row >= p.m) continue;
            const int i = j * 4 + h * 2;
            const float g0 = d[i] + bg0, g1 = d[i + 1] + bg1;
            const float u0 = d[i + 64] + bu0, u1 = d[i + 65] + bu1;
            if constexpr (EPI == DualGemmArgs::kForward) {
              store2<T>(p.z, p.z_v2, row, col, lean_glu_value<kKind>(p.silu, g0, u0), lean_glu_value<kKind>(p.silu, g1, u1), has1);
              if (p.a_out.p) store2<T>(p.a_out, p.a_v2, row, col, g0, g1, has1);
              if (p.b_out.p) store2<T>(p.b_out, p.b_v2, row, col, u0, u1, has1);
            } else {
              const float2 dz = load2<T>(p.dz, p.dz_v2, row, col, has1);
              if constexpr (kGeneral) {
                float da0, db0, da1, db1;
                glu_grads(p.act, g0, u0, dz.x, &da0, &db0);
                glu_grads(p.act, g1, u1, dz.y, &da1, &db1);
                store2<T>(p.da, p.da_v2, row, col, da0, da1, has1);
                store2<T>(p.db, p.db_v2, row, col, db0, db1, has1);
              } else {
                const GluGradFactors f0 = lean_glu_grad_factors<kKind>(p.silu, g0, u0);
                const GluGradFactors f1 = lean_glu_grad_factors<kKind>(p.silu, g1, u1);
                store2<T>(p.da, p.da_v2, row, col, dz.x * f0.up * f0.grad, dz.y * f1.up * f1.grad, has1);
                store2<T>(p.db, p.db_v2, row, col, dz.x * f0.act, dz.y * f1.act, has1);
              }
            }
          }
        }
      }
    }
    if (threadIdx.x % 128 == 0) bulk_wait_all();  // this warpgroup's TMA stores (if any) are done
  }
  // No CTA may leave while its peer can still multicast into it or arrive on its barriers.
  if constexpr (kCluster > 1) cluster_sync();
#endif
}

// ---------------------------------------------------------------------------------------------
// Host side: tensor maps (sm90_tma.h).
using sm90_host::encode;
using sm90_host::encode_fn;
using sm90_host::launch_setup;
using sm90_host::Operand2D;
using sm90_host::pairs_aligned;
using sm90_host::store_map;
using sm90_host::tma_operand;

template <DType D, int kTransB, int EPI, int kKind>
fsg_status launch(const CUtensorMap (&maps)[6], const Params& p, cudaStream_t s) {
  auto* kernel = dual_gemm_sm90_kernel<D, kTransB, EPI, kKind>;
  int dev = 0, sms = 0;
  const fsg_status setup = launch_setup(kernel, "dual_gemm_sm90_kernel", kSmemBytes, false, &dev, &sms);
  if (setup != FSG_OK) return setup;
  // Clusters that can be resident at once (a GPC may not hold an even number of CTAs).
  int slots = sms / kCluster;
  if constexpr (kCluster > 1) {
    static std::atomic<int> cached[64] = {};  // per device; concurrent first calls store the same value
    const int known = dev < 64 ? cached[dev].load() : 0;
    if (known > 0) {
      slots = known;
    } else {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(static_cast<unsigned>(slots * kCluster));
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = kSmemBytes;
      int n = 0;
      if (cudaOccupancyMaxActiveClusters(&n, kernel, &cfg) == cudaSuccess && n > 0) {
        slots = n < slots ? n : slots;
        if (dev < 64) cached[dev] = slots;
      } else {
        (void)cudaGetLastError();
      }
    }
  }
  const int64_t grid = (p.tiles < slots ? p.tiles : slots) * kCluster;
  kernel<<<static_cast<unsigned>(grid), kThreads, kSmemBytes, s>>>(maps[0], maps[1], maps[2], maps[3], maps[4],
                                                                   maps[5], p);
  return launch_status("dual_gemm_sm90_kernel");
}

template <DType D, int kTransB, int kKind>
fsg_status pick_epilogue(const CUtensorMap (&maps)[6], const Params& p, int epi, cudaStream_t s) {
  return epi == DualGemmArgs::kForward ? launch<D, kTransB, DualGemmArgs::kForward, kKind>(maps, p, s)
                                       : launch<D, kTransB, DualGemmArgs::kBackward, kKind>(maps, p, s);
}

// kind: kGluGeneral, an FSG_ACT_* kind, kGluSiluParams, or (forward only) kSiluFp8 (epilogue_kind).
template <DType D, int kTransB>
fsg_status pick_kind(const CUtensorMap (&maps)[6], const Params& p, int epi, int kind, cudaStream_t s) {
  if (kind == kSiluFp8) return launch<D, kTransB, DualGemmArgs::kForward, kSiluFp8>(maps, p, s);
  return with_lean_kind(kind, [&](auto k) { return pick_epilogue<D, kTransB, decltype(k)::value>(maps, p, epi, s); });
}

// The instantiation for a call: SiLU with a positive gate scale has its own with parameters (and, in
// the forward, with fp8 saves); otherwise, forward or backward, a lean one per activation kind
// where no fp8 saves are made and the activation has default parameters; else the general one.
int epilogue_kind(const fsg_glu_params& act, int epi, bool fp8_saves) {
  const int kind = FSG_SM90_LEAN_KINDS ? lean_glu_kind(act) : is_plain_swiglu(act) ? FSG_ACT_SILU : kGluGeneral;
  if (!fp8_saves) return kind;
  const bool silu = kind == FSG_ACT_SILU || kind == kGluSiluParams;
  return silu && epi == DualGemmArgs::kForward && FSG_SM90_LEAN_KINDS ? kSiluFp8 : kGluGeneral;
}

}  // namespace

fsg_status cuda_dual_gemm_sm90(const DualGemmArgs& a, Stream s, bool forced, bool* handled) {
  *handled = false;
  const DType dt = a.x.dtype;
  if (dt != DType::BF16 && dt != DType::F16) return FSG_OK;
  const int64_t m = a.x.rows, k = a.x.cols, n = a.wg.cols;
  if (!forced && m < FSG_SM90_MIN_M) return FSG_OK;
  if (encode_fn() == nullptr) return FSG_OK;

  // x [M,K]: K contiguous.
  Operand2D ox, og, ou;
  if (!(a.x.cs == 1 || k == 1) || !tma_operand(a.x.data, k, m, a.x.rs, &ox)) return FSG_OK;
  // Weights [K,N]: N-contiguous -> MN-major B; K-contiguous -> K-major B (both weights alike).
  int trans_b;
  auto mn_major = [&](const Mat& w, Operand2D* o) { return (w.cs == 1 || n == 1) && tma_operand(w.data, n, k, w.rs, o); };
  auto k_major = [&](const Mat& w, Operand2D* o) { return (w.rs == 1 || k == 1) && tma_operand(w.data, k, n, w.cs, o); };
  if (mn_major(a.wg, &og) && mn_major(a.wu, &ou))
    trans_b = 1;
  else if (k_major(a.wg, &og) && k_major(a.wu, &ou))
    trans_b = 0;
  else
    return FSG_OK;

  CUtensorMap maps[6];  // x, gate, up; then the epilogue's (see below)
  bool ok = encode(&maps[0], dt, ox, kBK, kBM);
  if (trans_b) {
    ok = ok && encode(&maps[1], dt, og, 64, kBK) && encode(&maps[2], dt, ou, 64, kBK);
  } else {
    ok = ok && encode(&maps[1], dt, og, kBK, kBN) && encode(&maps[2], dt, ou, kBK, kBN);
  }
  if (!ok) return FSG_OK;  // the driver refused a map: let the sm_80 kernels take the call

  Params p{};
  p.m = static_cast<int>(m), p.n = static_cast<int>(n);
  const int64_t m_tiles = (m + kBM - 1) / kBM;
  p.m_groups = static_cast<int>((m_tiles + kCluster - 1) / kCluster);
  p.n_tiles = static_cast<int>((n + kBN - 1) / kBN);
  p.k_tiles = static_cast<int>((k + kBK - 1) / kBK);
  p.tiles = static_cast<int64_t>(p.m_groups) * p.n_tiles;
  p.bg = vec_ref(a.bg), p.bu = vec_ref(a.bu);
  p.z = mat_ref(a.z), p.a_out = mat_ref(a.a_out), p.b_out = mat_ref(a.b_out);
  p.dz = mat_ref(a.dz), p.da = mat_ref(a.da), p.db = mat_ref(a.db);
  p.z_v2 = pairs_aligned(a.z), p.a_v2 = pairs_aligned(a.a_out), p.b_v2 = pairs_aligned(a.b_out);
  p.dz_v2 = pairs_aligned(a.dz), p.da_v2 = pairs_aligned(a.da), p.db_v2 = pairs_aligned(a.db);
  p.a8 = fp8_ref(a.a_out), p.b8 = fp8_ref(a.b_out);
  if (p.a8.p) p.a_out.p = nullptr, p.a_v2 = false;
  if (p.b8.p) p.b_out.p = nullptr, p.b_v2 = false;
  p.act = a.act;
  p.silu = lean_silu_fold(a.act);

  const int epi = a.epilogue;
  const int kind = epilogue_kind(a.act, epi, p.a8.p != nullptr || p.b8.p != nullptr);
  // Outputs go through TMA stores when each can be addressed so (row-contiguous, 16-byte aligned
  // rows); otherwise all go from registers. maps[3..5]: forward z, a, b (16-bit 64 x 64 boxes, or
  // fp8 64-row x 128-byte boxes); backward dz (loaded into the staging buffer), dA, dB.
  maps[3] = maps[4] = maps[5] = maps[0];  // placeholders where no TMA store is made
  auto save_map = [&](const Mat& o, CUtensorMap* map) { return !o.present() || store_map(o, map); };
  if (epi == DualGemmArgs::kForward)
    p.tma_store = store_map(a.z, &maps[3]) && save_map(a.a_out, &maps[4]) && save_map(a.b_out, &maps[5]);
  else
    p.tma_store = store_map(a.dz, &maps[3]) && store_map(a.da, &maps[4]) && store_map(a.db, &maps[5]);

  *handled = true;
  if (dt == DType::BF16)
    return trans_b ? pick_kind<DType::BF16, 1>(maps, p, epi, kind, s) : pick_kind<DType::BF16, 0>(maps, p, epi, kind, s);
  return trans_b ? pick_kind<DType::F16, 1>(maps, p, epi, kind, s) : pick_kind<DType::F16, 0>(maps, p, epi, kind, s);
}

}  // namespace fsg
