// activation.cu: the elementwise CUDA kernels.
//   glu_forward_kernel   out = glu(gate + bg, up + bu) * w[row] (SwiGLU or a variant, activation_math.h);
//                        grid-stride over rows (blockIdx.x) and column blocks (blockIdx.y).
//   glu_backward_kernel  dgate, dup, and dweights[row] = sum_n dout*glu(g, u): one block per row
//                        when dweights is wanted, with a fixed-order block reduction (deterministic,
//                        no atomics); else column blocks as in the forward.
//   (the backward reads gate/up either in the call's dtype or as fp8 with block scales)
//   Both come in two forms: one element per thread step through strided views (any layout), and
//   16 bytes per matrix per step where every matrix allows it (Rows16 below). The scalar form moved
//   2-byte elements at ~1.2 TB/s, less than half the copy rate (bench/NOTES.md, "elementwise").
//   The 16-byte form has one instantiation per lean GLU kind (activation_math.h): through the
//   general code, a GLU variant ran 11-33% above the copy rate ("GLU variants", steps 17-18).
//   Its backward also reads fp8 gate/up, 8 (or, for f32, 4) codes per load ("GLU variants", step 23).
//   fp8_quantize_kernel  one warp per 32-column block of a row: amax by shuffles, then e4m3 bytes
//   fp8_dequantize_kernel  elementwise, grid-stride like glu_forward_kernel
//   column_sum_kernel    dst[c] (+)= sum_r src(r, c): a block owns 32 columns (one warp wide, so
//                        reads coalesce along a row) and 16 row phases; each thread sums its
//                        rows with 4 independent partial sums, then the 16 phases are added in
//                        a fixed order. No scratch, no atomics: bitwise reproducible. Its rows16
//                        form owns 32 x 16 bytes of columns per block.
#include <cuda_runtime.h>

#include "activation_math.h"
#include "backend.h"
#include "fp8_math.h"
#include "kernel_util.cuh"

namespace fsg {
namespace {

constexpr int kBlock = 256;

template <class T>
__global__ void glu_forward_kernel(fsg_glu_params act, MatRef gate, MatRef up, VecRef bg, VecRef bu, VecRef w,
                                   MatRef out, int64_t m, int64_t n) {
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const float wr = w.load_or(r, 1.f);
    for (int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; c < n;
         c += static_cast<int64_t>(gridDim.y) * blockDim.x) {
      const float g = gate.load<T>(r, c) + bg.load_or(c, 0.f);
      const float u = up.load<T>(r, c) + bu.load_or(c, 0.f);
      out.store<T>(r, c, glu_value(act, g, u) * wr);
    }
  }
}

// Fixed-order sum of one float per thread over the block (blockDim.x == kBlock).
__device__ float block_sum(float v) {
  __shared__ float warp_sums[kBlock / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.f;
  if (threadIdx.x == 0)
    for (int i = 0; i < kBlock / 32; ++i) s += warp_sums[i];
  __syncthreads();  // warp_sums may be reused by the next row
  return s;         // valid in thread 0
}

// 16 bytes of one row: kVec adjacent elements, for matrices with unit column stride whose base
// and row stride are 16-byte aligned and whose width is a multiple of kVec (rows16_ok).
template <class T> struct Rows16 {
  static constexpr int kVec = 16 / sizeof(T);
  static __device__ __forceinline__ void load(const MatRef& m, int64_t r, int64_t c, float (&v)[kVec]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const T*>(m.p) + r * m.rs + c);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = to_f32(e[i]);
  }
  static __device__ __forceinline__ void store(const MatRef& m, int64_t r, int64_t c, const float (&v)[kVec]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < kVec; ++i) e[i] = from_f32<T>(v[i]);
    *reinterpret_cast<uint4*>(static_cast<T*>(m.p) + r * m.rs + c) = raw;
  }
};

bool rows16_ok(const Mat& m, int64_t elem_bytes) {
  return (m.cs == 1 || m.cols <= 1) && reinterpret_cast<uintptr_t>(m.data) % 16 == 0 && (m.rs * elem_bytes) % 16 == 0 &&
         (m.cols * elem_bytes) % 16 == 0;
}

// The forward, 16 bytes per matrix per step (same math as glu_forward_kernel).
template <class T, int kKind>
__global__ void glu_forward_rows16_kernel(fsg_glu_params act, SiluGlu silu, MatRef gate, MatRef up, VecRef bg,
                                          VecRef bu, VecRef w, MatRef out, int64_t m, int64_t n) {
  using R = Rows16<T>;
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const float wr = w.load_or(r, 1.f);
    for (int64_t c = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * R::kVec; c < n;
         c += static_cast<int64_t>(gridDim.y) * blockDim.x * R::kVec) {
      float g[R::kVec], u[R::kVec], z[R::kVec];
      R::load(gate, r, c, g);
      R::load(up, r, c, u);
#pragma unroll
      for (int i = 0; i < R::kVec; ++i)
        z[i] = glu_value_of<kKind>(act, silu, g[i] + bg.load_or(c + i, 0.f), u[i] + bu.load_or(c + i, 0.f)) * wr;
      R::store(out, r, c, z);
    }
  }
}

// A saved pre-activation: in the call's dtype T, or (kFp8) e4m3 bytes with block scales.
struct SavedRef {
  MatRef m;
  const uint8_t* scale;
  int64_t scale_rs, scale_c0;
  template <class T, bool kFp8> __device__ __forceinline__ float load(int64_t r, int64_t c) const {
    if constexpr (kFp8) {
      const uint8_t q = static_cast<const uint8_t*>(m.p)[r * m.rs + c];
      return fp8_dequantize(q, scale[r * scale_rs + (scale_c0 + c) / kFp8Block]);
    } else {
      return m.load<T>(r, c);
    }
  }
};

SavedRef saved_ref(const Mat& v) {
  return SavedRef{mat_ref(v), static_cast<const uint8_t*>(v.scale), v.scale_rs, v.scale_c0};
}

// Rows16<T>::kVec saved pre-activations of row r from column c: 16 bytes of T, or (kFp8) as many
// e4m3 codes in one 8- or 4-byte load, which share one block scale (fp8_rows_ok).
template <class T, bool kFp8>
__device__ __forceinline__ void load_saved(const SavedRef& s, int64_t r, int64_t c, float (&v)[Rows16<T>::kVec]) {
  constexpr int kVec = Rows16<T>::kVec;
  if constexpr (kFp8) {
    using Word = std::conditional_t<kVec == 8, uint2, uint32_t>;
    const Word raw = *reinterpret_cast<const Word*>(static_cast<const uint8_t*>(s.m.p) + r * s.m.rs + c);
    const uint8_t* q = reinterpret_cast<const uint8_t*>(&raw);
    const float scale = fp8_scale_value(s.scale[r * s.scale_rs + (s.scale_c0 + c) / kFp8Block]);
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = fp8_decode(q[i]) * scale;  // = fp8_dequantize
  } else {
    Rows16<T>::load(s.m, r, c, v);
  }
}

// An fp8 saved matrix that load_saved can read kVec columns at a time: unit column stride, the
// base and row stride aligned to kVec bytes, and kVec-column steps that stay in one 32-column block.
bool fp8_rows_ok(const Mat& m, int64_t vec) {
  return (m.cs == 1 || m.cols <= 1) && reinterpret_cast<uintptr_t>(m.data) % vec == 0 && m.rs % vec == 0 &&
         m.cols % vec == 0 && m.scale_c0 % vec == 0;
}

// The backward, 16 bytes per matrix per step (same math as glu_backward_kernel; the row sum for dw
// has its own fixed order). With dw, gridDim.y is 1: a block owns whole rows for the row sum. The
// saved pre-activations are in T, or (kFp8) e4m3 codes read kVec bytes at a time.
template <class T, int kKind, bool kFp8>
__global__ void glu_backward_rows16_kernel(fsg_glu_params act, SiluGlu silu, MatRef dout, SavedRef gate, SavedRef up,
                                           VecRef bg, VecRef bu, VecRef w, MatRef dgate, MatRef dup, VecRef dw,
                                           int64_t m, int64_t n) {
  using R = Rows16<T>;
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const float wr = w.load_or(r, 1.f);
    float part = 0.f;
    for (int64_t c = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * R::kVec; c < n;
         c += static_cast<int64_t>(gridDim.y) * blockDim.x * R::kVec) {
      float g[R::kVec], u[R::kVec], d[R::kVec], dg[R::kVec], du[R::kVec];
      load_saved<T, kFp8>(gate, r, c, g);
      load_saved<T, kFp8>(up, r, c, u);
      R::load(dout, r, c, d);
#pragma unroll
      for (int i = 0; i < R::kVec; ++i) {
        const float value = glu_grads_of<kKind>(act, silu, g[i] + bg.load_or(c + i, 0.f),
                                                u[i] + bu.load_or(c + i, 0.f), d[i] * wr, &dg[i], &du[i]);
        part += d[i] * value;
      }
      R::store(dgate, r, c, dg);
      R::store(dup, r, c, du);
    }
    if (dw.p) {  // uniform across the block
      const float total = block_sum(part);
      if (threadIdx.x == 0) dw.store(r, total);
    }
  }
}

template <class T, bool kFp8>
__global__ void glu_backward_kernel(fsg_glu_params act, MatRef dout, SavedRef gate, SavedRef up, VecRef bg, VecRef bu,
                                    VecRef w, MatRef dgate, MatRef dup, VecRef dw, int64_t m, int64_t n) {
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const float wr = w.load_or(r, 1.f);
    float part = 0.f;
    for (int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; c < n;
         c += static_cast<int64_t>(gridDim.y) * blockDim.x) {
      const float g = gate.load<T, kFp8>(r, c) + bg.load_or(c, 0.f);
      const float u = up.load<T, kFp8>(r, c) + bu.load_or(c, 0.f);
      const float d = dout.load<T>(r, c);
      float dg, du;
      const float value = glu_grads(act, g, u, d * wr, &dg, &du);
      dgate.store<T>(r, c, dg);
      dup.store<T>(r, c, du);
      part += d * value;
    }
    if (dw.p) {  // uniform across the block
      const float total = block_sum(part);
      if (threadIdx.x == 0) dw.store(r, total);
    }
  }
}

constexpr int kColCols = 32, kColPhases = 16;

template <class T>
__global__ void column_sum_kernel(MatRef src, VecRef dst, int64_t m, int64_t n, int accumulate) {
  __shared__ float partial[kColPhases][kColCols];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColCols + threadIdx.x;
  const int y = threadIdx.y;
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  if (c < n) {
    int64_t r = y;
    for (; r + 3 * kColPhases < m; r += 4 * kColPhases) {  // 4 loads in flight per thread
      s0 += src.load<T>(r, c);
      s1 += src.load<T>(r + kColPhases, c);
      s2 += src.load<T>(r + 2 * kColPhases, c);
      s3 += src.load<T>(r + 3 * kColPhases, c);
    }
    for (; r < m; r += kColPhases) s0 += src.load<T>(r, c);
  }
  partial[y][threadIdx.x] = (s0 + s1) + (s2 + s3);
  __syncthreads();
  if (y == 0 && c < n) {
    float total = 0.f;
    for (int i = 0; i < kColPhases; ++i) total += partial[i][threadIdx.x];
    if (accumulate) total += dst.load(c);
    dst.store(c, total);
  }
}

// column_sum_kernel with 16 bytes per row step: a block owns kColCols * kVec columns (a warp
// reads 512 contiguous bytes of a row), and each thread sums its kVec columns over its row phase.
template <class T>
__global__ void column_sum_rows16_kernel(MatRef src, VecRef dst, int64_t m, int64_t n, int accumulate) {
  using R = Rows16<T>;
  __shared__ float partial[kColPhases][kColCols * R::kVec];
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kColCols + threadIdx.x) * R::kVec;
  const int y = threadIdx.y;
  float s0[R::kVec] = {}, s1[R::kVec] = {};  // two partial sums per column: two loads in flight
  if (c < n) {
    int64_t r = y;
    for (; r + kColPhases < m; r += 2 * kColPhases) {
      float v0[R::kVec], v1[R::kVec];
      R::load(src, r, c, v0);
      R::load(src, r + kColPhases, c, v1);
#pragma unroll
      for (int i = 0; i < R::kVec; ++i) s0[i] += v0[i], s1[i] += v1[i];
    }
    if (r < m) {
      float v0[R::kVec];
      R::load(src, r, c, v0);
#pragma unroll
      for (int i = 0; i < R::kVec; ++i) s0[i] += v0[i];
    }
  }
#pragma unroll
  for (int i = 0; i < R::kVec; ++i) partial[y][threadIdx.x * R::kVec + i] = s0[i] + s1[i];
  __syncthreads();
  // Thread (x, y) finishes column 32y + x of the block (and + 512, ...): the phases added in order.
  for (int j = y * kColCols + threadIdx.x; j < kColCols * R::kVec; j += kColPhases * kColCols) {
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kColCols * R::kVec + j;
    if (col >= n) continue;
    float total = 0.f;
    for (int i = 0; i < kColPhases; ++i) total += partial[i][j];
    if (accumulate) total += dst.load(col);
    dst.store(col, total);
  }
}

// Rows x column blocks of `per_thread * kBlock` columns; 1 column block when a block must own rows.
dim3 elementwise_grid(int64_t m, int64_t n, int64_t per_thread, bool whole_rows) {
  const int64_t col_blocks = whole_rows ? 1 : (n + kBlock * per_thread - 1) / (kBlock * per_thread);
  return dim3(clamp_grid(m, 1u << 30), clamp_grid(col_blocks, 65535));
}

template <class T>
fsg_status glu_forward(const GluForwardArgs& a, cudaStream_t s) {
  const int64_t m = a.gate.rows, n = a.gate.cols;
  const MatRef gate = mat_ref(a.gate), up = mat_ref(a.up), out = mat_ref(a.out);
  const VecRef bg = vec_ref(a.bias_gate), bu = vec_ref(a.bias_up), w = vec_ref(a.weights);
  if (rows16_ok(a.gate, sizeof(T)) && rows16_ok(a.up, sizeof(T)) && rows16_ok(a.out, sizeof(T))) {
    with_lean_kind(lean_glu_kind(a.act), [&](auto kind) {
      constexpr int kKind = decltype(kind)::value;
      glu_forward_rows16_kernel<T, kKind><<<elementwise_grid(m, n, Rows16<T>::kVec, false), kBlock, 0, s>>>(
          a.act, lean_silu_fold(a.act), gate, up, bg, bu, w, out, m, n);
    });
    return launch_status("glu_forward_rows16_kernel");
  }
  glu_forward_kernel<T><<<elementwise_grid(m, n, 1, false), kBlock, 0, s>>>(a.act, gate, up, bg, bu, w, out, m, n);
  return launch_status("glu_forward_kernel");
}

template <class T>
fsg_status glu_backward(const GluBackwardArgs& a, cudaStream_t s) {
  const int64_t m = a.gate.rows, n = a.gate.cols;
  const MatRef dout = mat_ref(a.dout), dgate = mat_ref(a.dgate), dup = mat_ref(a.dup);
  const VecRef bg = vec_ref(a.bias_gate), bu = vec_ref(a.bias_up), w = vec_ref(a.weights), dw = vec_ref(a.dweights);
  const bool whole_rows = a.dweights.present(), fp8 = a.gate.fp8();
  constexpr int64_t kVec = Rows16<T>::kVec;
  bool ok = true;
  for (const Mat* mat : {&a.dout, &a.dgate, &a.dup}) ok = ok && rows16_ok(*mat, sizeof(T));
  for (const Mat* mat : {&a.gate, &a.up}) ok = ok && (fp8 ? fp8_rows_ok(*mat, kVec) : rows16_ok(*mat, sizeof(T)));
  if (ok) {
    with_lean_kind(lean_glu_kind(a.act), [&](auto kind) {
      constexpr int kKind = decltype(kind)::value;
      auto* kernel = fp8 ? glu_backward_rows16_kernel<T, kKind, true> : glu_backward_rows16_kernel<T, kKind, false>;
      kernel<<<elementwise_grid(m, n, kVec, whole_rows), kBlock, 0, s>>>(a.act, lean_silu_fold(a.act), dout,
                                                                          saved_ref(a.gate), saved_ref(a.up), bg, bu,
                                                                          w, dgate, dup, dw, m, n);
    });
    return launch_status("glu_backward_rows16_kernel");
  }
  auto* kernel = fp8 ? glu_backward_kernel<T, true> : glu_backward_kernel<T, false>;
  kernel<<<elementwise_grid(m, n, 1, whole_rows), kBlock, 0, s>>>(a.act, dout, saved_ref(a.gate), saved_ref(a.up), bg,
                                                                   bu, w, dgate, dup, dw, m, n);
  return launch_status("glu_backward_kernel");
}

// One warp per (row, 32-column block); blockDim (32, 8): 8 blocks of a row per CTA.
template <class T>
__global__ void fp8_quantize_kernel(MatRef src, uint8_t* dst, int64_t dst_rs, uint8_t* scale, int64_t scale_rs,
                                    int64_t m, int64_t n) {
  const int64_t blocks = (n + kFp8Block - 1) / kFp8Block;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y) * kFp8Block + threadIdx.x;
  if (c - threadIdx.x >= blocks * kFp8Block) return;  // whole warp past the last block
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const float v = c < n ? src.load<T>(r, c) : 0.f;
    const float a = fabsf(v);
    float amax = a == a ? a : __int_as_float(0x7f800000);  // NaN -> Inf: the block's scale is NaN
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const uint8_t sb = fp8_scale_byte(amax);
    if (c < n) dst[r * dst_rs + c] = fp8_quantize(v, fp8_inv_scale(sb));
    if (threadIdx.x == 0) scale[r * scale_rs + c / kFp8Block] = sb;
  }
}

template <class T>
__global__ void fp8_dequantize_kernel(SavedRef src, MatRef out, int64_t m, int64_t n) {
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x)
    for (int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; c < n;
         c += static_cast<int64_t>(gridDim.y) * blockDim.x)
      out.store<T>(r, c, src.load<T, true>(r, c));
}

template <class T>
fsg_status fp8_convert(const Fp8ConvertArgs& a, cudaStream_t s) {
  const int64_t m = a.src.rows, n = a.src.cols;
  if (a.dst.fp8()) {
    const int64_t blocks = (n + kFp8Block - 1) / kFp8Block;
    const dim3 block(32, 8), grid(clamp_grid(m, 65535), clamp_grid((blocks + 7) / 8, 65535));
    if ((blocks + 7) / 8 > 65535) {
      set_error("fsg_quantize_fp8: %lld columns exceed the kernel's grid (%lld)", static_cast<long long>(n),
                65535LL * 8 * kFp8Block);
      return FSG_ERR_TOO_LARGE;
    }
    fp8_quantize_kernel<T><<<grid, block, 0, s>>>(mat_ref(a.src), static_cast<uint8_t*>(a.dst.data), a.dst.rs,
                                                   static_cast<uint8_t*>(a.dst.scale), a.dst.scale_rs, m, n);
    return launch_status("fp8_quantize_kernel");
  }
  const dim3 grid = elementwise_grid(m, n, 1, false);
  fp8_dequantize_kernel<T><<<grid, kBlock, 0, s>>>(saved_ref(a.src), mat_ref(a.dst), m, n);
  return launch_status("fp8_dequantize_kernel");
}

template <class T>
fsg_status column_sum(const ColumnSumArgs& a, cudaStream_t s) {
  const int64_t m = a.src.rows, n = a.src.cols;
  const dim3 block(kColCols, kColPhases);
  if (rows16_ok(a.src, sizeof(T))) {
    constexpr int64_t kBlockCols = kColCols * Rows16<T>::kVec;
    column_sum_rows16_kernel<T><<<clamp_grid((n + kBlockCols - 1) / kBlockCols, 0x7fffffff), block, 0, s>>>(
        mat_ref(a.src), vec_ref(a.dst), m, n, a.accumulate ? 1 : 0);
    return launch_status("column_sum_rows16_kernel");
  }
  column_sum_kernel<T><<<clamp_grid((n + kColCols - 1) / kColCols, 0x7fffffff), block, 0, s>>>(
      mat_ref(a.src), vec_ref(a.dst), m, n, a.accumulate ? 1 : 0);
  return launch_status("column_sum_kernel");
}

}  // namespace

fsg_status cuda_glu_forward(const GluForwardArgs& a, Stream s) {
  switch (a.gate.dtype) {
    case DType::F32: return glu_forward<float>(a, s);
    case DType::F16: return glu_forward<__half>(a, s);
    case DType::BF16: return glu_forward<__nv_bfloat16>(a, s);
  }
  set_error("cuda_glu_forward: unknown dtype %d", static_cast<int>(a.gate.dtype));
  return FSG_ERR_DTYPE;
}

fsg_status cuda_glu_backward(const GluBackwardArgs& a, Stream s) {
  switch (a.dout.dtype) {
    case DType::F32: return glu_backward<float>(a, s);
    case DType::F16: return glu_backward<__half>(a, s);
    case DType::BF16: return glu_backward<__nv_bfloat16>(a, s);
  }
  set_error("cuda_glu_backward: unknown dtype %d", static_cast<int>(a.gate.dtype));
  return FSG_ERR_DTYPE;
}

fsg_status cuda_fp8_convert(const Fp8ConvertArgs& a, Stream s) {
  const DType plain = a.dst.fp8() ? a.src.dtype : a.dst.dtype;  // the side that is not fp8
  switch (plain) {
    case DType::F32: return fp8_convert<float>(a, s);
    case DType::F16: return fp8_convert<__half>(a, s);
    case DType::BF16: return fp8_convert<__nv_bfloat16>(a, s);
    default: break;
  }
  set_error("cuda_fp8_convert: unsupported dtype %d", static_cast<int>(plain));
  return FSG_ERR_DTYPE;
}

fsg_status cuda_column_sum(const ColumnSumArgs& a, Stream s) {
  switch (a.src.dtype) {
    case DType::F32: return column_sum<float>(a, s);
    case DType::F16: return column_sum<__half>(a, s);
    case DType::BF16: return column_sum<__nv_bfloat16>(a, s);
  }
  set_error("cuda_column_sum: unknown dtype %d", static_cast<int>(a.src.dtype));
  return FSG_ERR_DTYPE;
}

}  // namespace fsg
