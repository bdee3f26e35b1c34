// sm90_glu_side.cuh: the stored-mode dSwiGLU run as side work of the dX GEMM (gemm_sm90.cu).
//
// The stored-mode backward first computes dA = dz·u·silu'(g) and dB = dz·silu(g) from the saved
// pre-activations: a memory-bound pass (0.41 ms of a 5.6 ms backward at 8192x4096x14336, at 96% of
// the copy rate) during which the tensor cores idle. The dX GEMM that reads dA and dB next is
// compute-bound, and three of the four warps of its producer warpgroup have nothing to do. Here
// those warps compute [dA|dB] while the GEMM runs, in items of 128 rows x 64 columns (one row tile
// times one K tile of dA and the same K tile of dB), and raise a ready flag per item; the producer
// thread waits for an item's flag before its TMA loads read the item.
//
// Items are claimed from a counter in the order the GEMM's tiles first read them (the tile order's
// bands of row tiles, K tile by K tile), so whichever warps run take the next one. An item is only
// waited on once a running warp has claimed it or one will, so the kernel cannot deadlock even when
// not all of its CTAs are resident at once. dA and dB land in global memory as before: the bias
// sums and the dW GEMM read them after the kernel.
#pragma once
#include <cstdint>

#include "activation_math.h"
#include "kernel_util.cuh"
#include "sm90_ptx.cuh"  // FSG_SM90_ENABLED

namespace fsg {
namespace sm90 {

#ifndef FSG_SIDE_PREFETCH
#define FSG_SIDE_PREFETCH 1  // 0: no L2 prefetch of an item's inputs (A/B measurements)
#endif

#ifndef FSG_SIDE_DEPTH
#define FSG_SIDE_DEPTH 3
#endif

constexpr int kSideDepth = FSG_SIDE_DEPTH;  // rows per lane whose loads are in flight together
constexpr int kSideRows = 128;  // rows per item: the GEMM's row tile
constexpr int kSideCols = 64;   // columns per item: one K tile of dA (and of dB)

struct GluSide {
  MatRef dz, g, u, da, db;  // [m, n], unit column stride, 16-byte aligned rows, n % 8 == 0
  uint32_t* ready;          // [row_tiles * chunks]: 1 once the item is written; zeroed before launch
  uint32_t* next;           // the next unclaimed item; zeroed before launch
  int m, n;
  int row_tiles, chunks;    // ceil(m / 128), ceil(n / 64)
  int band;                 // row tiles per band of the GEMM's tile order
};

#if FSG_SM90_ENABLED
// Item i -> (row tile, column chunk): bands of `band` row tiles, chunk by chunk inside a band.
__device__ __forceinline__ void side_item(int64_t i, const GluSide& s, int& tm, int& ch) {
  const int64_t band_items = static_cast<int64_t>(s.band) * s.chunks;
  const int band = static_cast<int>(i / band_items);
  const int first = band * s.band;
  const int rows = min(s.band, s.row_tiles - first);
  const int r = static_cast<int>(i - band * band_items);
  tm = first + r % rows;
  ch = r / rows;
}

__device__ __forceinline__ uint32_t& side_flag(const GluSide& s, int tm, int ch) {
  return s.ready[static_cast<int64_t>(tm) * s.chunks + ch];
}

// dA, dB for 8 columns (16 bytes) of one row, in place: g becomes dA, u becomes dB.
template <class T> __device__ __forceinline__ void side_grads(uint4& g, uint4& u, const uint4& dz) {
  using T2 = typename Pair<T>::T2;
  uint32_t* gw = &g.x;
  uint32_t* uw = &u.x;
  const uint32_t* dw = &dz.x;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 gf = Pair<T>::split(*reinterpret_cast<const T2*>(&gw[k]));
    const float2 uf = Pair<T>::split(*reinterpret_cast<const T2*>(&uw[k]));
    const float2 df = Pair<T>::split(*reinterpret_cast<const T2*>(&dw[k]));
    float da0, db0, da1, db1;
    swiglu_grads(gf.x, uf.x, df.x, &da0, &db0);
    swiglu_grads(gf.y, uf.y, df.y, &da1, &db1);
    const T2 a = Pair<T>::make(da0, da1), b = Pair<T>::make(db0, db1);
    gw[k] = *reinterpret_cast<const uint32_t*>(&a);
    uw[k] = *reinterpret_cast<const uint32_t*>(&b);
  }
}

template <class T> __device__ __forceinline__ uint4 side_load(const MatRef& m, int64_t r, int64_t c) {
  return __ldcs(reinterpret_cast<const uint4*>(static_cast<const T*>(m.p) + r * m.rs + c));  // read once
}
template <class T> __device__ __forceinline__ void side_store(const MatRef& m, int64_t r, int64_t c, const uint4& v) {
  *reinterpret_cast<uint4*>(static_cast<T*>(m.p) + r * m.rs + c) = v;
}

// Asks L2 for the item's rows of dz, g and u at once (bulk prefetches: no registers held), so the
// loads below mostly hit L2 instead of each waiting on memory.
template <class T> __device__ __forceinline__ void side_prefetch(const GluSide& s, int64_t r0, int rows, int64_t c) {
#if FSG_SIDE_PREFETCH
  const uint32_t bytes = static_cast<uint32_t>(min(static_cast<int64_t>(kSideCols), s.n - c) * sizeof(T));
  for (int q = threadIdx.x & 31; q < 3 * rows; q += 32) {
    const int which = q / rows;
    const MatRef& m = which == 0 ? s.g : which == 1 ? s.u : s.dz;
    const T* p = static_cast<const T*>(m.p) + (r0 + q % rows) * m.rs + c;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p), "r"(bytes) : "memory");
  }
#endif
}

// One warp's share: claim items until none is left. A lane owns 8 columns of every 4th row of
// the item; kSideDepth rows' loads are issued before any is used, so more bytes are in flight.
template <class T> __device__ void side_work(const GluSide& s) {
  const int lane = threadIdx.x & 31;
  const int64_t items = static_cast<int64_t>(s.row_tiles) * s.chunks;
  for (;;) {
    uint32_t i = 0;
    if (lane == 0) i = atomicAdd(s.next, 1u);
    i = __shfl_sync(0xffffffffu, i, 0);
    if (i >= items) return;
    int tm, ch;
    side_item(i, s, tm, ch);
    const int64_t c = static_cast<int64_t>(ch) * kSideCols + (lane & 7) * 8;
    const int64_t r_end = min(static_cast<int64_t>(s.m), static_cast<int64_t>(tm + 1) * kSideRows);
    side_prefetch<T>(s, static_cast<int64_t>(tm) * kSideRows, static_cast<int>(r_end - static_cast<int64_t>(tm) * kSideRows),
                     static_cast<int64_t>(ch) * kSideCols);
    if (c < s.n) {
      for (int64_t r = static_cast<int64_t>(tm) * kSideRows + (lane >> 3); r < r_end; r += 4 * kSideDepth) {
        uint4 g[kSideDepth], u[kSideDepth], d[kSideDepth];
#pragma unroll
        for (int k = 0; k < kSideDepth; ++k)
          if (r + 4 * k < r_end)
            g[k] = side_load<T>(s.g, r + 4 * k, c), u[k] = side_load<T>(s.u, r + 4 * k, c), d[k] = side_load<T>(s.dz, r + 4 * k, c);
#pragma unroll
        for (int k = 0; k < kSideDepth; ++k)
          if (r + 4 * k < r_end) {
            side_grads<T>(g[k], u[k], d[k]);
            side_store<T>(s.da, r + 4 * k, c, g[k]);
            side_store<T>(s.db, r + 4 * k, c, u[k]);
          }
      }
    }
    // The item is read by TMA (the async proxy) in other CTAs: order these writes for it, then
    // publish the flag with release semantics once every lane's writes are done.
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
    __syncwarp();
    if (lane == 0) {
      __threadfence();
      asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(&side_flag(s, tm, ch)), "r"(1u) : "memory");
    }
  }
}

// The producer thread, before its TMA loads read item (tm, ch). `known`: the chunks of row tile tm
// already seen ready (reset to 0 for each tile). Each poll reads the flags of the next kSideLook
// chunks at once, so one L2 round trip covers several K tiles instead of one per item (a round
// trip per item, between the ring's free slot and the TMA issue, cost more than the pass saved).
constexpr int kSideLook = 8;
__device__ __forceinline__ void side_wait(const GluSide& s, int tm, int ch, int& known) {
  if (ch < known) return;
  const uint32_t* flags = &side_flag(s, tm, 0);
  for (;;) {
    uint32_t v[kSideLook];
#pragma unroll
    for (int j = 0; j < kSideLook; ++j) {
      v[j] = 0;
      if (ch + j < s.chunks) asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];\n" : "=r"(v[j]) : "l"(flags + ch + j) : "memory");
    }
    int ready = 0;
#pragma unroll
    for (int j = 0; j < kSideLook; ++j)
      if (v[j] != 0 && ready == j) ready = j + 1;
    if (ready > 0) {
      known = ch + ready;
      break;
    }
    __nanosleep(32);
  }
  // The relaxed reads saw the release stores: the fence makes this an acquire of every item seen,
  // and the proxy fence orders the TMA loads after it.
  asm volatile("fence.acq_rel.gpu;\n" ::: "memory");
  asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
#endif  // FSG_SM90_ENABLED

}  // namespace sm90
}  // namespace fsg
