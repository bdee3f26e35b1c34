// tile_load.cuh: global -> shared memory loads of one GEMM operand tile (128 rows x BK of K).
//
// An operand is seen as rows x K, the rows being M (for x / A) or N (for a weight / B): element
// (r, k) lives at base + r*sr + k*sk. Every weight layout is such a stride pattern, so a tile is
// stored in shared memory in one of two layouts:
//   kKMajor  [128][LDK]: K contiguous (x row-major, nn.Linear's [N,K] weights);
//   kMNMajor [BK][LDN]:  rows contiguous (row-major [K,N] weights, transposed activations).
// and loaded by one of two loaders, chosen per operand at launch time:
//   async:   cp.async 16-byte chunks along the contiguous dimension (needs stride 1 there and
//            16-byte alignment of base and of the other stride); tails are zero-filled with
//            cp.async's src-size operand, so nothing out of bounds is read;
//   generic: any strides; each thread loads a group of its elements into registers (all in
//            flight together), then stores them to shared memory, group after group.
// Pitches are padded by 16 bytes (K-major) and 8 elements (MN-major) so that the ldmatrix and
// scalar fragment reads of mma_tile.cuh hit 8 (16 B) or 32 (4 B) distinct banks.
#pragma once
#include <cstdint>

namespace fsg {

enum class Layout : int { kKMajor = 0, kMNMajor = 1 };

// m16 tiles per warp along M: 2 gives 32x64 warp tiles and 8 warps per block; 4 gives 64x64
// warp tiles and 4 warps (less shared-memory traffic per mma, but measured 2-6% slower on H100
// for the Llama shape, and 3xTF32 spills there). Kept switchable for tuning.
#ifndef FSG_WARP_M16
#define FSG_WARP_M16 2
#endif
constexpr int kTileR = 128;  // rows (M or N) of one operand tile in shared memory
constexpr int kWarpM16 = FSG_WARP_M16;
constexpr int kWarpRows = 16 * kWarpM16;
constexpr int kThreads = 32 * 2 * (kTileR / kWarpRows);  // warps: (128 / kWarpRows) along M x 2 along N
constexpr int kStages = 4;     // cp.async pipeline depth

// Tile geometry for an element of `kBytes` bytes (2: f16/bf16, 4: f32). BK is 64 bytes of K.
template <int kBytes> struct Geo {
  static constexpr int BK = 64 / kBytes;   // 32 (16-bit) or 16 (f32)
  static constexpr int EPC = 16 / kBytes;  // elements per 16-byte chunk
  static constexpr int LDK = BK + EPC;     // K-major pitch (elements)
  static constexpr int LDN = kTileR + 8;   // MN-major pitch (elements)
  static constexpr int kTileElems = kTileR * LDK;
  static constexpr int kStageBytes = 2 * kTileElems * kBytes;  // A tile + B tile
  static_assert(BK * LDN <= kTileElems, "MN-major tile must fit the K-major footprint");
};

template <int kBytes> struct BitsOf;
template <> struct BitsOf<2> { using T = uint16_t; };
template <> struct BitsOf<4> { using T = uint32_t; };

// One operand of one product: element (r, k) at base + r*sr + k*sk, valid for r < rows, k < kdim.
struct TileSrc {
  const void* base;
  int64_t sr, sk;
  int64_t rows, kdim;
  int async;  // 1: the cp.async loader applies (checked on the host by can_async)
};

// Host: the smem layout an operand prefers (its contiguous dimension, else its smaller stride).
inline Layout preferred_layout(const TileSrc& s) {
  if (s.sk == 1) return Layout::kKMajor;
  if (s.sr == 1) return Layout::kMNMajor;
  return s.sk <= s.sr ? Layout::kKMajor : Layout::kMNMajor;
}

// Host: whether the cp.async loader may fill layout `l` from this operand.
inline bool can_async(const TileSrc& s, Layout l, int bytes) {
  if (reinterpret_cast<uintptr_t>(s.base) % 16 != 0) return false;
  const int64_t unit = l == Layout::kKMajor ? s.sk : s.sr;   // must be contiguous
  const int64_t other = l == Layout::kKMajor ? s.sr : s.sk;  // must keep 16-byte alignment
  return unit == 1 && (other * bytes) % 16 == 0;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; only `src_bytes` (0..16) are read, the rest of the chunk is zero-filled.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Loads rows [r0, r0+R) x K [k0, k0+BK) of `s` into `tile`, at tile rows [roff, roff+R).
// Out-of-range elements become zero (they then add nothing to the accumulators).
template <int kBytes, Layout L, int R>
__device__ __forceinline__ void load_tile(const TileSrc& s, int64_t r0, int64_t k0, void* tile, int roff,
                                          int tid) {
  using G = Geo<kBytes>;
  using Bits = typename BitsOf<kBytes>::T;
  const Bits* base = static_cast<const Bits*>(s.base);
  Bits* t = static_cast<Bits*>(tile);
  if (s.async) {
    // Chunks run along the contiguous dimension; consecutive threads take consecutive chunks.
    constexpr int kCPR = (L == Layout::kKMajor ? G::BK : R) / G::EPC;  // chunks per smem row
    constexpr int kChunks = (L == Layout::kKMajor ? R : G::BK) * kCPR;
    static_assert(kChunks % kThreads == 0, "chunk count must be a multiple of the block size");
#pragma unroll
    for (int i = 0; i < kChunks / kThreads; ++i) {
      const int c = tid + i * kThreads;
      const int outer = c / kCPR, inner = (c % kCPR) * G::EPC;
      int64_t r, k, left;
      int dst;
      if (L == Layout::kKMajor) {
        r = r0 + outer, k = k0 + inner, left = s.kdim - k;
        dst = (roff + outer) * G::LDK + inner;
      } else {
        r = r0 + inner, k = k0 + outer, left = s.rows - r;
        dst = outer * G::LDN + roff + inner;
      }
      const bool ok = r < s.rows && k < s.kdim;
      const int bytes = ok ? static_cast<int>(left < G::EPC ? left : G::EPC) * kBytes : 0;
      const Bits* src = ok ? base + r * s.sr + k * s.sk : base;
      cp_async16(smem_u32(t + dst), src, bytes);
    }
  } else {
    // Groups of kGroup elements: enough loads in flight without crowding the accumulators'
    // registers (all of a tile's elements at once made the 16-bit kernels spill).
    constexpr int kPer = R * G::BK / kThreads, kGroup = 4;
#pragma unroll 1
    for (int i0 = 0; i0 < kPer; i0 += kGroup) {
      Bits v[kGroup];
#pragma unroll
      for (int i = 0; i < kGroup; ++i) {
        const int e = tid + (i0 + i) * kThreads;
        // Consecutive threads walk the dimension this layout keeps contiguous.
        const int rr = L == Layout::kKMajor ? e / G::BK : e % R;
        const int kk = L == Layout::kKMajor ? e % G::BK : e / R;
        const int64_t r = r0 + rr, k = k0 + kk;
        v[i] = (r < s.rows && k < s.kdim) ? base[r * s.sr + k * s.sk] : Bits(0);
      }
#pragma unroll
      for (int i = 0; i < kGroup; ++i) {
        const int e = tid + (i0 + i) * kThreads;
        const int rr = L == Layout::kKMajor ? e / G::BK : e % R;
        const int kk = L == Layout::kKMajor ? e % G::BK : e / R;
        t[L == Layout::kKMajor ? (roff + rr) * G::LDK + kk : kk * G::LDN + roff + rr] = v[i];
      }
    }
  }
}

}  // namespace fsg
