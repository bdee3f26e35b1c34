// kernel_check.cu: standalone check of the CUDA kernels (cuda/src/*.cu) against a float64 CPU
// reference, without the rest of the library (set_error is stubbed below).
//   build + run: test/native/run.sh [--quick | --time]
//   --quick: small shapes, no timing (for memcheck); --time: timings only
// Every case draws fresh random inputs (no zeros), poisons outputs with NaN, and prints
// max|out - ref| / max|ref| over the checked elements. Layouts: x compact / padded rows /
// transposed; weights row-major [K,N], nn.Linear [N,K] (transposed view), packed halves of
// [K,2N], interleaved columns of [K,2N]. Ends with timings of the Llama MLP shape.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "kernels.h"

namespace fsg {
static char g_error[1024];
void set_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
}
}  // namespace fsg

using namespace fsg;

#define CK(x)                                                                               \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));   \
      exit(2);                                                                              \
    }                                                                                       \
  } while (0)

static void ok(fsg_status s, const char* what) {
  if (s != FSG_OK) {
    fprintf(stderr, "%s returned %d: %s\n", what, static_cast<int>(s), g_error);
    exit(2);
  }
}

// ================================ host buffers ================================
static std::mt19937_64 rng(12345);
static double uniform_nonzero(double scale) {
  std::uniform_real_distribution<double> u(0.05, 1.0);  // |v| >= 0.05 * scale: never zero
  return (rng() & 1 ? 1 : -1) * u(rng) * scale;
}

static const char* dname(DType d) { return d == DType::F32 ? "f32" : d == DType::F16 ? "f16" : "bf16"; }

// Round a double to dtype d, returning the exact value it stores and its bits.
static double round_to(DType d, double v, uint32_t* bits) {
  const float f = static_cast<float>(v);
  if (d == DType::F32) { memcpy(bits, &f, 4); return f; }
  if (d == DType::F16) {
    __half h = __float2half_rn(f);
    uint16_t b; memcpy(&b, &h, 2); *bits = b;
    return __half2float(h);
  }
  __nv_bfloat16 h = __float2bfloat16_rn(f);
  uint16_t b; memcpy(&b, &h, 2); *bits = b;
  return __bfloat162float(h);
}
static double from_bits(DType d, const unsigned char* p) {
  if (d == DType::F32) { float f; memcpy(&f, p, 4); return f; }
  if (d == DType::F16) { __half h; memcpy(&h, p, 2); return __half2float(h); }
  __nv_bfloat16 h; memcpy(&h, p, 2); return __bfloat162float(h);
}

// Device storage plus the exact host values of what it holds.
struct Buf {
  DType dt;
  size_t n = 0;
  void* d = nullptr;
  std::vector<double> h;
  Buf(DType t, size_t count, double scale) : dt(t), n(count), h(count) {  // random contents
    const int es = dtype_bytes(t);
    std::vector<unsigned char> raw(n * es);
    for (size_t i = 0; i < n; ++i) {
      uint32_t b;
      h[i] = round_to(t, uniform_nonzero(scale), &b);
      memcpy(&raw[i * es], &b, es);
    }
    CK(cudaMalloc(&d, n * es));
    CK(cudaMemcpy(d, raw.data(), n * es, cudaMemcpyHostToDevice));
  }
  Buf(DType t, size_t count) : dt(t), n(count), h(count) {  // poisoned output (NaN everywhere)
    CK(cudaMalloc(&d, n * dtype_bytes(t)));
    CK(cudaMemset(d, 0xFF, n * dtype_bytes(t)));
  }
  ~Buf() { cudaFree(d); }
  Buf(const Buf&) = delete;
  void download() {
    const int es = dtype_bytes(dt);
    std::vector<unsigned char> raw(n * es);
    CK(cudaMemcpy(raw.data(), d, n * es, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) h[i] = from_bits(dt, &raw[i * es]);
  }
  Mat mat(int64_t off, int64_t rows, int64_t cols, int64_t rs, int64_t cs) const {
    Mat m;
    m.data = static_cast<char*>(d) + off * dtype_bytes(dt);
    m.rows = rows, m.cols = cols, m.rs = rs, m.cs = cs, m.dtype = dt;
    return m;
  }
  Vec vec(int64_t off, int64_t count, int64_t stride = 1) const {
    Vec v;
    v.data = static_cast<char*>(d) + off * dtype_bytes(dt);
    v.n = count, v.stride = stride, v.dtype = dt;
    return v;
  }
};

// Host value of element (r, c) of a view of b.
static double at(const Buf& b, const Mat& m, int64_t r, int64_t c) {
  const int64_t off = (static_cast<char*>(m.data) - static_cast<char*>(b.d)) / dtype_bytes(b.dt);
  return b.h[off + r * m.rs + c * m.cs];
}
static double at(const Buf& b, const Vec& v, int64_t i) {
  if (!v.data) return 0;
  const int64_t off = (static_cast<char*>(v.data) - static_cast<char*>(b.d)) / dtype_bytes(b.dt);
  return b.h[off + i * v.stride];
}

static double silu(double a) { return a / (1 + std::exp(-a)); }
static double dsilu(double a) {
  const double s = 1 / (1 + std::exp(-a));
  return s * (1 + a * (1 - s));
}

// ================================ error bookkeeping ================================
struct Err {
  double num = 0, den = 0;
  bool nan = false;
  void add(double got, double ref) {
    if (!std::isfinite(got)) nan = true;
    num = std::max(num, std::fabs(got - ref)), den = std::max(den, std::fabs(ref));
  }
  double rel() const { return nan ? NAN : num / std::max(den, 1e-30); }
};

static int g_fail = 0, g_cases = 0;
static double g_worst[3] = {0, 0, 0};
static double tolerance(DType d) { return d == DType::F32 ? 2e-5 : d == DType::F16 ? 2e-3 : 8e-3; }

static void report(DType d, const std::string& what, int64_t m, int64_t n, int64_t k, const Err& e) {
  const double r = e.rel();
  const bool pass = r <= tolerance(d);
  ++g_cases;
  if (!pass) ++g_fail;
  if (!(r <= g_worst[static_cast<int>(d)])) g_worst[static_cast<int>(d)] = r;
  printf("%-5s %-34s M=%-5lld N=%-5lld K=%-5lld max_rel_err=%.3e %s\n", dname(d), what.c_str(),
         static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k), r, pass ? "ok" : "FAIL");
}

// Rows to check: all, or a sample of large problems (first, last, and random ones).
static std::vector<int64_t> rows_to_check(int64_t m, double work) {
  std::vector<int64_t> rows;
  if (work <= 4e7) {
    for (int64_t r = 0; r < m; ++r) rows.push_back(r);
    return rows;
  }
  rows = {0, m - 1, std::min<int64_t>(m - 1, 127), std::min<int64_t>(m - 1, 128)};
  for (int i = 0; i < 12; ++i) rows.push_back(static_cast<int64_t>(rng() % m));
  return rows;
}

// ================================ weight layouts ================================
enum WLayout { kRowMajor, kLinearT, kPacked, kInterleaved };
static const char* wname(WLayout l) {
  return l == kRowMajor ? "W[K,N]" : l == kLinearT ? "W=[N,K]^T" : l == kPacked ? "W=halves[K,2N]" : "W=interleaved[K,2N]";
}
// Gate and up [K, N] views inside one buffer of 2*K*N elements.
static void weight_views(const Buf& w, WLayout l, int64_t k, int64_t n, Mat& wg, Mat& wu) {
  switch (l) {
    case kRowMajor: wg = w.mat(0, k, n, n, 1), wu = w.mat(k * n, k, n, n, 1); break;
    case kLinearT: wg = w.mat(0, k, n, 1, k), wu = w.mat(n * k, k, n, 1, k); break;
    case kPacked: wg = w.mat(0, k, n, 2 * n, 1), wu = w.mat(n, k, n, 2 * n, 1); break;
    case kInterleaved: wg = w.mat(0, k, n, 2 * n, 2), wu = w.mat(1, k, n, 2 * n, 2); break;
  }
}

// ================================ dual GEMM ================================
static void check_dual(DType dt, int64_t m, int64_t n, int64_t k, WLayout wl, int64_t x_pad, bool backward,
                       bool bias) {
  const int64_t xrs = k + x_pad;
  Buf x(dt, m * xrs, 1.0), w(dt, 2 * k * n, 1.0 / std::sqrt(static_cast<double>(k))), b(dt, 2 * n, 0.5);
  DualGemmArgs a;
  a.x = x.mat(0, m, k, xrs, 1);
  weight_views(w, wl, k, n, a.wg, a.wu);
  if (bias) a.bg = b.vec(0, n), a.bu = b.vec(n, n);
  Buf o1(dt, m * n), o2(dt, m * n), o3(dt, m * n), dz(dt, m * n, 1.0);
  if (!backward) {
    a.epilogue = DualGemmArgs::kForward;
    a.z = o1.mat(0, m, n, n, 1), a.a_out = o2.mat(0, m, n, n, 1), a.b_out = o3.mat(0, m, n, n, 1);
  } else {
    a.epilogue = DualGemmArgs::kBackward;
    a.dz = dz.mat(0, m, n, n, 1), a.da = o1.mat(0, m, n, n, 1), a.db = o2.mat(0, m, n, n, 1);
  }
  ok(cuda_dual_gemm_sm80(a, nullptr), "cuda_dual_gemm_sm80");
  CK(cudaDeviceSynchronize());
  o1.download(), o2.download(), o3.download();
  Err e1, e2, e3;
  std::vector<double> xr(k);
  for (int64_t r : rows_to_check(m, 2.0 * m * n * k)) {
    for (int64_t kk = 0; kk < k; ++kk) xr[kk] = at(x, a.x, r, kk);
    for (int64_t c = 0; c < n; ++c) {
      double ga = at(b, a.bg, c), ub = at(b, a.bu, c);
      for (int64_t kk = 0; kk < k; ++kk) ga += xr[kk] * at(w, a.wg, kk, c), ub += xr[kk] * at(w, a.wu, kk, c);
      if (!backward) {
        e1.add(o1.h[r * n + c], silu(ga) * ub), e2.add(o2.h[r * n + c], ga), e3.add(o3.h[r * n + c], ub);
      } else {
        const double d = at(dz, a.dz, r, c);
        e1.add(o1.h[r * n + c], d * ub * dsilu(ga)), e2.add(o2.h[r * n + c], d * silu(ga));
      }
    }
  }
  std::string what = std::string(backward ? "dual_bwd " : "dual_fwd ") + wname(wl) + (x_pad ? " x+pad" : "") +
                     (bias ? "" : " nobias");
  if (!backward) {
    report(dt, what + " z", m, n, k, e1);
    report(dt, what + " a_out", m, n, k, e2);
    report(dt, what + " b_out", m, n, k, e3);
  } else {
    report(dt, what + " da", m, n, k, e1);
    report(dt, what + " db", m, n, k, e2);
  }
}

// ================================ GEMM ================================
// variant 0: A compact, B [K,N], bias. 1: A transposed view, B nn.Linear view, accumulate.
// 2: two products, the second with its own K, A1 padded rows, B1 interleaved columns.
static void check_gemm(DType dt, int64_t m, int64_t n, int64_t k, int variant) {
  const int64_t k1 = k + 5;
  Buf a0(dt, m * k, 1.0), b0(dt, 2 * k * n, 1.0 / std::sqrt(static_cast<double>(k)));
  Buf a1(dt, m * (k1 + 3), 1.0), b1(dt, 2 * k1 * n, 1.0 / std::sqrt(static_cast<double>(k1)));
  Buf bias(dt, n, 0.5), c(dt, m * n, 1.0);  // c: random (accumulate) or overwritten
  const std::vector<double> c_before = c.h;
  GemmArgs g;
  Mat unused;
  const char* what = "";
  if (variant == 0) {
    g.a0 = a0.mat(0, m, k, k, 1), g.b0 = b0.mat(0, k, n, n, 1), g.bias = bias.vec(0, n);
    what = "gemm A[M,K] B[K,N] +bias";
  } else if (variant == 1) {
    g.a0 = a0.mat(0, m, k, 1, m), g.b0 = b0.mat(0, k, n, 1, k), g.accumulate = true;
    what = "gemm A=[K,M]^T B=[N,K]^T +=C";
  } else {
    g.a0 = a0.mat(0, m, k, k, 1), g.b0 = b0.mat(0, k, n, n, 1);
    g.a1 = a1.mat(0, m, k1, k1 + 3, 1), weight_views(b1, kInterleaved, k1, n, g.b1, unused);
    g.bias = bias.vec(0, n);
    what = "gemm A0B0 + A1(pad)B1(interl.) +bias";
  }
  g.c = c.mat(0, m, n, n, 1);
  ok(cuda_gemm_sm80(g, nullptr), "cuda_gemm_sm80");
  CK(cudaDeviceSynchronize());
  c.download();
  Err e;
  for (int64_t r : rows_to_check(m, 2.0 * m * n * (k + k1))) {
    for (int64_t col = 0; col < n; ++col) {
      double v = at(bias, g.bias, col) + (g.accumulate ? c_before[r * n + col] : 0);
      for (int64_t kk = 0; kk < k; ++kk) v += at(a0, g.a0, r, kk) * at(b0, g.b0, kk, col);
      if (variant == 2)
        for (int64_t kk = 0; kk < k1; ++kk) v += at(a1, g.a1, r, kk) * at(b1, g.b1, kk, col);
      e.add(c.h[r * n + col], v);
    }
  }
  report(dt, what, m, n, variant == 2 ? k + k1 : k, e);
}

// ================================ activations ================================
static bool same_bits(const Buf& b, std::vector<double>& prev) {
  const bool same = memcmp(b.h.data(), prev.data(), prev.size() * sizeof(double)) == 0;
  return same;
}

static void check_glu(DType dt, int64_t m, int64_t n, DType wdt) {
  // y [M, 2N] packed halves; bias [2N]; token weights [M] (wdt may be f32 for 16-bit y).
  Buf y(dt, m * 2 * n, 2.0), bias(dt, 2 * n, 0.5), w(wdt, m, 1.0), dout(dt, m * n, 1.0);
  Buf out(dt, m * n), dy(dt, m * 2 * n), dw(wdt, m);
  GluForwardArgs f;
  f.gate = y.mat(0, m, n, 2 * n, 1), f.up = y.mat(n, m, n, 2 * n, 1);
  f.bias_gate = bias.vec(0, n), f.bias_up = bias.vec(n, n), f.weights = w.vec(0, m);
  f.out = out.mat(0, m, n, n, 1);
  ok(cuda_glu_forward(f, nullptr), "cuda_glu_forward");
  GluBackwardArgs b;
  b.dout = dout.mat(0, m, n, n, 1), b.gate = f.gate, b.up = f.up, b.bias_gate = f.bias_gate, b.bias_up = f.bias_up;
  b.weights = f.weights, b.dgate = dy.mat(0, m, n, 2 * n, 1), b.dup = dy.mat(n, m, n, 2 * n, 1), b.dweights = dw.vec(0, m);
  ok(cuda_glu_backward(b, nullptr), "cuda_glu_backward");
  CK(cudaDeviceSynchronize());
  out.download(), dy.download(), dw.download();
  std::vector<double> dw_first = dw.h;
  ok(cuda_glu_backward(b, nullptr), "cuda_glu_backward");  // again: must be bitwise identical
  CK(cudaDeviceSynchronize());
  dw.download();
  const bool det = same_bits(dw, dw_first);
  Err eo, eg, eu, ew;
  for (int64_t r = 0; r < m; ++r) {
    double sum = 0;
    const double wr = w.h[r];
    for (int64_t c = 0; c < n; ++c) {
      const double g = at(y, f.gate, r, c) + bias.h[c], u = at(y, f.up, r, c) + bias.h[n + c];
      const double d = dout.h[r * n + c];
      eo.add(out.h[r * n + c], silu(g) * u * wr);
      eg.add(dy.h[r * 2 * n + c], d * wr * u * dsilu(g));
      eu.add(dy.h[r * 2 * n + n + c], d * wr * silu(g));
      sum += d * silu(g) * u;
    }
    ew.add(dw.h[r], sum);
  }
  const std::string wd = std::string(" w:") + dname(wdt);
  report(dt, "glu_fwd out" + wd, m, n, 0, eo);
  report(dt, "glu_bwd dgate" + wd, m, n, 0, eg);
  report(dt, "glu_bwd dup" + wd, m, n, 0, eu);
  report(wdt == DType::F32 ? dt : wdt, "glu_bwd dweights" + wd, m, n, 0, ew);  // tolerance of y's dtype
  if (!det) {
    ++g_fail;
    printf("FAIL glu_bwd dweights not bitwise reproducible\n");
  }
}

static void check_column_sum(DType dt, int64_t m, int64_t n, int64_t pad, DType ddt, bool accumulate) {
  const int64_t rs = n + pad;
  Buf src(dt, m * rs, 1.0), dst(ddt, n, 1.0);
  const std::vector<double> before = dst.h;
  ColumnSumArgs a;
  a.src = src.mat(0, m, n, rs, 1), a.dst = dst.vec(0, n), a.accumulate = accumulate;
  ok(cuda_column_sum(a, nullptr), "cuda_column_sum");
  CK(cudaDeviceSynchronize());
  dst.download();
  Err e;
  for (int64_t c = 0; c < n; ++c) {
    double s = accumulate ? before[c] : 0;
    for (int64_t r = 0; r < m; ++r) s += src.h[r * rs + c];
    e.add(dst.h[c], s);
  }
  report(ddt == DType::F32 ? dt : ddt, std::string("column_sum") + (pad ? " pad" : "") + (accumulate ? " +=" : "") +
                                          " dst:" + dname(ddt), m, n, 0, e);
}

// ================================ timing ================================
static void time_llama(WLayout wl, bool gemm_only) {
  const int64_t m = 8192, k = 4096, n = 14336;
  const DType dt = DType::BF16;
  Buf x(dt, m * k, 1.0), w(dt, 2 * k * n, 1.0 / 64), z(dt, m * n);
  DualGemmArgs a;
  a.x = x.mat(0, m, k, k, 1);
  weight_views(w, wl, k, n, a.wg, a.wu);
  a.z = z.mat(0, m, n, n, 1);
  GemmArgs g;
  g.a0 = a.x, g.b0 = a.wg, g.c = a.z;
  auto launch = [&] {
    if (gemm_only) ok(cuda_gemm_sm80(g, nullptr), "cuda_gemm_sm80");
    else ok(cuda_dual_gemm_sm80(a, nullptr), "cuda_dual_gemm_sm80");
  };
  for (int i = 0; i < 3; ++i) launch();
  CK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 15; ++i) {
    CK(cudaEventRecord(e0));
    launch();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double t = ms[ms.size() / 2] * 1e-3;
  const double flops = (gemm_only ? 2.0 : 4.0) * m * k * n;
  // Spot-check 256 outputs of the timed run in float64.
  z.download();
  Err e;
  for (int i = 0; i < 256; ++i) {
    const int64_t r = rng() % m, c = rng() % n;
    double ga = 0, ub = 0;
    for (int64_t kk = 0; kk < k; ++kk) ga += at(x, a.x, r, kk) * at(w, a.wg, kk, c), ub += at(x, a.x, r, kk) * at(w, a.wu, kk, c);
    e.add(z.h[r * n + c], gemm_only ? ga : silu(ga) * ub);
  }
  printf("TIMING bf16 %s M=8192 K=4096 N=14336 %s: median %.3f ms, %.1f TFLOP/s (spot max_rel_err %.2e)\n",
         gemm_only ? "gemm x*Wg      " : "dual_gemm fwd  ", wname(wl), t * 1e3, flops / t / 1e12, e.rel());
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  const bool time_only = argc > 1 && strcmp(argv[1], "--time") == 0;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s (sm_%d%d)%s\n", prop.name, prop.major, prop.minor, quick ? " [quick]" : "");
  struct Shape { int64_t m, n, k; };
  std::vector<Shape> shapes = {{1, 1, 1}, {7, 13, 61}, {61, 129, 13}, {129, 61, 257}, {130, 70, 40}};
  if (!quick) {
    const std::vector<Shape> more = {{13, 7, 127}, {127, 257, 129}, {257, 127, 7}, {1, 257, 1025},
                                     {1025, 1, 33}, {1000, 1031, 1029}};
    shapes.insert(shapes.end(), more.begin(), more.end());
  }
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    if (time_only) break;
    for (const Shape& s : shapes) {
      for (WLayout wl : {kRowMajor, kLinearT, kPacked, kInterleaved}) check_dual(dt, s.m, s.n, s.k, wl, 0, false, true);
      check_dual(dt, s.m, s.n, s.k, kRowMajor, 3, false, false);  // misaligned x rows: generic loader
      check_dual(dt, s.m, s.n, s.k, kLinearT, 8, false, true);    // padded but aligned x rows
      check_dual(dt, s.m, s.n, s.k, kLinearT, 0, true, true);
      check_dual(dt, s.m, s.n, s.k, kInterleaved, 3, true, false);
      for (int v = 0; v < 3; ++v) check_gemm(dt, s.m, s.n, s.k, v);
      check_glu(dt, s.m, s.n, dt);
      if (dt != DType::F32) check_glu(dt, s.m, s.n, DType::F32);
      check_column_sum(dt, s.m, s.n, 0, DType::F32, false);
      check_column_sum(dt, s.m, s.n, 3, dt, true);
    }
    if (!quick) check_column_sum(dt, 8192, 1433, 0, DType::F32, false);
    if (!quick) check_dual(dt, 4099, 1100, 2050, kLinearT, 0, false, true);  // several M groups of the raster
  }
  printf("cases: %d, failed: %d; worst max_rel_err f32 %.3e, f16 %.3e, bf16 %.3e\n", g_cases, g_fail, g_worst[0],
         g_worst[1], g_worst[2]);
  if (!quick) {
    time_llama(kLinearT, false);
    time_llama(kRowMajor, false);
    time_llama(kPacked, false);
    time_llama(kLinearT, true);
    // Column sum of an [8192, 14336] bf16 matrix (e.g. db of the up projection).
    Buf src(DType::BF16, 8192LL * 14336, 1.0), dst(DType::F32, 14336);
    ColumnSumArgs a;
    a.src = src.mat(0, 8192, 14336, 14336, 1), a.dst = dst.vec(0, 14336);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    ok(cuda_column_sum(a, nullptr), "cuda_column_sum");
    CK(cudaEventRecord(e0));
    for (int i = 0; i < 10; ++i) ok(cuda_column_sum(a, nullptr), "cuda_column_sum");
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    printf("TIMING column_sum bf16 [8192,14336]: %.3f ms, %.0f GB/s\n", t / 10, 8192.0 * 14336 * 2 / (t / 10 * 1e-3) / 1e9);
  }
  return g_fail == 0 ? 0 : 1;
}
