// fp8_block.cuh: writing fp8 block-scaled pre-activations (fp8_math.h) straight from the tensor-
// core accumulators of the fused forward's epilogues. In the mma.sync m16n8 and wgmma layouts a
// row's columns c0 + 8k + 2t + e (k = 0..3, e = 0..1) of a 32-column block sit in the 4 lanes of
// one quad (t = lane & 3), so the block's largest magnitude takes two shuffles and no shared memory.
#pragma once
#include <cstdint>

#include "activation_math.h"
#include "backend.h"
#include "fp8_math.h"

namespace fsg {

// A row-contiguous fp8 output and its block scales; p == nullptr when the output is not fp8.
struct Fp8Ref {
  uint8_t* p;
  int64_t rs;
  uint8_t* scale;
  int64_t scale_rs;
};

inline Fp8Ref fp8_ref(const Mat& m) {
  if (!m.present() || !m.fp8()) return Fp8Ref{nullptr, 0, nullptr, 0};
  return Fp8Ref{static_cast<uint8_t*>(m.data), m.rs, static_cast<uint8_t*>(m.scale), m.scale_rs};
}

// One lane's 8 values of a block: v[2k + e] is column c0 + 8k + 2t + e.
struct Block8 {
  float v[8];
};

// One lane's share of a quantized block: codes of columns c0 + 8k + 2t + {0, 1} in pair[k] (low
// byte first), and the block's scale byte.
struct Fp8Codes {
  uint16_t pair[4];
  uint8_t scale;
};

// This lane's largest magnitude in a 32-column block of which `cols` columns exist (cols >= 32:
// all of them; cols is uniform over the warp, so the bounds test runs only for a block that crosses
// the edge). NaN if any counted value is NaN (max.NaN); NaN and Inf both give the NaN scale.
__device__ __forceinline__ float fp8_lane_amax(int cols, const Block8& b) {
  if (cols >= kFp8Block) {  // a tree: 7 maxima, 3 deep (a chain from 0 is 8, 8 deep)
    float m[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) m[i] = max_nan(fabsf(b.v[2 * i]), fabsf(b.v[2 * i + 1]));
    return max_nan(max_nan(m[0], m[1]), max_nan(m[2], m[3]));
  }
  const int t = threadIdx.x & 3;
  float amax = 0.f;
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int e = 0; e < 2; ++e)
      if (8 * k + 2 * t + e < cols) amax = max_nan(amax, fabsf(b.v[2 * k + e]));
  return amax;
}

// The codes of this lane's 8 values under 2^-s = inv.
__device__ __forceinline__ void fp8_block_codes(const Block8& b, float inv, uint16_t (&pair)[4]) {
#if __CUDA_ARCH__ >= 890
  // One conversion per pair. Under a finite scale every counted value lands in [-448, 448], so the
  // hardware's only difference from fp8_encode, the sign it keeps on NaN, cannot show. A NaN scale
  // makes inv NaN, and the GPU's fp32 multiply returns its one canonical NaN, 0x7fffffff, for any
  // NaN operand: every code is the positive NaN 0x7F, as fp8_encode writes it, without a select
  // per pair (test/fp8.test.ts, "non-finite rows", holds that with -Inf and NaN inputs).
#pragma unroll
  for (int k = 0; k < 4; ++k)
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(pair[k]) : "f"(b.v[2 * k + 1] * inv), "f"(b.v[2 * k] * inv));
#else
#pragma unroll
  for (int k = 0; k < 4; ++k)
    pair[k] = static_cast<uint16_t>(fp8_quantize(b.v[2 * k], inv) | (fp8_quantize(b.v[2 * k + 1], inv) << 8));
#endif
}

// Quantizes a 32-column block of which `cols` columns exist (cols >= 32: all of them). The 4 lanes
// of the quad call it together, with `mask` naming at least those lanes (the sm_90a epilogue passes
// the full warp: a lane-dependent mask makes the compiler check convergence before each shuffle,
// five instructions). Columns past `cols` are not counted in the block's largest magnitude; their
// codes are not meant to be stored.
__device__ __forceinline__ Fp8Codes fp8_block_quantize(int cols, const Block8& b, unsigned mask) {
  float amax = fp8_lane_amax(cols, b);
  amax = max_nan(amax, __shfl_xor_sync(mask, amax, 1));
  amax = max_nan(amax, __shfl_xor_sync(mask, amax, 2));
  Fp8Codes q;
  const int byte = fp8_scale_int(amax);
  q.scale = static_cast<uint8_t>(byte);
  fp8_block_codes(b, fp8_inv_scale(byte), q.pair);
  return q;
}

// The quad's largest value of m[t] in lane t (a reduce-scatter of the 4 lanes' 4 partial maxima
// over the whole warp: 3 shuffles where reducing every block in every lane takes 8). Step 1 (lanes
// t, t^2): keep blocks {2hi, 2hi+1}, send the other pair; step 2 (lanes t, t^1): keep block t.
__device__ __forceinline__ float quad_max_scatter(const float (&m)[4]) {
  const int t = threadIdx.x & 3;
  const bool hi = (t & 2) != 0, lo = (t & 1) != 0;
  const float keep0 = hi ? m[2] : m[0], keep1 = hi ? m[3] : m[1];
  const float send0 = hi ? m[0] : m[2], send1 = hi ? m[1] : m[3];
  const float p0 = max_nan(keep0, __shfl_xor_sync(0xffffffffu, send0, 2));
  const float p1 = max_nan(keep1, __shfl_xor_sync(0xffffffffu, send1, 2));
  return max_nan(lo ? p1 : p0, __shfl_xor_sync(0xffffffffu, lo ? p0 : p1, 1));
}

// The scales of one row's four whole 32-column blocks (a quad's row of a 128-column tile, every
// lane of the warp taking part): lane t computes block t's scale byte once, instead of every lane
// computing all four, and the others read its 2^-s with one shuffle per block. inv[q]: 2^-s of
// block q in every lane of the quad; returns block t's scale byte.
__device__ __forceinline__ int fp8_row4_scales(const Block8 (&b)[4], float (&inv)[4]) {
  float m[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) m[q] = fp8_lane_amax(kFp8Block, b[q]);
  const int byte = fp8_scale_int(quad_max_scatter(m));
  const float own = fp8_inv_scale(byte);
  const int quad = threadIdx.x & 28;
#pragma unroll
  for (int q = 0; q < 4; ++q) inv[q] = __shfl_sync(0xffffffffu, own, quad | q);
  return byte;
}

// The columns of a block at c0 that exist in a matrix of n columns, as fp8_block_quantize takes
// them (capped: only "32 or more" matters).
__device__ __forceinline__ int fp8_block_cols(int64_t c0, int64_t n) {
  return static_cast<int>(n - c0 < kFp8Block ? n - c0 : kFp8Block);
}

// Quantizes columns [c0, c0 + 32) of `row` and writes them and the block's scale to o. The 4
// lanes of the quad call it together. Columns >= n are neither counted nor written.
__device__ __forceinline__ void fp8_block_store(const Fp8Ref& o, int64_t row, int64_t c0, int64_t n, const Block8& b) {
  const int lane = threadIdx.x & 31, t = lane & 3;
  const Fp8Codes q = fp8_block_quantize(fp8_block_cols(c0, n), b, 0xFu << (lane & ~3));
  uint8_t* rp = o.p + row * o.rs;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t col = c0 + 8 * k + 2 * t;
    if (col >= n) continue;
    if (col + 1 < n) {
      if ((reinterpret_cast<uintptr_t>(rp + col) & 1) == 0) {
        *reinterpret_cast<uint16_t*>(rp + col) = q.pair[k];
      } else {
        rp[col] = static_cast<uint8_t>(q.pair[k]);
        rp[col + 1] = static_cast<uint8_t>(q.pair[k] >> 8);
      }
    } else {
      rp[col] = static_cast<uint8_t>(q.pair[k]);
    }
  }
  if (t == 0 && c0 < n) o.scale[row * o.scale_rs + c0 / kFp8Block] = q.scale;
}

// The same out of line, for the sm_90a general epilogue's per-block unit (glu_block), where an
// inlined copy per call site would bloat the kernel's code whether it saves fp8 or not.
static __device__ __noinline__ void store_fp8_block(const Fp8Ref& o, int64_t row, int64_t c0, int64_t n, Block8 b) {
  fp8_block_store(o, row, c0, n, b);
}

}  // namespace fsg
