// small_m.cu: the small-M (decode) dual GEMM. With a few rows of x the cost is reading the two
// weight matrices once, so these kernels stream the weights with every SM busy from the start
// and keep the few rows of x and the accumulators in registers.
//
//   N-contiguous weights ([K, N] row-major, cs = 1, packed [K, 2N] halves too), bf16/f16:
//     a warp owns 64 columns of gate and up (32 for 64 rows of x) and a slice of K; each thread
//     loads 4 rows x 8 columns (16-byte loads; 8-byte for 64 rows), pairs rows with byte permutes
//     into mma.sync A fragments (swap-AB: weights on the 16-row side, up to 8 rows of x on the
//     8-column side of each m16n8k16).
//   K-contiguous weights (the nn.Linear [N, K] view, rs = 1), bf16/f16: a warp owns 16 columns;
//     each thread loads 8 consecutive k of a column (16 bytes), which are A fragments as they are
//     (k permuted identically in x).
//   Anything else (f32, other strides): small_m_generic, lanes along N, warps along K, fp32 FMA.
// K is never split over CTAs: the warps of one CTA split it and sum their partial results in a
// fixed binary tree in shared memory. Deterministic, no scratch, no allocation, no host
// synchronization: the call can be captured in a CUDA graph. Row blocks of 8/16/32/64 rows; a
// larger M loops over row blocks, each re-reading the weights (correct for any M: the forced path;
// fast only while one block holds every row, see kAutoMax* below).
// Measured on H100, Llama-3-8B layer (bench/NOTES.md): 93% of copy bandwidth at M = 1 to 8, 90% at
// 16, 84% at 32 (N-contiguous); K-contiguous 92/86/83%.
//
// Local compile check:
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_80,code=sm_80 \
//     -gencode=arch=compute_90a,code=sm_90a -I cuda/include -I cuda/src -Xptxas -v -c small_m.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "activation_math.h"
#include "kernel_util.cuh"
#include "kernels.h"

namespace fsg {
namespace {

// ================================ parameters and epilogue ================================

struct SmallMParams {
  const void* x;
  int64_t xrs, xcs;
  const void* wg;
  const void* wu;
  int64_t wg_rs, wg_cs, wu_rs, wu_cs;
  VecRef bg, bu;
  MatRef z, a_out, b_out;  // kForward
  MatRef dz, da, db;       // kBackward
  int64_t m, n, k;
  fsg_glu_params act;  // SwiGLU or a GLU variant (activation_math.h)
  LeanGlu glu;         // lean_glu(act)
  int epilogue;        // DualGemmArgs::Epilogue
  int x_vec;     // x rows can be read with 16-byte loads (cs = 1, aligned)
};

// Final value of one output element from the two fp32 sums (bias not yet added), for lean GLU
// kind kKind (p.glu.kind; the epilogue loops run one copy per kind): inline, but for the general
// kind, whose math stays out of line (a call per element cost GEGLU +2.3% at 16 rows:
// bench/NOTES.md, "GLU variants", step 22).
template <class T, int kKind>
__device__ __forceinline__ void store_output(const SmallMParams& p, int64_t row, int64_t col, float a, float b) {
  a += p.bg.load_or(col, 0.0f);
  b += p.bu.load_or(col, 0.0f);
  if (p.epilogue == DualGemmArgs::kForward) {
    p.z.store<T>(row, col, glu_value_lean<kKind>(p.act, p.glu.silu, a, b));
    if (p.a_out.p) p.a_out.store<T>(row, col, a);
    if (p.b_out.p) p.b_out.store<T>(row, col, b);
  } else {
    const float d = p.dz.load<T>(row, col);
    float da, db;
    glu_grads_lean<kKind>(p.act, p.glu.silu, a, b, d, &da, &db);
    p.da.store<T>(row, col, da);
    p.db.store<T>(row, col, db);
  }
}

// ================================ tensor-core helpers ================================

template <class T> struct MmaOp;
template <> struct MmaOp<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};
template <> struct MmaOp<__half> {
  static __device__ __forceinline__ void run(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};

// Weights are read exactly once: stream them past L1. hint: ask L2 for 256-byte fetches (measured:
// +8 points of copy bandwidth for K-contiguous rows and the 8-byte N-contiguous loads, none or
// slightly negative for 16-byte N-contiguous loads).
__device__ __forceinline__ uint4 ldg_stream16(const void* p, bool hint) {
  uint4 v;
  if (hint)
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
  else
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
  return v;
}
__device__ __forceinline__ void ldg_stream(const void* p, bool hint, uint32_t (&w)[4]) {
  const uint4 v = ldg_stream16(p, hint);
  w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
}
__device__ __forceinline__ void ldg_stream(const void* p, bool hint, uint32_t (&w)[2]) {
  if (hint)
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];\n" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
  else
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
}

// Raw 16-bit element e of a strided matrix, 0 when outside [0, rows) x [0, cols).
__device__ __forceinline__ uint32_t raw16(const void* base, int64_t r, int64_t c, int64_t rs, int64_t cs,
                                          int64_t rows, int64_t cols) {
  if (r >= rows || c >= cols) return 0u;
  return static_cast<const uint16_t*>(base)[r * rs + c * cs];
}

// 2*n consecutive 16-bit elements of x's row `row` from column k, packed in pairs (guarded).
template <int NW>
__device__ __forceinline__ void load_x_words(const SmallMParams& p, int64_t row, int64_t k, bool full,
                                             uint32_t (&w)[NW]) {
  if (row >= p.m) {
#pragma unroll
    for (int i = 0; i < NW; ++i) w[i] = 0u;
    return;
  }
  const uint16_t* xr = static_cast<const uint16_t*>(p.x) + row * p.xrs;
  if (full && p.x_vec) {
    if constexpr (NW == 4) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr + k));
      w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    } else {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(xr + k));
      w[0] = v.x; w[1] = v.y;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < NW; ++i) {
    const int64_t k0 = k + 2 * i, k1 = k0 + 1;
    const uint32_t lo = k0 < p.k ? xr[k0 * p.xcs] : 0u;
    const uint32_t hi = k1 < p.k ? xr[k1 * p.xcs] : 0u;
    w[i] = lo | (hi << 16);
  }
}

// The pipelined main loop shared by both tensor-core kernels: steps [s0, s1) of the warp's K
// slice, fast (unguarded, two steps of loads in flight) while the step is inside K and the
// warp's columns inside N, then guarded single steps.
template <class L>
__device__ __forceinline__ void tc_mainloop(const L& l, int64_t s0, int64_t s1, bool cols_full,
                                            typename L::Acc& acc) {
  const int64_t full_steps = l.p.k / L::kStep;
  const int64_t e = cols_full ? (s1 < full_steps ? s1 : full_steps) : s0;
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
    l.load_guarded(s, b);
    l.compute(b, acc);
  }
}

// ---------------------------------------------------------------------------------------
// N-contiguous layout. Warp: 8*CPT columns x one K slice; step = 16 rows of K. Thread (g, t)
// (g = lane/4, t = lane%4) loads rows k0+4t..k0+4t+3, columns n0+CPT*g..+CPT-1 of both matrices
// (CPT = 8: 16-byte loads; CPT = 4: 8-byte loads, half the accumulators, for 64 rows of x).
// m16n8k16 A (16 x 16) = weights^T: A row g <-> column CPT*g+2j, row g+8 <-> CPT*g+2j+1 (j <
// CPT/2, one mma each), k slots {2t,2t+1} <-> rows 4t,4t+1 and {2t+8,2t+9} <-> rows 4t+2,4t+3.
// B (16 x 8) = x^T with the same k permutation: thread reads x[row g][k0+4t..k0+4t+3].
// D row g/g+8 = those columns, D col 2t,2t+1 = rows of x.
// ---------------------------------------------------------------------------------------
template <class T, int MB, int CPT>
struct NContigT {
  static constexpr int kStep = 16;
  static constexpr int kWords = CPT / 2;  // 32-bit words per row and thread
  static constexpr int kCols = 8 * CPT;
  static constexpr int kAcc = 2 * kWords * MB * 4;
  static constexpr bool kHint = CPT == 4;
  struct Buf {
    uint32_t g[4][kWords], u[4][kWords];
    uint32_t x[MB][2];
  };
  using Acc = float[2][kWords][MB][4];
  const SmallMParams& p;
  int64_t col;     // this thread's first column
  int64_t m_base;  // first row of this row block
  int g, t;

  static __device__ __forceinline__ int64_t first_col(int64_t n_warp, int g) { return n_warp + CPT * g; }

  // Guarded loads (K tail, N tail, the rare path) stay out of line so that their registers
  // do not weigh on the main loop's allocation.
  __device__ __noinline__ void load_guarded(int64_t s, Buf& b) const { load(s, false, b); }

  __device__ __forceinline__ void load(int64_t s, bool fast, Buf& b) const {
    const int64_t k = s * kStep + 4 * t;
    if (fast) {
      const T* pg = static_cast<const T*>(p.wg) + k * p.wg_rs + col;
      const T* pu = static_cast<const T*>(p.wu) + k * p.wu_rs + col;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        ldg_stream(pg + i * p.wg_rs, kHint, b.g[i]);
        ldg_stream(pu + i * p.wu_rs, kHint, b.u[i]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int c = 0; c < kWords; ++c) {
          const int64_t n0 = col + 2 * c;
          b.g[i][c] = raw16(p.wg, k + i, n0, p.wg_rs, p.wg_cs, p.k, p.n) |
                      (raw16(p.wg, k + i, n0 + 1, p.wg_rs, p.wg_cs, p.k, p.n) << 16);
          b.u[i][c] = raw16(p.wu, k + i, n0, p.wu_rs, p.wu_cs, p.k, p.n) |
                      (raw16(p.wu, k + i, n0 + 1, p.wu_rs, p.wu_cs, p.k, p.n) << 16);
        }
    }
#pragma unroll
    for (int mb = 0; mb < MB; ++mb) load_x_words<2>(p, m_base + mb * 8 + g, k, fast, b.x[mb]);
  }

  __device__ __forceinline__ void compute(const Buf& b, Acc& acc) const {
#pragma unroll
    for (int mat = 0; mat < 2; ++mat) {
      const uint32_t(*w)[kWords] = mat == 0 ? b.g : b.u;
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        const uint32_t r0 = w[0][j], r1 = w[1][j], r2 = w[2][j], r3 = w[3][j];
        const uint32_t a0 = __byte_perm(r0, r1, 0x5410);  // column 2j,   rows 0,1
        const uint32_t a1 = __byte_perm(r0, r1, 0x7632);  // column 2j+1, rows 0,1
        const uint32_t a2 = __byte_perm(r2, r3, 0x5410);  // column 2j,   rows 2,3
        const uint32_t a3 = __byte_perm(r2, r3, 0x7632);  // column 2j+1, rows 2,3
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) MmaOp<T>::run(acc[mat][j][mb], a0, a1, a2, a3, b.x[mb][0], b.x[mb][1]);
      }
    }
  }

  // Where flattened accumulator i of lane `lane` lands: column within the warp's 64, row within
  // the row block, and which matrix.
  static __device__ __forceinline__ int index_of(int mat, int col, int row) {
    // inverse of: i = ((mat*kWords + j)*MB + mb)*4 + e, lane = 4g + t,
    //   col = CPT*g + 2j + (e >> 1), row = 8mb + 2t + (e & 1)
    const int g = col / CPT, j = (col % CPT) >> 1, eh = col & 1;
    const int mb = row >> 3, t = (row & 7) >> 1, el = row & 1;
    const int i = ((mat * kWords + j) * MB + mb) * 4 + eh * 2 + el;
    return i * 32 + 4 * g + t;
  }
};
template <class T, int MB> using NContig = NContigT<T, MB, 8>;
template <class T, int MB> using NContig4 = NContigT<T, MB, 4>;

// ---------------------------------------------------------------------------------------
// K-contiguous layout (nn.Linear view). Warp: 16 columns x one K slice; step = 64 k. Thread
// (g, t) loads columns n0+g and n0+g+8, k = k0+32c+8t..+7 (c = 0, 1: whole 128-byte lines).
// The 8 k of one 16-byte load are pairs {0,1},{2,3} for one mma and {4,5},{6,7} for the next;
// x is read with the same permutation (16 bytes of row g). D row g/g+8 = columns, D col = rows.
// ---------------------------------------------------------------------------------------
template <class T, int MB>
struct KContig {
  static constexpr int kStep = 64;
  static constexpr int kCols = 16;
  static constexpr int kAcc = 2 * MB * 4;
  static constexpr bool kHint = true;
  struct Buf {
    uint4 g[2][2], u[2][2];  // [chunk][column g / g+8]
    uint32_t x[2][MB][4];
  };
  using Acc = float[2][MB][4];
  const SmallMParams& p;
  int64_t col;  // column of A row g (g+8 is col + 8)
  int64_t m_base;
  int g, t;

  static __device__ __forceinline__ int64_t first_col(int64_t n_warp, int g) { return n_warp + g; }

  __device__ __noinline__ void load_guarded(int64_t s, Buf& b) const { load(s, false, b); }

  __device__ __forceinline__ void load(int64_t s, bool fast, Buf& b) const {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int64_t k = s * kStep + 32 * c + 8 * t;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t n = col + 8 * h;
        if (fast) {
          b.g[c][h] = ldg_stream16(static_cast<const T*>(p.wg) + n * p.wg_cs + k, kHint);
          b.u[c][h] = ldg_stream16(static_cast<const T*>(p.wu) + n * p.wu_cs + k, kHint);
        } else {
          uint32_t wg[4], wu[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            wg[q] = raw16(p.wg, k + 2 * q, n, p.wg_rs, p.wg_cs, p.k, p.n) |
                    (raw16(p.wg, k + 2 * q + 1, n, p.wg_rs, p.wg_cs, p.k, p.n) << 16);
            wu[q] = raw16(p.wu, k + 2 * q, n, p.wu_rs, p.wu_cs, p.k, p.n) |
                    (raw16(p.wu, k + 2 * q + 1, n, p.wu_rs, p.wu_cs, p.k, p.n) << 16);
          }
          b.g[c][h] = make_uint4(wg[0], wg[1], wg[2], wg[3]);
          b.u[c][h] = make_uint4(wu[0], wu[1], wu[2], wu[3]);
        }
      }
#pragma unroll
      for (int mb = 0; mb < MB; ++mb) load_x_words<4>(p, m_base + mb * 8 + g, k, fast, b.x[c][mb]);
    }
  }

  __device__ __forceinline__ void compute(const Buf& b, Acc& acc) const {
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
      for (int mat = 0; mat < 2; ++mat) {
        const uint4& P = mat == 0 ? b.g[c][0] : b.u[c][0];
        const uint4& Q = mat == 0 ? b.g[c][1] : b.u[c][1];
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          MmaOp<T>::run(acc[mat][mb], P.x, Q.x, P.y, Q.y, b.x[c][mb][0], b.x[c][mb][1]);
          MmaOp<T>::run(acc[mat][mb], P.z, Q.z, P.w, Q.w, b.x[c][mb][2], b.x[c][mb][3]);
        }
      }
  }

  static __device__ __forceinline__ int index_of(int mat, int col, int row) {
    // inverse of: i = (mat*MB + mb)*4 + e, lane = 4g + t, col = g + 8(e >> 1), row = 8mb + 2t + (e & 1)
    const int g = col & 7, eh = col >> 3;
    const int mb = row >> 3, t = (row & 7) >> 1, el = row & 1;
    const int i = (mat * MB + mb) * 4 + eh * 2 + el;
    return i * 32 + 4 * g + t;
  }
};

// The tensor-core kernel: WN warps along N times KW warps along K per CTA; blockIdx.x picks
// WN * L::kCols columns, blockIdx.y (grid-stride) the row block of 8*MB rows. Partial sums of
// the KW warps meet in a fixed binary tree (warp kw += warp kw + h, h = KW/2, ..., 1).
template <class T, int MB, int KW, int WN, int MINB, template <class, int> class Layout>
__global__ void __launch_bounds__(KW* WN * 32, MINB) small_m_tc(const __grid_constant__ SmallMParams p) {
  using L = Layout<T, MB>;
  constexpr int kAcc = L::kAcc;
  constexpr int kSlots = KW / 2 > 0 ? KW / 2 : 1;
  constexpr int kThreads = KW * WN * 32;
  constexpr int kRows = 8 * MB;
  constexpr int kCtaCols = WN * L::kCols;
  __shared__ float red[kSlots][WN][kAcc * 32];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wn = warp % WN, kw = warp / WN;
  const int g = lane >> 2, t = lane & 3;
  const int64_t n_cta = static_cast<int64_t>(blockIdx.x) * kCtaCols;
  const int64_t n_warp = n_cta + wn * L::kCols;
  const bool cols_full = n_warp + L::kCols <= p.n;
  const int64_t nsteps = (p.k + L::kStep - 1) / L::kStep;
  const int64_t s0 = nsteps * kw / KW, s1 = nsteps * (kw + 1) / KW;
  const int64_t col = L::first_col(n_warp, g);

  for (int64_t mblk = blockIdx.y; mblk * kRows < p.m; mblk += gridDim.y) {
    const int64_t m_base = mblk * kRows;
    const L l{p, col, m_base, g, t};
    typename L::Acc acc;
    float* a = reinterpret_cast<float*>(&acc);
#pragma unroll
    for (int i = 0; i < kAcc; ++i) a[i] = 0.0f;
    tc_mainloop(l, s0, s1, cols_full, acc);

    // Fixed-order tree over the K warps of each column group.
#pragma unroll
    for (int h = KW / 2; h >= 1; h /= 2) {
      if (kw >= h && kw < 2 * h) {
#pragma unroll
        for (int i = 0; i < kAcc; ++i) red[kw - h][wn][i * 32 + lane] = a[i];
      }
      __syncthreads();
      if (kw < h) {
#pragma unroll
        for (int i = 0; i < kAcc; ++i) a[i] += red[kw][wn][i * 32 + lane];
      }
      __syncthreads();
    }
    if (kw == 0) {
#pragma unroll
      for (int i = 0; i < kAcc; ++i) red[0][wn][i * 32 + lane] = a[i];
    }
    __syncthreads();
    // Epilogue over the CTA's kRows x kCtaCols outputs, consecutive threads on consecutive columns.
    with_lean_kind(p.glu.kind, [&](auto kind) {
      for (int idx = threadIdx.x; idx < kRows * kCtaCols; idx += kThreads) {
        const int r = idx / kCtaCols, c = idx % kCtaCols;
        const int64_t row = m_base + r, n = n_cta + c;
        if (row >= p.m || n >= p.n) continue;
        const int w = c / L::kCols, cw = c % L::kCols;
        const float av = red[0][w][L::index_of(0, cw, r)];
        const float bv = red[0][w][L::index_of(1, cw, r)];
        store_output<T, decltype(kind)::value>(p, row, n, av, bv);
      }
    });
    __syncthreads();
  }
}

// ================================ generic CUDA-core kernel ================================
// Any dtype and strides. CTA: 8 warps along K, 32 lanes along N (one column each); chunks of 32
// k: each lane loads x[r][k0 + lane], the inner loop broadcasts them with shuffles. Rows in
// blocks of MR (grid-stride over blockIdx.y). Partial sums added in warp order 0..7.
template <class T, int MR>
__global__ void __launch_bounds__(256) small_m_generic(const __grid_constant__ SmallMParams p) {
  constexpr int KW = 8;
  __shared__ float red[KW][MR][2][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const bool n_ok = n < p.n;
  const int64_t nchunks = (p.k + 31) / 32;
  const int64_t c0 = nchunks * warp / KW, c1 = nchunks * (warp + 1) / KW;
  const T* wg = static_cast<const T*>(p.wg) + (n_ok ? n * p.wg_cs : 0);
  const T* wu = static_cast<const T*>(p.wu) + (n_ok ? n * p.wu_cs : 0);
  const T* x = static_cast<const T*>(p.x);

  for (int64_t mblk = blockIdx.y; mblk * MR < p.m; mblk += gridDim.y) {
    const int64_t m_base = mblk * MR;
    float acc[MR][2];
#pragma unroll
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = 0.0f;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * 32;
      float xr[MR];
#pragma unroll
      for (int r = 0; r < MR; ++r) {
        const int64_t row = m_base + r, k = k0 + lane;
        xr[r] = (row < p.m && k < p.k) ? to_f32(x[row * p.xrs + k * p.xcs]) : 0.0f;
      }
      if (k0 + 32 <= p.k) {  // uniform over the warp: the shuffles below need every lane
#pragma unroll 8
        for (int kk = 0; kk < 32; ++kk) {
          const int64_t k = k0 + kk;
          const float gv = n_ok ? to_f32(wg[k * p.wg_rs]) : 0.0f;
          const float uv = n_ok ? to_f32(wu[k * p.wu_rs]) : 0.0f;
#pragma unroll
          for (int r = 0; r < MR; ++r) {
            const float xv = __shfl_sync(0xffffffffu, xr[r], kk);
            acc[r][0] = fmaf(xv, gv, acc[r][0]);
            acc[r][1] = fmaf(xv, uv, acc[r][1]);
          }
        }
      } else {
        for (int kk = 0; kk < 32; ++kk) {
          const int64_t k = k0 + kk;
          const bool ok = n_ok && k < p.k;
          const float gv = ok ? to_f32(wg[k * p.wg_rs]) : 0.0f;
          const float uv = ok ? to_f32(wu[k * p.wu_rs]) : 0.0f;
#pragma unroll
          for (int r = 0; r < MR; ++r) {
            const float xv = __shfl_sync(0xffffffffu, xr[r], kk);
            acc[r][0] = fmaf(xv, gv, acc[r][0]);
            acc[r][1] = fmaf(xv, uv, acc[r][1]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < MR; ++r) {
      red[warp][r][0][lane] = acc[r][0];
      red[warp][r][1][lane] = acc[r][1];
    }
    __syncthreads();
    with_lean_kind(p.glu.kind, [&](auto kind) {
      for (int idx = threadIdx.x; idx < MR * 32; idx += 256) {
        const int r = idx / 32, l = idx % 32;
        const int64_t row = m_base + r, col = static_cast<int64_t>(blockIdx.x) * 32 + l;
        if (row < p.m && col < p.n) {
          float av = 0.0f, bv = 0.0f;
#pragma unroll
          for (int w = 0; w < KW; ++w) {
            av += red[w][r][0][l];
            bv += red[w][r][1][l];
          }
          store_output<T, decltype(kind)::value>(p, row, col, av, bv);
        }
      }
    });
    __syncthreads();
  }
}

// ================================ launchers ================================

constexpr int kMaxGridY = 65535;

unsigned grid_rows(int64_t m, int rows_per_block) {
  const int64_t b = (m + rows_per_block - 1) / rows_per_block;
  return static_cast<unsigned>(b < kMaxGridY ? b : kMaxGridY);
}

template <class T, int MB, int KW, int WN, int MINB, template <class, int> class Layout>
fsg_status launch_tc(const SmallMParams& p, Stream s, const char* name) {
  constexpr int cols = WN * Layout<T, MB>::kCols;
  const dim3 grid(static_cast<unsigned>((p.n + cols - 1) / cols), grid_rows(p.m, 8 * MB));
  small_m_tc<T, MB, KW, WN, MINB, Layout><<<grid, KW * WN * 32, 0, s>>>(p);
  return launch_status(name);
}

// Configurations: every one gives N = 14336 at most 264 CTAs (all resident at once on 132 SMs).
template <class T>
fsg_status launch_ncontig(const SmallMParams& p, Stream s) {
  if (p.m <= 8) return launch_tc<T, 1, 4, 1, 3, NContig>(p, s, "small_m_ncontig<8 rows>");
  if (p.m <= 16) return launch_tc<T, 2, 4, 1, 3, NContig>(p, s, "small_m_ncontig<16 rows>");
  if (p.m <= 32) return launch_tc<T, 4, 4, 1, 2, NContig>(p, s, "small_m_ncontig<32 rows>");
  return launch_tc<T, 8, 2, 1, 4, NContig4>(p, s, "small_m_ncontig<64 rows>");
}

template <class T>
fsg_status launch_kcontig(const SmallMParams& p, Stream s) {
  if (p.m <= 8) return launch_tc<T, 1, 2, 4, 2, KContig>(p, s, "small_m_kcontig<8 rows>");
  if (p.m <= 16) return launch_tc<T, 2, 1, 4, 3, KContig>(p, s, "small_m_kcontig<16 rows>");
  return launch_tc<T, 4, 1, 4, 2, KContig>(p, s, "small_m_kcontig<32 rows>");
}

template <class T, int MR>
fsg_status launch_generic_mr(const SmallMParams& p, Stream s) {
  const dim3 grid(static_cast<unsigned>((p.n + 31) / 32), grid_rows(p.m, MR));
  small_m_generic<T, MR><<<grid, 256, 0, s>>>(p);
  return launch_status("small_m_generic");
}

template <class T>
fsg_status launch_generic(const SmallMParams& p, Stream s) {
  if (p.m <= 1) return launch_generic_mr<T, 1>(p, s);
  if (p.m <= 2) return launch_generic_mr<T, 2>(p, s);
  if (p.m <= 4) return launch_generic_mr<T, 4>(p, s);
  return launch_generic_mr<T, 8>(p, s);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// Largest M the automatic path gives to these kernels (the measured crossover with the
// tensor-core GEMM kernels, bench/NOTES.md). fp32 runs the generic kernel.
// Measured on H100 (bench/NOTES.md, small-M step 2): N-contiguous bf16 wins over sm_80 up to 64
// rows (0.129 vs 0.141 ms) but the sm_90a kernel takes 64 rows in 0.100 ms, so 48; K-contiguous
// up to 32 (0.094 vs 0.158 ms; at 40 rows 0.162 vs 0.158); f32 (generic kernel) up to 32.
constexpr int64_t kAutoMaxNContig = 48;
constexpr int64_t kAutoMaxKContig = 32;
constexpr int64_t kAutoMaxF32 = 32;

}  // namespace

fsg_status cuda_dual_gemm_small_m(const DualGemmArgs& a, Stream s, bool forced, bool* handled) {
  *handled = false;
  SmallMParams p{};
  p.x = a.x.data;
  p.xrs = a.x.rs;
  p.xcs = a.x.cs;
  p.wg = a.wg.data;
  p.wu = a.wu.data;
  p.wg_rs = a.wg.rs;
  p.wg_cs = a.wg.cs;
  p.wu_rs = a.wu.rs;
  p.wu_cs = a.wu.cs;
  p.bg = vec_ref(a.bg);
  p.bu = vec_ref(a.bu);
  p.z = mat_ref(a.z);
  p.a_out = mat_ref(a.a_out);
  p.b_out = mat_ref(a.b_out);
  p.dz = mat_ref(a.dz);
  p.da = mat_ref(a.da);
  p.db = mat_ref(a.db);
  p.m = a.x.rows;
  p.k = a.x.cols;
  p.n = a.wg.cols;
  p.epilogue = a.epilogue;
  p.act = a.act;
  p.glu = lean_glu(a.act);
  const bool half = a.x.dtype != DType::F32;
  // 16-byte loads of x rows: unit column stride, aligned base and row stride (rows > 0 only).
  p.x_vec = a.x.cs == 1 && aligned16(a.x.data) && (p.m == 1 || a.x.rs % 8 == 0);
  // N-contiguous: both [K, N] views with unit column stride, 16-byte aligned rows.
  const bool ncontig = half && a.wg.cs == 1 && a.wu.cs == 1 && aligned16(a.wg.data) && aligned16(a.wu.data) &&
                       (p.k == 1 || (a.wg.rs % 8 == 0 && a.wu.rs % 8 == 0));
  // K-contiguous (nn.Linear [N, K] transposed): unit row stride, 16-byte aligned columns.
  const bool kcontig = half && !ncontig && a.wg.rs == 1 && a.wu.rs == 1 && aligned16(a.wg.data) &&
                       aligned16(a.wu.data) && (p.n == 1 || (a.wg.cs % 8 == 0 && a.wu.cs % 8 == 0));
  if (!forced) {
    const bool fast = half ? (ncontig && p.m <= kAutoMaxNContig) || (kcontig && p.m <= kAutoMaxKContig)
                           : a.wg.cs == 1 && a.wu.cs == 1 && p.m <= kAutoMaxF32;
    if (!fast) return FSG_OK;
  }
  *handled = true;
  switch (a.x.dtype) {
    case DType::BF16:
      if (ncontig) return launch_ncontig<__nv_bfloat16>(p, s);
      if (kcontig) return launch_kcontig<__nv_bfloat16>(p, s);
      return launch_generic<__nv_bfloat16>(p, s);
    case DType::F16:
      if (ncontig) return launch_ncontig<__half>(p, s);
      if (kcontig) return launch_kcontig<__half>(p, s);
      return launch_generic<__half>(p, s);
    default:
      return launch_generic<float>(p, s);
  }
}

}  // namespace fsg
