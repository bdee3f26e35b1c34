// gemm.cpp: the CPU backend's GEMMs, fsg::cpu_gemm and fsg::cpu_dual_gemm (see backend.h).
//
// Blocked like BLIS, simplified: the output is cut into MC x NC tiles, one task each, run in
// parallel. A task walks K in KC steps; for each step it converts and packs its A rows into
// MR-row panels and each B operand into NR-column panels (contiguous float, zero-padded, so any
// strides and dtypes reduce to one layout), then runs an MR x NR register-blocked micro-kernel
// that the compiler vectorizes. Sums stay in a per-worker fp32 tile until the epilogue, which
// adds bias / accumulates / applies the SwiGLU math and rounds once to the output dtype.
// A few rows (decode: M <= kStreamRows) with N- or K-contiguous B skip the B panels: AVX2
// kernels convert B straight from its storage into registers (stream_step).
#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "activation_math.h"
#include "backend.h"
#include "cpu/convert.h"
#include "cpu/fp8.h"
#include "cpu/parallel.h"

namespace fsg {
namespace {

using cpu::load;
using cpu::store;

constexpr int kMR = 4;         // micro-tile rows
constexpr int kNR = 16;        // micro-tile columns (a multiple of every SIMD width we target)
constexpr int64_t kMC = 128;   // task tile rows
constexpr int64_t kNC = 128;   // task tile columns (multiple of kNR)
constexpr int64_t kKC = 256;   // K step: an A panel (kMR x kKC floats) stays in L1

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// One K segment of the sum: A [M, K] times one or two B [K, N] (dual GEMM: gate and up).
struct Segment {
  const Mat* a;
  const Mat* b[2];
};

// ---- packing: any strides and dtype -> contiguous float panels ----

// dst: ceil(mc / kMR) panels, panel p = [kc][kMR] holding rows p*kMR.. of the block; rows
// past mc are zero.
template <DType T>
void pack_a(const Mat& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t p = 0; p < mc; p += kMR) {
    float* panel = dst + p * kc;
    const int64_t rows = std::min<int64_t>(kMR, mc - p);
    if (a.cs <= a.rs) {  // walk each row along k
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t base = (i0 + p + r) * a.rs + k0 * a.cs;
        if (a.cs == 1) {
          for (int64_t k = 0; k < kc; ++k) panel[k * kMR + r] = load<T>(a.data, base + k);
        } else {
          for (int64_t k = 0; k < kc; ++k) panel[k * kMR + r] = load<T>(a.data, base + k * a.cs);
        }
      }
    } else {  // column-major-ish: walk each k across rows
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t base = (k0 + k) * a.cs + (i0 + p) * a.rs;
        for (int64_t r = 0; r < rows; ++r) panel[k * kMR + r] = load<T>(a.data, base + r * a.rs);
      }
    }
    for (int64_t r = rows; r < kMR; ++r)
      for (int64_t k = 0; k < kc; ++k) panel[k * kMR + r] = 0.0f;
  }
}

// dst: ceil(nc / kNR) panels, panel q = [kc][kNR] holding columns q*kNR.. of the block;
// columns past nc are zero.
template <DType T>
void pack_b(const Mat& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t q = 0; q < nc; q += kNR) {
    float* panel = dst + q * kc;
    const int64_t cols = std::min<int64_t>(kNR, nc - q);
    if (b.cs <= b.rs) {  // row-major-ish (incl. packed halves and interleaved cs=2)
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t base = (k0 + k) * b.rs + (j0 + q) * b.cs;
        float* out = panel + k * kNR;
        if (b.cs == 1) {
          for (int64_t c = 0; c < cols; ++c) out[c] = load<T>(b.data, base + c);
        } else {
          for (int64_t c = 0; c < cols; ++c) out[c] = load<T>(b.data, base + c * b.cs);
        }
        for (int64_t c = cols; c < kNR; ++c) out[c] = 0.0f;
      }
    } else {  // transposed (nn.Linear [N, K] storage): each column is contiguous along k
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t base = (j0 + q + c) * b.cs + k0 * b.rs;
        if (b.rs == 1) {
          for (int64_t k = 0; k < kc; ++k) panel[k * kNR + c] = load<T>(b.data, base + k);
        } else {
          for (int64_t k = 0; k < kc; ++k) panel[k * kNR + c] = load<T>(b.data, base + k * b.rs);
        }
      }
      for (int64_t c = cols; c < kNR; ++c)
        for (int64_t k = 0; k < kc; ++k) panel[k * kNR + c] = 0.0f;
    }
  }
}

// ---- micro-kernel: c[kMR][kNR] (row stride ldc) += a_panel · b_panel ----
// Written as plain loops with fixed trip counts so the compiler keeps acc in vector registers.
// micro_cols computes NW of the kNR panel columns: a 4x16 fp32 tile needs 16 xmm registers
// (all of them on SSE, so it would spill) but only 8 ymm ones on AVX2.
template <int NW, bool kFma>
__attribute__((always_inline)) inline void micro_cols(int64_t kc, const float* __restrict a,
                                                      const float* __restrict b, float* __restrict c,
                                                      int64_t ldc) {
  float acc[kMR][NW] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* bk = b + k * kNR;
    const float* ak = a + k * kMR;
#pragma GCC unroll 4
    for (int r = 0; r < kMR; ++r) {
      const float av = ak[r];
#pragma GCC unroll 16
      for (int j = 0; j < NW; ++j) {
        if constexpr (kFma) {
          acc[r][j] = __builtin_fmaf(av, bk[j], acc[r][j]);
        } else {
          acc[r][j] += av * bk[j];
        }
      }
    }
  }
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < NW; ++j) c[r * ldc + j] += acc[r][j];
}

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t);

// Baseline x86-64 (SSE2) or any other target: two 4x8 halves.
void micro_kernel_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc) {
  micro_cols<kNR / 2, false>(kc, a, b, c, ldc);
  micro_cols<kNR / 2, false>(kc, a, b + kNR / 2, c + kNR / 2, ldc);
}

// FSG_CPU_GENERIC_ONLY (tests): never take the AVX2 path, to exercise the baseline kernel.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(FSG_CPU_GENERIC_ONLY)
#define FSG_CPU_AVX2 1
#endif

#ifdef FSG_CPU_AVX2
// The same loops compiled for AVX2+FMA, chosen at run time: the library is built without -march.
__attribute__((target("avx2,fma"))) void micro_kernel_avx2(int64_t kc, const float* a, const float* b,
                                                            float* c, int64_t ldc) {
  micro_cols<kNR, true>(kc, a, b, c, ldc);
}
#endif

MicroKernel pick_micro_kernel() {
#ifdef FSG_CPU_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_kernel_avx2;
#endif
  return micro_kernel_generic;
}

const MicroKernel micro_kernel = pick_micro_kernel();

// ---- small M: B streamed from its storage ----
// With a few rows every packed B element would serve only those rows, so packing B (convert,
// write, read back) costs more than the sums, and the 4-row micro-kernel computes idle rows for
// fewer than 4. Here a K step's B rows are converted from storage into registers four at a time
// and multiplied into every row's fp32 sums, which stay in L1 (rows x nc floats); each B value
// is loaded once per tile. That is for N-contiguous B (cs == 1: [K, N] row-major, the halves of
// packed [K, 2N]); K-contiguous B (rs == 1: nn.Linear [N, K] seen transposed) takes dot products
// along k (stream_dot_avx2). Other strides (interleaved columns) take the blocked path.
// Measured on a 2-core Zen 1 (bf16, K = 4096, N = 14336): bench/NOTES.md, "CPU backend: small M".
constexpr int64_t kStreamRows = 16;  // at most this many rows take the streaming path
constexpr int64_t kStreamCols = 16;  // columns per register block (two 8-float vectors)
// Task tile columns when streaming: as many as keep the rows' sums within 32 KB (L1), 512 to
// 2048, so that each B row is read in long runs (the prefetchers stop at page ends: 256 columns
// ran at 6 GB/s, 2048 at 12.8), then evened out over the workers.
int64_t stream_cols(int64_t m, int64_t n, int threads) {
  const int64_t target = std::clamp<int64_t>(8192 / m / kStreamCols * kStreamCols, 512, 2048);
  const int64_t tiles = (n + target - 1) / target;
  const int64_t even = (tiles + threads - 1) / threads * threads;
  return round_up((n + even - 1) / even, kStreamCols);
}

// acc[r][0..ncols) += sum over k < kc of a[r][k] * B[k][0..ncols) for r < rows; B[k][c] is
// element b_off + k * b_rs + c of b, a holds rows of lda floats, ncols is a multiple of 16.
using StreamKernel = void (*)(int64_t kc, const float* a, int64_t lda, int64_t rows, const void* b, int64_t b_off,
                              int64_t b_rs, int64_t ncols, float* acc, int64_t ldc);

#ifdef FSG_CPU_AVX2
template <DType T>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 load8(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (T == DType::BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else return _mm256_cvtph_ps(h);  // exact, like cpu::fp16_to_float
  }
}

// kQ B rows (k .. k + kQ) of one 16-column block into every row's sums.
template <DType T, int kQ>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline void stream_block(int64_t k, int64_t c, const float* a,
                                                                               int64_t lda, int64_t rows,
                                                                               const void* b, int64_t b_off,
                                                                               int64_t b_rs, float* acc, int64_t ldc) {
  __m256 w[kQ][2];
  for (int q = 0; q < kQ; ++q) {
    const int64_t off = b_off + (k + q) * b_rs + c;
    w[q][0] = load8<T>(b, off);
    w[q][1] = load8<T>(b, off + 8);
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* cr = acc + r * ldc + c;
    const float* ar = a + r * lda + k;
    __m256 s0 = _mm256_loadu_ps(cr), s1 = _mm256_loadu_ps(cr + 8);
    for (int q = 0; q < kQ; ++q) {
      const __m256 av = _mm256_broadcast_ss(ar + q);
      s0 = _mm256_fmadd_ps(av, w[q][0], s0);
      s1 = _mm256_fmadd_ps(av, w[q][1], s1);
    }
    _mm256_storeu_ps(cr, s0);
    _mm256_storeu_ps(cr + 8, s1);
  }
}

// K-contiguous B (nn.Linear [N, K] seen transposed: B[k][c] at b_off + c * b_cs + k): dot
// products along k for NR rows x NC columns, 8 k at a time, then the k tail one by one.
__attribute__((target("avx2,fma,f16c"), always_inline)) inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

template <DType T, int NR, int NC>
__attribute__((target("avx2,fma,f16c"))) void stream_dot_block(int64_t kc, const float* a, int64_t lda, const void* b,
                                                               int64_t b_off, int64_t b_cs, float* acc, int64_t ldc) {
  __m256 s[NR][NC];
  for (int i = 0; i < NR; ++i)
    for (int j = 0; j < NC; ++j) s[i][j] = _mm256_setzero_ps();
  const int64_t k8 = kc / 8 * 8;
  for (int64_t k = 0; k < k8; k += 8) {
    __m256 w[NC];
    for (int j = 0; j < NC; ++j) w[j] = load8<T>(b, b_off + j * b_cs + k);
    for (int i = 0; i < NR; ++i) {
      const __m256 x = _mm256_loadu_ps(a + i * lda + k);
      for (int j = 0; j < NC; ++j) s[i][j] = _mm256_fmadd_ps(x, w[j], s[i][j]);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int j = 0; j < NC; ++j) {
      float v = hsum(s[i][j]);
      for (int64_t k = k8; k < kc; ++k) v += a[i * lda + k] * load<T>(b, b_off + j * b_cs + k);
      acc[i * ldc + j] += v;
    }
}

using DotBlock = void (*)(int64_t, const float*, int64_t, const void*, int64_t, int64_t, float*, int64_t);

template <DType T>
__attribute__((target("avx2,fma,f16c"))) void stream_dot_avx2(int64_t kc, const float* a, int64_t lda, int64_t rows,
                                                              const void* b, int64_t b_off, int64_t b_cs,
                                                              int64_t ncols, float* acc, int64_t ldc) {
  static constexpr DotBlock kBlocks[2][4] = {
      {stream_dot_block<T, 1, 1>, stream_dot_block<T, 1, 2>, stream_dot_block<T, 1, 3>, stream_dot_block<T, 1, 4>},
      {stream_dot_block<T, 2, 1>, stream_dot_block<T, 2, 2>, stream_dot_block<T, 2, 3>, stream_dot_block<T, 2, 4>}};
  for (int64_t c0 = 0; c0 < ncols; c0 += 4) {
    const int nc = int(std::min<int64_t>(4, ncols - c0));
    for (int64_t r0 = 0; r0 < rows; r0 += 2) {
      const int nr = int(std::min<int64_t>(2, rows - r0));
      kBlocks[nr - 1][nc - 1](kc, a + r0 * lda, lda, b, b_off + c0 * b_cs, b_cs, acc + r0 * ldc + c0, ldc);
    }
  }
}

template <DType T>
__attribute__((target("avx2,fma,f16c"))) void stream_kernel_avx2(int64_t kc, const float* a, int64_t lda, int64_t rows,
                                                                 const void* b, int64_t b_off, int64_t b_rs,
                                                                 int64_t ncols, float* acc, int64_t ldc) {
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4)
    for (int64_t c = 0; c < ncols; c += kStreamCols) stream_block<T, 4>(k, c, a, lda, rows, b, b_off, b_rs, acc, ldc);
  for (; k < kc; ++k)
    for (int64_t c = 0; c < ncols; c += kStreamCols) stream_block<T, 1>(k, c, a, lda, rows, b, b_off, b_rs, acc, ldc);
}
#endif

// Whether the streaming kernels can run here (asked once; streams() asks on every call).
bool cpu_has_avx2_fma_f16c() {
#ifdef FSG_CPU_AVX2
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

// The streaming kernels for dtype T (N-contiguous B, K-contiguous B), or nulls where the CPU
// lacks AVX2, FMA or F16C.
template <DType T>
StreamKernel pick_stream_kernel(bool k_contiguous) {
#ifdef FSG_CPU_AVX2
  if (cpu_has_avx2_fma_f16c()) return k_contiguous ? stream_dot_avx2<T> : stream_kernel_avx2<T>;
#endif
  (void)k_contiguous;
  return nullptr;
}
template <DType T> const StreamKernel stream_kernel = pick_stream_kernel<T>(false);
template <DType T> const StreamKernel stream_dot = pick_stream_kernel<T>(true);

// True when a call of m rows takes the streaming path for every B operand given.
bool streams(int64_t m, std::initializer_list<const Mat*> bs) {
  if (m > kStreamRows || !cpu_has_avx2_fma_f16c()) return false;
  for (const Mat* b : bs)
    if (b->present() && b->cs != 1 && b->rs != 1) return false;
  return true;
}

// The K per streaming step: the whole reduction when every B is K-contiguous (each column is
// then read in one run: 12.8 ms at M = 1 against 39.8 in 256-row steps), else kKC (N-contiguous
// rows in 256-row steps keep the tile's B rows in L2: 16.2 ms against 18.7 for the whole K).
int64_t stream_kstep(int64_t k, std::initializer_list<const Mat*> bs) {
  for (const Mat* b : bs)
    if (b->present() && b->cs == 1) return kKC;
  return std::max<int64_t>(k, 1);
}

// ---- the blocked driver, shared by both entry points ----

struct Plan {
  int64_t m, n;
  int64_t mc, nc;            // task tile size (mc <= kMC; nc <= kNC, or stream_cols's)
  int64_t tiles_m, tiles_n;
  int64_t ldc;               // row stride of the fp32 accumulator tile
  int nb;                    // B operands per segment (1 or 2)
  bool stream;               // few rows, N- or K-contiguous B: stream_step instead of the B panels
  int64_t kstep;             // K per step: kKC, or stream_kstep's when streaming
  size_t per_worker;         // floats of scratch per worker
};

// A plan for an m x n output over a reduction of k, with B operands bs (nb of them per segment).
Plan make_plan(int64_t m, int64_t n, int64_t k, int nb, std::initializer_list<const Mat*> bs, int threads) {
  Plan p;
  const bool stream = streams(m, bs);
  p.stream = stream;
  p.kstep = stream ? stream_kstep(k, bs) : kKC;
  p.m = m;
  p.n = n;
  p.mc = std::min(m, kMC);
  p.nc = stream ? stream_cols(m, n, threads) : std::min(n, kNC);
  p.tiles_m = (m + p.mc - 1) / p.mc;
  p.tiles_n = (n + p.nc - 1) / p.nc;
  p.ldc = round_up(p.nc, kNR);
  p.nb = nb;
  const int64_t mcp = round_up(p.mc, kMR);
  const int64_t apack = mcp * p.kstep, bpack = stream ? 0 : kKC * p.ldc, acc = mcp * p.ldc;
  p.per_worker = size_t(round_up(apack + bpack + nb * acc, 16));
  return p;
}

// One K step of a streaming tile: A's rows [i0, i0 + mc) as fp32 rows of lda floats in apack,
// then each B operand's columns [j0, j0 + nc): 16-column blocks by stream_kernel, a ragged last
// block column by column.
template <DType T>
void stream_step(const Segment& seg, int nb, int64_t i0, int64_t mc, int64_t j0, int64_t nc, int64_t k0,
                 int64_t kc, float* apack, int64_t lda, float* const* acc, int64_t ldc) {
  const Mat& a = *seg.a;
  for (int64_t r = 0; r < mc; ++r)
    for (int64_t k = 0; k < kc; ++k) apack[r * lda + k] = load<T>(a.data, (i0 + r) * a.rs + (k0 + k) * a.cs);
  const int64_t blocks = nc / kStreamCols * kStreamCols;
  for (int bi = 0; bi < nb; ++bi) {
    const Mat& b = *seg.b[bi];
    if (b.cs != 1) {  // K-contiguous (rs == 1, streams): dot products over every column
      stream_dot<T>(kc, apack, lda, mc, b.data, k0 + j0 * b.cs, b.cs, nc, acc[bi], ldc);
      continue;
    }
    if (blocks > 0) stream_kernel<T>(kc, apack, lda, mc, b.data, k0 * b.rs + j0, b.rs, blocks, acc[bi], ldc);
    for (int64_t c = blocks; c < nc; ++c)
      for (int64_t k = 0; k < kc; ++k) {
        const float w = load<T>(b.data, (k0 + k) * b.rs + j0 + c);
        for (int64_t r = 0; r < mc; ++r) acc[bi][r * ldc + c] += apack[r * lda + k] * w;
      }
  }
}

// Computes the fp32 sums of one tile into acc[0..nb) (each mcp x ldc), then calls epi.
template <DType T, class Epilogue>
void run_tile(const Plan& p, const Segment* segs, int nsegs, int64_t tile, float* scratch,
              const Epilogue& epi) {
  const int64_t i0 = (tile / p.tiles_n) * p.mc, j0 = (tile % p.tiles_n) * p.nc;
  const int64_t mc = std::min(p.mc, p.m - i0), nc = std::min(p.nc, p.n - j0);
  const int64_t mcp = round_up(mc, kMR), ncp = round_up(nc, kNR);
  float* apack = scratch;
  float* bpack = apack + round_up(p.mc, kMR) * p.kstep;
  float* acc[2] = {bpack + (p.stream ? 0 : kKC * p.ldc), nullptr};  // streaming packs no B (make_plan)
  if (p.nb == 2) acc[1] = acc[0] + round_up(p.mc, kMR) * p.ldc;
  for (int b = 0; b < p.nb; ++b) std::fill(acc[b], acc[b] + mcp * p.ldc, 0.0f);

  for (int s = 0; s < nsegs; ++s) {
    const Segment& seg = segs[s];
    const int64_t k_total = seg.a->cols;
    for (int64_t k0 = 0; k0 < k_total; k0 += p.kstep) {
      const int64_t kc = std::min(p.kstep, k_total - k0);
      if (p.stream) {
        stream_step<T>(seg, p.nb, i0, mc, j0, nc, k0, kc, apack, p.kstep, acc, p.ldc);
        continue;
      }
      pack_a<T>(*seg.a, i0, mc, k0, kc, apack);
      for (int b = 0; b < p.nb; ++b) {
        pack_b<T>(*seg.b[b], k0, kc, j0, nc, bpack);
        for (int64_t ir = 0; ir < mcp; ir += kMR)
          for (int64_t jr = 0; jr < ncp; jr += kNR)
            micro_kernel(kc, apack + ir * kc, bpack + jr * kc, acc[b] + ir * p.ldc + jr, p.ldc);
      }
    }
  }
  epi(i0, mc, j0, nc, acc[0], acc[1], p.ldc);
}

// Allocates per-worker scratch and runs every tile in parallel. Never throws.
template <DType T, class Epilogue>
fsg_status run_blocked(const char* who, const Plan& p, const Segment* segs, int nsegs, int threads,
                       const Epilogue& epi) {
  const int64_t tiles = p.tiles_m * p.tiles_n;
  const int workers = int(std::min<int64_t>(threads, tiles));
  std::vector<float> scratch;
  try {
    scratch.resize(p.per_worker * size_t(workers));
  } catch (const std::bad_alloc&) {
    set_error("%s: out of memory allocating %llu bytes of CPU scratch", who,
              (unsigned long long)(p.per_worker * size_t(workers) * sizeof(float)));
    return FSG_ERR_OUT_OF_MEMORY;
  } catch (...) {
    set_error("%s: cannot allocate CPU scratch", who);
    return FSG_ERR_OUT_OF_MEMORY;
  }
  float* base = scratch.data();
  const bool ok = cpu::parallel_for(tiles, workers, [&](int64_t t, int w) {
    run_tile<T>(p, segs, nsegs, t, base + p.per_worker * size_t(w), epi);
  });
  if (!ok) {
    set_error("%s: internal error in a CPU worker", who);
    return FSG_ERR_INTERNAL;
  }
  return FSG_OK;
}

// ---- cpu_gemm ----

template <DType T>
fsg_status gemm_typed(const GemmArgs& g, int threads) {
  Segment segs[2] = {{&g.a0, {&g.b0, nullptr}}, {&g.a1, {&g.b1, nullptr}}};
  const int nsegs = (g.a1.present() && g.b1.present()) ? 2 : 1;
  const Plan p = make_plan(g.c.rows, g.c.cols, g.reduction(), 1, {&g.b0, &g.b1}, threads);
  auto epi = [&](int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* acc, const float*,
                 int64_t ldc) {
    for (int64_t r = 0; r < mc; ++r) {
      const int64_t row = (i0 + r) * g.c.rs;
      for (int64_t c = 0; c < nc; ++c) {
        float v = acc[r * ldc + c];
        if (g.bias.present()) v += load(g.bias, j0 + c);
        const int64_t idx = row + (j0 + c) * g.c.cs;
        if (g.accumulate) v += load<T>(g.c.data, idx);
        store<T>(g.c.data, idx, v);
      }
    }
  };
  return run_blocked<T>("cpu_gemm", p, segs, nsegs, threads, epi);
}

// ---- cpu_dual_gemm ----

template <DType T>
fsg_status dual_gemm_typed(const DualGemmArgs& d, int threads) {
  Segment seg = {&d.x, {&d.wg, &d.wu}};
  const bool fwd = d.epilogue == DualGemmArgs::kForward;
  const Mat& out0 = fwd ? d.z : d.da;
  const Plan p = make_plan(out0.rows, out0.cols, d.x.cols, 2, {&d.wg, &d.wu}, threads);
  // fp8 saves need whole 32-column blocks: keep fp32 pre-activations, quantize rows afterwards.
  const bool fp8 = fwd && (d.a_out.fp8() || d.b_out.fp8());
  std::vector<float> a32, b32;  // only for the outputs that are there (either may be absent)
  if (fp8 && d.a_out.present()) a32.resize(static_cast<size_t>(out0.rows * out0.cols));
  if (fp8 && d.b_out.present()) b32.resize(static_cast<size_t>(out0.rows * out0.cols));
  auto epi = [&](int64_t i0, int64_t mc, int64_t j0, int64_t nc, const float* accg,
                 const float* accu, int64_t ldc) {
    for (int64_t r = 0; r < mc; ++r) {
      const int64_t i = i0 + r;
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t j = j0 + c;
        const float a = accg[r * ldc + c] + cpu::load_or_zero(d.bg, j);
        const float b = accu[r * ldc + c] + cpu::load_or_zero(d.bu, j);
        if (fwd) {
          store<T>(d.z.data, i * d.z.rs + j * d.z.cs, glu_value(d.act, a, b));
          if (fp8) {
            if (!a32.empty()) a32[i * out0.cols + j] = a;
            if (!b32.empty()) b32[i * out0.cols + j] = b;
            continue;
          }
          if (d.a_out.present()) store<T>(d.a_out.data, i * d.a_out.rs + j * d.a_out.cs, a);
          if (d.b_out.present()) store<T>(d.b_out.data, i * d.b_out.rs + j * d.b_out.cs, b);
        } else {
          const float dz = load<T>(d.dz.data, i * d.dz.rs + j * d.dz.cs);
          float da, db;
          glu_grads(d.act, a, b, dz, &da, &db);
          store<T>(d.da.data, i * d.da.rs + j * d.da.cs, da);
          store<T>(d.db.data, i * d.db.rs + j * d.db.cs, db);
        }
      }
    }
  };
  const fsg_status st = run_blocked<T>("cpu_dual_gemm", p, &seg, 1, threads, epi);
  if (st != FSG_OK || !fp8) return st;
  const int64_t n = out0.cols;
  const bool ok = cpu::parallel_for(out0.rows, threads, [&](int64_t r, int) {
    if (!a32.empty()) cpu::quantize_rows(&a32[r * n], n, r, r + 1, n, d.a_out);
    if (!b32.empty()) cpu::quantize_rows(&b32[r * n], n, r, r + 1, n, d.b_out);
  });
  if (!ok) {
    set_error("cpu_dual_gemm: internal error in a CPU worker");
    return FSG_ERR_INTERNAL;
  }
  return FSG_OK;
}

}  // namespace

fsg_status cpu_gemm(const GemmArgs& a, int threads) {
  try {
    switch (a.c.dtype) {
      case DType::F32: return gemm_typed<DType::F32>(a, threads);
      case DType::F16: return gemm_typed<DType::F16>(a, threads);
      case DType::BF16: return gemm_typed<DType::BF16>(a, threads);
      default: break;
    }
    set_error("cpu_gemm: unknown dtype %d", int(a.c.dtype));
    return FSG_ERR_DTYPE;
  } catch (...) {
    set_error("cpu_gemm: unexpected internal exception");
    return FSG_ERR_INTERNAL;
  }
}

fsg_status cpu_dual_gemm(const DualGemmArgs& a, int threads) {
  try {
    switch (a.x.dtype) {
      case DType::F32: return dual_gemm_typed<DType::F32>(a, threads);
      case DType::F16: return dual_gemm_typed<DType::F16>(a, threads);
      case DType::BF16: return dual_gemm_typed<DType::BF16>(a, threads);
      default: break;
    }
    set_error("cpu_dual_gemm: unknown dtype %d", int(a.x.dtype));
    return FSG_ERR_DTYPE;
  } catch (const std::bad_alloc&) {  // the fp32 copies of fp8 saves, the pack buffers
    set_error("cpu_dual_gemm: out of host memory");
    return FSG_ERR_OUT_OF_MEMORY;
  } catch (...) {
    set_error("cpu_dual_gemm: unexpected internal exception");
    return FSG_ERR_INTERNAL;
  }
}

}  // namespace fsg
