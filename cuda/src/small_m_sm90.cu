// small_m_sm90.cu: fsg::cuda_dual_gemm_small_m_sm90, the Hopper (sm_90a) decode-sized dual GEMM
// (M = 17..256 rows of x in the automatic path), swap-AB wgmma fed by TMA. Helpers: sm90_ptx.cuh.
//
// With few rows of x the cost is streaming the two weight matrices once (235 MB for the
// Llama-3-8B layer), so the kernel is built around the weight stream:
//   - swap-AB: the weights are the wgmma A operand (64 output columns per instruction, the M side
//     of m64nNk16), the rows of x the B operand (N = 16..160 rows per consumer warpgroup), so a
//     handful of tokens fills a tensor-core instruction instead of a mostly empty 64-row x tile;
//   - a unit of work is 64 output columns of gate and up over all of K: no CTA needs another's
//     partial sums (no scratch, no atomics: deterministic, graph-safe). N = 14336 gives 224 units;
//     up to 160 rows two CTAs share an SM, so all 224 are resident and every SM streams from the
//     first cycle to the last. Above 160 rows the accumulators of all outputs no longer fit the
//     register files: one CTA per SM, persistent over the units (two rounds at N = 14336);
//   - TMA loads (gate 64x64, up 64x64, x box rows x 64; 128-byte swizzle) fill a multistage
//     mbarrier ring, issued by one thread of a producer warp, or (144/160 rows, where a 5th warp
//     would cap the registers at 168) by thread 0 of the consumer warpgroup between its MMAs;
//   - consumers run two wgmmas per k16 (gate and up, one x descriptor), keep one stage of MMAs in
//     flight (wait_group 1), and split either the x rows (two warpgroups) or K (two warpgroups on
//     alternate stages, partial sums added in a fixed order through shared memory);
//   - gate and up of one (row, column) land in the same thread: the epilogue applies the GLU from
//     registers (the forward without saves inline, one copy per lean GLU kind; general parameters,
//     saved pre-activations and the backward epilogue through glu_value / glu_grads out of line).
// Weights: N-contiguous ([K, N], packed [K, 2N] halves) are MN-major A (wgmma transposed A);
// K-contiguous (nn.Linear [N, K] seen transposed) are K-major A. Anything TMA cannot address
// (f32, non-unit inner strides, unaligned bases or strides) is declined (small_m.cu takes it).
// M above 256 loops over row blocks of 256, re-streaming the weights (see FSG_SMALL_M_SM90_MAX_M).
// Measured on H100 (bench/NOTES.md, small-M step 5): 81-89% of copy bandwidth for M = 17..160,
// 67-69% for 161..256 (two rounds of units); faster than cuBLAS GEMM + activation at every M.
// Option: FSG_SMALL_M_SM90_PERSISTENT 0 launches one CTA per unit above 160 rows (hardware block
// scheduling) instead of a persistent grid; the harness measured it ~8% faster there (0.104-0.111
// vs 0.114-0.117 ms) in another run, not yet confirmed in the library (kept off).
//
// Build check: nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a
//   -gencode=arch=compute_80,code=sm_80 -I cuda/include -I cuda/src -c cuda/src/small_m_sm90.cu
#include <cuda.h>  // CUtensorMap and the driver enums: types only, libcuda is not linked
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "activation_math.h"
#include "backend.h"
#include "kernel_util.cuh"
#include "kernels.h"
#include "sm90_ptx.cuh"
#include "sm90_tma.h"

namespace fsg {
namespace {

#ifndef FSG_SMALL_M_SM90_PERSISTENT
#define FSG_SMALL_M_SM90_PERSISTENT 1
#endif

constexpr int kBK = 64;                   // K per stage: one 128-byte swizzle row of 16-bit elements
constexpr int kCols = 64;                 // output columns per CTA (the wgmma M side)
constexpr int kWBytes = kCols * kBK * 2;  // one weight tile per stage: 8 KB

struct SwapParams {
  int64_t m;
  int n, k_tiles;
  VecRef bg, bu;
  MatRef z, a_out, b_out;  // kForward
  MatRef dz, da, db;       // kBackward
  fsg_glu_params act;
  LeanGlu glu;        // lean_glu(act)
  int epilogue;       // DualGemmArgs::Epilogue
  int weight_hint;    // TMA loads of weights with an L2 evict-first policy
  int stage_tx;       // bytes one stage receives: both weight tiles and the x box (its rows may be
                      // fewer than the configuration's: rows past the box are stale and unused)
};

// kRows: wgmma N (x rows per consumer warpgroup); kRowWG consumer warpgroups along rows, kKSplit
// along K; kStages ring stages.
template <int kRows, int kRowWG, int kKSplit, int kStages, bool kInline>
struct Cfg {
  static constexpr int kXRows = kRows * kRowWG;     // rows of x per row block
  static constexpr int kXBytes = kXRows * kBK * 2;
  static constexpr int kStageBytes = 2 * kWBytes + kXBytes;
  static constexpr int kConsumers = kRowWG * kKSplit;
  // kInline: thread 0 of the (single) consumer warpgroup also issues the loads: 4 warps per CTA,
  // so two CTAs per SM may use up to 255 registers (144-160 rows of accumulators fit; with a 5th
  // warp the per-quadrant register file caps them at 168). Otherwise a producer warp (the last):
  // measured ~5% faster where registers allow (the issue stays off the MMA warps' path).
  static constexpr bool kInlineProducer = kInline;
  static_assert(!kInline || kConsumers == 1, "inline loads need a single consumer warpgroup");
  static constexpr int kThreads = 128 * kConsumers + (kInlineProducer ? 0 : 32);
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + slack to align to 1024
  static constexpr int kAcc = kRows / 2;            // fp32 accumulators per thread and matrix
  static_assert(kRows % 16 == 0 && kRows >= 16 && kRows <= 160, "wgmma N of the wrappers");
  static_assert(kXRows <= 256, "TMA box rows");
  static_assert(kStageBytes % 1024 == 0, "stages keep 1024-byte alignment (128B swizzle)");
  static_assert(kKSplit == 1 || kStages * kStageBytes >= (kKSplit - 1) * kRowWG * 2 * kAcc * 128 * 4,
                "the K-split reduction reuses the ring");
};

// Final value of one output element from the two fp32 sums (biases added), for the calls the
// kernel's per-kind decode loop does not take (general GLU parameters, saved pre-activations, the
// backward). Out of line: they would otherwise be unrolled for every accumulator.
template <class T>
__device__ __noinline__ void store_output(const SwapParams& p, int64_t row, int col, float a, float b) {
  if (p.epilogue == DualGemmArgs::kForward) {
    p.z.store<T>(row, col, glu_value(p.act, a, b));
    if (p.a_out.p) p.a_out.store<T>(row, col, a);
    if (p.b_out.p) p.b_out.store<T>(row, col, b);
  } else {
    float da, db;
    glu_grads(p.act, a, b, p.dz.load<T>(row, col), &da, &db);
    p.da.store<T>(row, col, da);
    p.db.store<T>(row, col, db);
  }
}

}  // namespace

namespace small_m_sm90_detail {
template <DType D, int kTransA, int kRows>
__device__ __forceinline__ void wgmma_pair(float (&g)[kRows / 2], float (&u)[kRows / 2], uint64_t dg, uint64_t du,
                                           uint64_t dx) {
#if FSG_SM90_ENABLED
  sm90::WgmmaSS<kRows>::template run<kTransA, D == DType::F16>(g, dg, dx, 1);
  sm90::WgmmaSS<kRows>::template run<kTransA, D == DType::F16>(u, du, dx, 1);
#endif
}
}  // namespace small_m_sm90_detail

namespace {
using namespace small_m_sm90_detail;

template <DType D, int kTransA, int kRows, int kRowWG, int kKSplit, int kStages, bool kInline, int kMinBlocks>
__global__ void __launch_bounds__(Cfg<kRows, kRowWG, kKSplit, kStages, kInline>::kThreads, kMinBlocks)
    small_m_sm90_kernel(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_g,
                        const __grid_constant__ CUtensorMap tm_u, const __grid_constant__ SwapParams p) {
#if FSG_SM90_ENABLED
  using namespace sm90;
  using C = Cfg<kRows, kRowWG, kKSplit, kStages, kInline>;
  using T = typename Elem<D>::T;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  unsigned char* smem =
      smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  // Units of work: (64-column block, row block), column blocks first; CTA b takes units b,
  // b + gridDim.x, ... (one each when they all fit at once; else the loads of the next unit run
  // while the consumers finish the current one).
  const int64_t n_blocks = (p.n + kCols - 1) / kCols;
  const int64_t units = n_blocks * ((p.m + C::kXRows - 1) / C::kXRows);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 4 * kRowWG);  // lane 0 of each consumer warp of one K slice
    }
    mbar_fence_init();
  }
  __syncthreads();

  // Loads of the CTA's tile number `t` (its units in turn, k tiles within) into its ring stage,
  // once the consumers freed that stage. Issued by a single thread.
  const uint64_t policy = l2_policy_evict_first();
  const int64_t my_units = blockIdx.x < units ? (units - 1 - blockIdx.x) / gridDim.x + 1 : 0;
  const int64_t tiles = my_units * p.k_tiles;
  auto issue = [&](int64_t t) {
    const int s = static_cast<int>(t % kStages);
    mbar_wait(&empty[s], (static_cast<uint32_t>(t / kStages) & 1u) ^ 1u);
    uint64_t* bar = &full[s];
    mbar_expect_tx(bar, p.stage_tx);
    unsigned char* st = smem + s * C::kStageBytes;
    const int64_t unit = blockIdx.x + (t / p.k_tiles) * gridDim.x;
    const int n0 = static_cast<int>(unit % n_blocks) * kCols;
    const int m0 = static_cast<int>((unit / n_blocks) * C::kXRows);
    const int k0 = static_cast<int>(t % p.k_tiles) * kBK;
    const int cg0 = kTransA ? n0 : k0, cg1 = kTransA ? k0 : n0;  // MN-major: (n, k); K-major: (k, n)
    if (p.weight_hint) {
      tma_load_2d_hint(st, &tm_g, bar, cg0, cg1, policy);
      tma_load_2d_hint(st + kWBytes, &tm_u, bar, cg0, cg1, policy);
    } else {
      tma_load_2d(st, &tm_g, bar, cg0, cg1);
      tma_load_2d(st + kWBytes, &tm_u, bar, cg0, cg1);
    }
    tma_load_2d(st + 2 * kWBytes, &tm_x, bar, k0, m0);
  };
  int64_t next = 0;  // inline producer: the next tile to load
  if (threadIdx.x == 0) {
    tma_prefetch_desc(&tm_x);
    tma_prefetch_desc(&tm_g);
    tma_prefetch_desc(&tm_u);
  }
  if constexpr (C::kInlineProducer) {
    if (threadIdx.x == 0)
      for (; next < tiles && next < kStages; ++next) issue(next);
  } else if (warp == 4 * C::kConsumers) {
    // ---- producer warp: one thread issues every TMA load ----
    if (lane == 0)
      for (int64_t t = 0; t < tiles; ++t) issue(t);
    return;
  }

  // ---- consumers: warpgroup c = (K slice q, row slice r) ----
  const int c = warp / 4, q = c / kRowWG, r = c % kRowWG;
  const int wl = warp % 4;  // warp within the warpgroup
  float g[C::kAcc], u[C::kAcc];
  int64_t it0 = 0;
  for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x, it0 += p.k_tiles) {
    const int n0 = static_cast<int>(unit % n_blocks) * kCols;
    const int64_t rb = unit / n_blocks;
#pragma unroll
    for (int i = 0; i < C::kAcc; ++i) g[i] = u[i] = 0.f;
    int prev = -1;
    for (int kt = q; kt < p.k_tiles; kt += kKSplit) {
      const int64_t it = it0 + kt;
      const int s = static_cast<int>(it % kStages);
      mbar_wait(&full[s], static_cast<uint32_t>(it / kStages) & 1u);
      const uint32_t st = smem_u32(smem + s * C::kStageBytes);
      const uint32_t xb = st + 2 * kWBytes + r * kRows * 128;
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kBK / 16; ++j) {
        // A (weights): MN-major tiles are 64 k-lines of 128 bytes (k16 = 2048 bytes on); K-major
        // tiles 64 column rows of 128 bytes (k16 = 32 bytes on). B (x): K-major, 8-row groups.
        const uint64_t dg = kTransA ? make_desc(st + j * 2048, kWBytes, 1024) : make_desc(st + j * 32, 16, 1024);
        const uint64_t du = kTransA ? make_desc(st + kWBytes + j * 2048, kWBytes, 1024)
                                    : make_desc(st + kWBytes + j * 32, 16, 1024);
        const uint64_t dx = make_desc(xb + j * 32, 16, 1024);
        wgmma_pair<D, kTransA, kRows>(g, u, dg, du, dx);
      }
      wgmma_commit();
      // Keep this stage's MMAs in flight; the previous stage's are done: free it.
      wgmma_wait<1>();
      fence_acc(g);
      fence_acc(u);
      if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
      prev = s;
      if constexpr (C::kInlineProducer) {
        // Refill the stage just freed (waits for the other warps' release of it).
        if (threadIdx.x == 0)
          for (; next < tiles && next <= it + kStages - 1; ++next) issue(next);
      }
    }
    wgmma_wait<0>();
    fence_acc(g);
    fence_acc(u);
    if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
    if constexpr (C::kInlineProducer) {
      // The next unit's first stages (this unit's last stage is free now).
      if (threadIdx.x == 0)
        for (; next < tiles && next < it0 + p.k_tiles + kStages; ++next) issue(next);
    }

    const int tid = threadIdx.x & 127;
    if constexpr (kKSplit > 1) {
      // Fixed-order sum of the K slices (host guarantees one unit per CTA: the ring is idle).
      // Slices q >= 1 write in turn; slice 0 adds them in slice order.
      float* red = reinterpret_cast<float*>(smem);
      constexpr int kBar = 128 * C::kConsumers;
#pragma unroll 1
      for (int src = 1; src < kKSplit; ++src) {
        named_bar_sync(1, kBar);  // every consumer's MMAs done (src = 1), slice 0 done reading (src > 1)
        if (q == src) {
#pragma unroll
          for (int i = 0; i < C::kAcc; ++i) {
            red[((r * 2 + 0) * C::kAcc + i) * 128 + tid] = g[i];
            red[((r * 2 + 1) * C::kAcc + i) * 128 + tid] = u[i];
          }
        }
        named_bar_sync(1, kBar);
        if (q == 0) {
#pragma unroll
          for (int i = 0; i < C::kAcc; ++i) {
            g[i] += red[((r * 2 + 0) * C::kAcc + i) * 128 + tid];
            u[i] += red[((r * 2 + 1) * C::kAcc + i) * 128 + tid];
          }
        }
      }
      if (q != 0) continue;
    }

    // ---- epilogue from registers: accumulator i <-> output column n0 + 16*wl + lane/4 +
    //      8*((i/2)&1), x row 8*(i/4) + 2*(lane&3) + (i&1) of this warpgroup's rows ----
    const int64_t row0 = rb * C::kXRows + r * kRows + 2 * (lane & 3);
    // The forward without saved pre-activations (decode) runs inline, one copy of this loop per
    // lean GLU kind; the general kind, the saves and the backward call store_output (a call per
    // element made gpt-oss and GEGLU 1.5-1.6x slower than plain SwiGLU at 256 rows, and computing
    // every z before the stores cost plain SwiGLU 1.5%: bench/NOTES.md, "GLU variants", step 21).
    const bool decode = p.epilogue == DualGemmArgs::kForward && !p.a_out.p && !p.b_out.p;
    with_lean_kind(decode ? p.glu.kind : kGluGeneral, [&](auto kind) {
      constexpr int kKind = decltype(kind)::value;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int col = n0 + 16 * wl + (lane >> 2) + 8 * h;
        if (col >= p.n) continue;
        const float bgv = p.bg.load_or(col, 0.f), buv = p.bu.load_or(col, 0.f);
#pragma unroll
        for (int cc = 0; cc < kRows / 8; ++cc) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int i = cc * 4 + h * 2 + e;
            const int64_t row = row0 + 8 * cc + e;
            const float a = g[i] + bgv, b = u[i] + buv;
            if constexpr (kKind == kGluGeneral) {
              if (row < p.m) store_output<T>(p, row, col, a, b);
            } else {
              // The value first, the row test only around the store: the math of several
              // elements can then interleave (a test before it put each element's chain in a
              // block of its own, which GEGLU's CDF felt at 128-256 rows).
              const float z = glu_value_of<kKind>(p.act, p.glu.silu, a, b);
              if (row < p.m) p.z.store<T>(row, col, z);
            }
          }
        }
      }
    });
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// Host side: tensor maps, built like dual_gemm_sm90.cu's (sm90_tma.h).

// A 2-D operand as TMA sees it: `inner` contiguous elements per line, `outer` lines `stride`
// elements apart, box `box_inner` x `box_outer`. False when TMA cannot address it.
bool encode(CUtensorMap* map, DType dt, void* base, int64_t inner, int64_t outer, int64_t stride, uint32_t box_inner,
            uint32_t box_outer) {
  sm90_host::Operand2D o;
  return sm90_host::tma_operand(base, inner, outer, stride, &o) && sm90_host::encode(map, dt, o, box_inner, box_outer);
}

// The three maps of one call; the x box depends on the configuration's rows per block.
struct Maps {
  CUtensorMap x, g, u;
};

template <DType D, int kTransA, int kRows, int kRowWG, int kKSplit, int kStages, bool kInline, int kMinBlocks>
fsg_status launch_cfg(const Maps& maps, const SwapParams& p, cudaStream_t s) {
  using C = Cfg<kRows, kRowWG, kKSplit, kStages, kInline>;
  auto* kernel = small_m_sm90_kernel<D, kTransA, kRows, kRowWG, kKSplit, kStages, kInline, kMinBlocks>;
  int dev = 0, sms = 0;
  const fsg_status setup = sm90_host::launch_setup(kernel, "small_m_sm90_kernel", C::kSmemBytes, true, &dev, &sms);
  if (setup != FSG_OK) return setup;
  const int64_t units = (p.n + kCols - 1) / kCols * ((p.m + C::kXRows - 1) / C::kXRows);
  // CTAs resident at once; FSG_SMALL_M_SM90_PERSISTENT 0: one CTA per unit (see the header).
  const int64_t slots = FSG_SMALL_M_SM90_PERSISTENT ? static_cast<int64_t>(sms) * kMinBlocks : units;
  static_assert(kKSplit == 1 || kMinBlocks == 2, "");
  // K-split configurations reuse the ring for their reduction: one unit per CTA (host: one row block).
  const int64_t grid = kKSplit > 1 || units <= slots ? units : slots;
  kernel<<<static_cast<unsigned>(grid), C::kThreads, C::kSmemBytes, s>>>(maps.x, maps.g, maps.u, p);
  return launch_status("small_m_sm90_kernel");
}

// Configurations (see launch_choice for each id's template arguments). Up to 160 rows two CTAs
// share an SM (128-160 threads, <= 111 KB of shared memory): 224 CTAs at N = 14336, all resident
// at once, every SM streaming until the end. Above 160 rows the accumulators of every output no
// longer fit the register files at once (29 MB of 33.8 MB at 256 rows): one CTA per SM with two
// row warpgroups, two rounds of units. Ids 2, 3, 12, 13 and `variant` exist for the scratch
// harness's comparisons only (FSG_SMALL_M_SM90_VARIANTS).
struct Choice {
  int id;
  int x_rows;  // rows of x per row block of the configuration
  int hint;    // weights loaded with an L2 evict-first policy
};

Choice choose(int64_t m, int variant) {
  Choice c;
  if (m <= 16) c = {0, 16, 0};
  else if (m <= 32) c = {1, 32, 0};
  else if (m <= 48) c = {8, 48, 0};
  else if (m <= 64) c = {9, 64, 0};
  else if (m <= 96) c = {4, 96, 0};
  else if (m <= 128) c = {5, 128, 0};
  else if (m <= 144) c = {10, 144, 0};
  else if (m <= 160) c = {11, 160, 0};
  else if (m <= 192) c = {6, 192, 1};
  else c = {7, 256, 1};  // and row blocks of 256 beyond
#ifdef FSG_SMALL_M_SM90_VARIANTS
  // 1: the alternative configuration of some ranges; 3: the L2 hint toggled.
  if (variant == 1) {
    if (m > 32 && m <= 48) c = {2, 48, 0};
    else if (m > 48 && m <= 64) c = {3, 64, 0};
    else if (m > 96 && m <= 128) c = {13, 128, 0};
    else if (m > 128 && m <= 160) c = {6, 192, 1};
    else if (m > 160 && m <= 192) c = {7, 256, 1};
    else if (m > 192 && m <= 224) c = {12, 224, 1};
  }
  if (variant == 3) c.hint ^= 1;
#else
  (void)variant;
#endif
  return c;
}

template <DType D, int kTransA>
fsg_status launch_choice(int id, const Maps& maps, const SwapParams& p, cudaStream_t s) {
  switch (id) {  // rows, row warpgroups, K slices, stages, inline loads, CTAs per SM
    case 0: return launch_cfg<D, kTransA, 16, 1, 1, 6, false, 2>(maps, p, s);
    case 1: return launch_cfg<D, kTransA, 32, 1, 1, 5, false, 2>(maps, p, s);
    case 4: return launch_cfg<D, kTransA, 96, 1, 1, 3, false, 2>(maps, p, s);
    case 5: return launch_cfg<D, kTransA, 128, 1, 1, 3, false, 2>(maps, p, s);
    case 6: return launch_cfg<D, kTransA, 96, 2, 1, 5, false, 1>(maps, p, s);
    case 7: return launch_cfg<D, kTransA, 128, 2, 1, 4, false, 1>(maps, p, s);
    case 8: return launch_cfg<D, kTransA, 48, 1, 2, 5, false, 2>(maps, p, s);
    case 9: return launch_cfg<D, kTransA, 64, 1, 2, 4, false, 2>(maps, p, s);
    case 10: return launch_cfg<D, kTransA, 144, 1, 1, 3, true, 2>(maps, p, s);
    case 11: return launch_cfg<D, kTransA, 160, 1, 1, 3, true, 2>(maps, p, s);
#ifdef FSG_SMALL_M_SM90_VARIANTS
    case 2: return launch_cfg<D, kTransA, 48, 1, 1, 5, false, 2>(maps, p, s);
    case 3: return launch_cfg<D, kTransA, 64, 1, 1, 4, false, 2>(maps, p, s);
    case 12: return launch_cfg<D, kTransA, 112, 2, 1, 5, false, 1>(maps, p, s);
    case 13: return launch_cfg<D, kTransA, 128, 1, 1, 3, true, 2>(maps, p, s);
#endif
    default: set_error("small_m_sm90: unknown configuration %d", id); return FSG_ERR_INTERNAL;
  }
}

// Rows taken by the automatic path (kernel_select.cpp), measured on H100 (bench/NOTES.md, small-M
// step 5): at 9..16 rows it is within +-3% of small_m.cu (either way, by layout and run), so
// small_m.cu keeps M <= 16; from 17 rows it is faster (1-4% at 17..32, 1.3-2.6x at 33..128). Up
// to 256 rows it takes 0.088-0.117 ms; the 128-row sm_90a kernel 0.099 ms at 64 rows (step 3) and
// 0.15-0.26 ms at 128..256 (scratch-harness build).
// Above 256 (row blocks of 256, re-streaming the weights) the crossover with the sm_90a kernel
// was not measured against the library's build of it: not taken by default.
#ifndef FSG_SMALL_M_SM90_MIN_M
#define FSG_SMALL_M_SM90_MIN_M 17
#endif
#ifndef FSG_SMALL_M_SM90_MAX_M
#define FSG_SMALL_M_SM90_MAX_M 256
#endif
// Forced (kPathSmallM): every M from 17 rows on; small_m.cu keeps 1..16 (both stay tested).
constexpr int64_t kForcedMinM = 17;

// Everything but the launch: checks, maps, parameters. False: decline (nothing launched).
bool prepare(const DualGemmArgs& a, int variant, Maps* maps, SwapParams* p, int* trans_a, Choice* ch) {
  const DType dt = a.x.dtype;
  if (dt != DType::BF16 && dt != DType::F16) return false;
  // Outputs in another dtype (fp8 saves) are written by the sm_80 / sm_90a epilogues.
  for (const Mat* o : {&a.z, &a.a_out, &a.b_out, &a.dz, &a.da, &a.db})
    if (o->present() && o->dtype != dt) return false;
  if (sm90_host::encode_fn() == nullptr) return false;
  const int64_t m = a.x.rows, k = a.x.cols, n = a.wg.cols;
  if (n > (int64_t{1} << 30) || m > (int64_t{1} << 30)) return false;  // int coordinates
  *ch = choose(m, variant);
  // x [M, K]: K contiguous. One row block: the box stops at M rounded up to 8 (no TMA rows past
  // the end of x; variant 2 of the harness keeps the full box).
  int box_rows = ch->x_rows;
  if (m < box_rows && variant != 2) box_rows = static_cast<int>((m + 7) / 8 * 8);
  if (!(a.x.cs == 1 || k == 1) || !encode(&maps->x, dt, a.x.data, k, m, a.x.rs, kBK, box_rows)) return false;
  // Weights [K, N]: N-contiguous -> MN-major A (box 64 columns x 64 k); K-contiguous -> K-major A.
  auto mn_major = [&](const Mat& w, CUtensorMap* map) {
    return (w.cs == 1 || n == 1) && encode(map, dt, w.data, n, k, w.rs, kCols, kBK);
  };
  auto k_major = [&](const Mat& w, CUtensorMap* map) {
    return (w.rs == 1 || k == 1) && encode(map, dt, w.data, k, n, w.cs, kBK, kCols);
  };
  if (mn_major(a.wg, &maps->g) && mn_major(a.wu, &maps->u))
    *trans_a = 1;
  else if (k_major(a.wg, &maps->g) && k_major(a.wu, &maps->u))
    *trans_a = 0;
  else
    return false;
  *p = SwapParams{};
  p->m = m;
  p->n = static_cast<int>(n);
  p->k_tiles = static_cast<int>((k + kBK - 1) / kBK);
  p->bg = vec_ref(a.bg), p->bu = vec_ref(a.bu);
  p->z = mat_ref(a.z), p->a_out = mat_ref(a.a_out), p->b_out = mat_ref(a.b_out);
  p->dz = mat_ref(a.dz), p->da = mat_ref(a.da), p->db = mat_ref(a.db);
  p->act = a.act;
  p->glu = lean_glu(a.act);
  p->epilogue = a.epilogue;
  p->weight_hint = ch->hint;
  p->stage_tx = 2 * kWBytes + box_rows * kBK * 2;
  return true;
}

fsg_status launch_prepared(DType dt, int trans_a, int id, const Maps& maps, const SwapParams& p, cudaStream_t s) {
  if (dt == DType::BF16)
    return trans_a ? launch_choice<DType::BF16, 1>(id, maps, p, s) : launch_choice<DType::BF16, 0>(id, maps, p, s);
#ifdef FSG_SMALL_M_SM90_BF16_ONLY  // scratch harness builds
  return FSG_ERR_INTERNAL;
#else
  return trans_a ? launch_choice<DType::F16, 1>(id, maps, p, s) : launch_choice<DType::F16, 0>(id, maps, p, s);
#endif
}

}  // namespace

fsg_status cuda_dual_gemm_small_m_sm90(const DualGemmArgs& a, Stream s, bool forced, bool* handled) {
  *handled = false;
  const int64_t m = a.x.rows;
  if (forced ? m < kForcedMinM : (m < FSG_SMALL_M_SM90_MIN_M || m > FSG_SMALL_M_SM90_MAX_M)) return FSG_OK;
  Maps maps;
  SwapParams p;
  int trans_a = 0;
  Choice ch{};
  if (!prepare(a, 0, &maps, &p, &trans_a, &ch)) return FSG_OK;
  *handled = true;
  return launch_prepared(a.x.dtype, trans_a, ch.id, maps, p, s);
}

}  // namespace fsg
