// sm90_store.cuh: the sm90 kernels' output path through shared memory and TMA stores.
//
// A consumer warpgroup writes 64 rows x 128 columns of its m64n256 accumulator fragment (as
// 16-bit pairs) into a 16 KB staging buffer laid out as two 64 x 64 boxes with 128-byte swizzle,
// and one thread hands the buffer to TMA. The copy runs asynchronously, so the warpgroup goes back
// to its MMAs at once, and the global writes are full 128-byte lines. Storing straight from
// registers instead (4-byte stores, branches per element for edges and strides) made the epilogue
// a third of the forward's time at K = 4096 (bench/NOTES.md, "Hopper path", step 5). Out-of-bounds
// parts of a box are not written, so edge tiles need no special case.
#pragma once
#include <cstdint>

#include "kernel_util.cuh"
#include "sm90_ptx.cuh"

namespace fsg {
namespace sm90 {

constexpr int kSlabBytes = 64 * 128 * 2;  // one warpgroup's 64 x 128 staging buffer, 16 KB

#if FSG_SM90_ENABLED
// The staging protocol of one warpgroup (bar_id: a named barrier it owns, 128 threads):
// slab_acquire() until the previous TMA stores have read the buffer; writes; slab_publish()
// makes them visible to TMA; then one thread (tid 0) issues the stores and bulk_commit().
__device__ __forceinline__ void slab_acquire(int bar_id) {
  if ((threadIdx.x & 127) == 0) bulk_wait_read();
  named_bar_sync(bar_id, 128);
}
__device__ __forceinline__ void slab_publish(int bar_id) {
  fence_async_smem();
  named_bar_sync(bar_id, 128);
}

// This thread's fp8 staging base in a 64 x 128-byte box with 128-byte swizzle at buf (1024-byte
// aligned): row r = warp*16 + lane/4, byte 2*(lane&3) of the row's chunk 0 ^ (r & 7). The chunk
// bits (4..6) of the base hold r & 7, so chunk c of the row is at base ^ (c << 4): one XOR, and
// the pair's other offsets are immediates (fp8_pair_addr). r & 7 is lane / 4 for both row halves.
__device__ __forceinline__ uint32_t fp8_stage_base(uint32_t buf) {
  const int lane = threadIdx.x & 31, warp = (threadIdx.x & 127) >> 5;
  return buf + warp * 2048 + (lane >> 2) * 128 + ((lane >> 2) << 4) + 2 * (lane & 3);
}
// The address of this thread's pair k (0..3) of 32-column block q (0..3), row half h (0, 1): byte
// columns 32q + 8k + 2*(lane&3) + {0, 1} (16-byte chunk 2q + k/2) of row r + 8h.
__device__ __forceinline__ uint32_t fp8_pair_addr(uint32_t base, int q, int k, int h) {
  return (base ^ static_cast<uint32_t>((2 * q + (k >> 1)) << 4)) + 8 * (k & 1) + 1024 * h;
}

// Two fp8 codes (low byte first) at a shared-memory address. No "memory" clobber: the staging
// protocol's barrier and fence are volatile asm too, which keeps the order, and a clobber per
// store made the compiler reload the kernel parameters between them.
__device__ __forceinline__ void stage_fp8_pair(uint32_t addr, uint16_t codes) {
  asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(addr), "h"(codes));
}

// The byte address of this thread's fragment pair j (0..15), row half h (0, 1) in a staging
// buffer: row warp*16 + lane/4 + 8h, columns 8j + 2*(lane&3) + {0, 1} of the 64 x 128 slab, two
// 64 x 64 boxes with 128-byte swizzle. 16-byte chunk c of row r sits at chunk c ^ (r & 7), and
// r & 7 == lane / 4 here, so the 8 rows of one warp access hit 8 different chunks (no bank conflicts).
__device__ __forceinline__ uint32_t slab_pair_addr(uint32_t buf, int j, int h) {
  const int lane = threadIdx.x & 31, warp = (threadIdx.x & 127) >> 5;
  return buf + (warp * 16 + (lane >> 2) + 8 * h) * 128 + (lane & 3) * 4 + (j >> 3) * 8192 +
         (((j & 7) ^ (lane >> 2)) << 4);
}

// This thread's pair (j, h) of a slab staged in the buffer (by TMA: the backward's dz).
template <class T> __device__ __forceinline__ float2 load_slab_pair(uint32_t buf, int j, int h) {
  uint32_t bits;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(bits) : "r"(slab_pair_addr(buf, j, h)) : "memory");
  return Pair<T>::split(*reinterpret_cast<const typename Pair<T>::T2*>(&bits));
}

// Stores a 64 x 128 slab whose top-left element is (row0, col0) of the map's matrix; rows_left and
// cols_left are the rows and columns of the matrix from there on (<= 0: nothing to store). pair(j, h)
// returns the two values of this thread's fragment pair j (0..15) in row half h (0, 1): row
// warp*16 + lane/4 + 8h, columns 8j + 2*(lane&3) + {0, 1} of the slab. bar_id: a named barrier
// owned by this warpgroup (128 threads). The buffer may be rewritten by the next call at once.
template <class T, class PairFn>
__device__ __forceinline__ void store_slab(uint32_t buf, const CUtensorMap* map, int row0, int col0, int rows_left,
                                           int cols_left, int bar_id, PairFn pair) {
  const int tid = threadIdx.x & 127;
  slab_acquire(bar_id);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const float2 v = pair(j, h);
      const typename Pair<T>::T2 packed = Pair<T>::make(v.x, v.y);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(slab_pair_addr(buf, j, h)),
                   "r"(*reinterpret_cast<const uint32_t*>(&packed))
                   : "memory");
    }
  }
  slab_publish(bar_id);
  if (tid == 0) {
    if (rows_left > 0 && cols_left > 0) tma_store_2d(map, buf, col0, row0);
    if (rows_left > 0 && cols_left > 64) tma_store_2d(map, buf + 8192, col0 + 64, row0);
    bulk_commit();
  }
}
#endif  // FSG_SM90_ENABLED

}  // namespace sm90
}  // namespace fsg
