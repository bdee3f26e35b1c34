// cpu_check.cpp: standalone check of the CPU backend (cuda/src/cpu/*.cpp) against a float64
// reference, on random non-zero inputs, awkward shapes, strided weight layouts and every dtype.
// Also checks the float <-> bf16/fp16 conversions on edge cases and a sweep of bit patterns.
//
//   test/native/run_cpu.sh            (builds and runs; exit status != 0 on any failure)
//   cpu_check [--bench]               --bench: also time the bf16 forward dual GEMMs
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "activation_math.h"
#include "backend.h"
#include "cpu/convert.h"

namespace fsg {
// api.cpp defines this in the library; here it keeps the message for the failure report.
static char g_last_error[512];
void set_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
}
}  // namespace fsg

using namespace fsg;
using cpu::load;

namespace {

int g_failures = 0, g_cases = 0;
std::mt19937_64 g_rng(12345);
const int kThreads = 2;

const char* dname(DType t) { return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16"; }

// ---- buffers: raw storage of one dtype, poisoned with 0xFF bytes (NaN in every dtype) ----
struct Buf {
  DType t;
  int64_t n;
  std::vector<unsigned char> bytes;
  Buf(DType t_, int64_t n_) : t(t_), n(n_), bytes(size_t(n_ * dtype_bytes(t_)), 0xFF) {}
  void* at(int64_t off) { return bytes.data() + off * dtype_bytes(t); }
};

// Random values in +-[0.25, 1] (never zero), rounded to the buffer's dtype.
float rnd(float scale = 1.0f) {
  std::uniform_real_distribution<float> mag(0.25f, 1.0f);
  return (g_rng() & 1 ? 1.0f : -1.0f) * mag(g_rng) * scale;
}

void fill(Buf& b, float scale = 1.0f) {
  for (int64_t i = 0; i < b.n; ++i) cpu::store(b.t, b.bytes.data(), i, rnd(scale));
}

Mat view(Buf& b, int64_t off, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  Mat m;
  m.data = b.at(off);
  m.rows = rows;
  m.cols = cols;
  m.rs = rs;
  m.cs = cs;
  m.dtype = b.t;
  return m;
}

Vec vview(Buf& b, int64_t n, int64_t stride = 1) {
  Vec v;
  v.data = b.at(0);
  v.n = n;
  v.stride = stride;
  v.dtype = b.t;
  return v;
}

double get(const Mat& m, int64_t r, int64_t c) { return load(m, r, c); }
double getv(const Vec& v, int64_t i) { return v.present() ? double(load(v, i)) : 0.0; }

// ---- checking ----
double tol(DType t) { return t == DType::F32 ? 2e-5 : t == DType::F16 ? 2e-3 : 1.2e-2; }

// max |out - ref| / max |ref| over the view; NaN in the output fails.
struct Err {
  double max_abs = 0, max_ref = 0;
  bool nan = false;
  void add(double out, double ref) {
    if (std::isnan(out)) nan = true;
    max_abs = std::max(max_abs, std::fabs(out - ref));
    max_ref = std::max(max_ref, std::fabs(ref));
  }
  double rel() const { return nan ? INFINITY : max_abs / std::max(max_ref, 1e-30); }
};

Err compare(const Mat& out, const std::vector<double>& ref) {
  Err e;
  for (int64_t r = 0; r < out.rows; ++r)
    for (int64_t c = 0; c < out.cols; ++c) e.add(get(out, r, c), ref[size_t(r * out.cols + c)]);
  return e;
}

// Every element of buf outside the given output views must still hold the poison.
bool untouched_outside(Buf& buf, const std::vector<Mat>& views) {
  std::vector<char> inside(size_t(buf.n), 0);
  for (const Mat& m : views) {
    const int64_t base = (static_cast<unsigned char*>(m.data) - buf.bytes.data()) / dtype_bytes(buf.t);
    for (int64_t r = 0; r < m.rows; ++r)
      for (int64_t c = 0; c < m.cols; ++c) inside[size_t(base + r * m.rs + c * m.cs)] = 1;
  }
  const int eb = dtype_bytes(buf.t);
  for (int64_t i = 0; i < buf.n; ++i) {
    if (inside[size_t(i)]) continue;
    for (int k = 0; k < eb; ++k)
      if (buf.bytes[size_t(i * eb + k)] != 0xFF) return false;
  }
  return true;
}

void report(const std::string& name, fsg_status st, const std::vector<std::pair<const char*, Err>>& errs,
            double tolerance, bool untouched = true) {
  ++g_cases;
  bool ok = st == FSG_OK && untouched;
  std::string detail;
  double worst = 0;
  for (auto& [label, e] : errs) {
    worst = std::max(worst, e.rel());
    if (!(e.rel() <= tolerance)) ok = false;
    char buf[64];
    snprintf(buf, sizeof buf, " %s=%.2e", label, e.rel());
    detail += buf;
  }
  if (!ok) ++g_failures;
  printf("%-4s %-64s max rel%s%s%s\n", ok ? "ok" : "FAIL", name.c_str(), detail.c_str(),
         st == FSG_OK ? "" : " (status != OK)", untouched ? "" : " (wrote outside its view)");
  if (st != FSG_OK) printf("     error: %s\n", g_last_error);
}

// ---- weight layouts: logical [K, N] views of gate and up ----
enum Layout { kRowMajor, kTransposed, kPackedHalves, kInterleaved };
const char* lname(Layout l) {
  static const char* names[] = {"rowmajor", "linearT", "packed", "interleaved"};
  return names[l];
}

struct Weights {
  std::vector<Buf> bufs;
  Mat g, u;
};

Weights make_weights(Layout l, DType t, int64_t k, int64_t n, float scale) {
  Weights w;
  if (l == kRowMajor || l == kTransposed) {
    w.bufs.emplace_back(t, k * n);
    w.bufs.emplace_back(t, k * n);
    fill(w.bufs[0], scale);
    fill(w.bufs[1], scale);
    const bool tr = l == kTransposed;  // nn.Linear stores [N, K]: the [K, N] view has rs=1, cs=K
    w.g = view(w.bufs[0], 0, k, n, tr ? 1 : n, tr ? k : 1);
    w.u = view(w.bufs[1], 0, k, n, tr ? 1 : n, tr ? k : 1);
  } else {
    w.bufs.emplace_back(t, k * 2 * n);
    fill(w.bufs[0], scale);
    const bool il = l == kInterleaved;
    w.g = view(w.bufs[0], 0, k, n, 2 * n, il ? 2 : 1);
    w.u = view(w.bufs[0], il ? 1 : n, k, n, 2 * n, il ? 2 : 1);
  }
  return w;
}

// ref[m, n] = sum_k a(m, k) * b(k, n) in double
std::vector<double> ref_matmul(const Mat& a, const Mat& b) {
  const int64_t m = a.rows, k = a.cols, n = b.cols;
  std::vector<double> bt(size_t(k * n)), out(size_t(m * n), 0.0);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t j = 0; j < n; ++j) bt[size_t(kk * n + j)] = get(b, kk, j);
  std::vector<double> row(static_cast<size_t>(k));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < k; ++kk) row[size_t(kk)] = get(a, i, kk);
    double* o = &out[size_t(i * n)];
    for (int64_t kk = 0; kk < k; ++kk) {
      const double av = row[size_t(kk)];
      const double* brow = &bt[size_t(kk * n)];
      for (int64_t j = 0; j < n; ++j) o[j] += av * brow[j];
    }
  }
  return out;
}

double silu_d(double a) { return a / (1.0 + std::exp(-a)); }
double dsilu_d(double a) {
  const double s = 1.0 / (1.0 + std::exp(-a));
  return s * (1.0 + a * (1.0 - s));
}

// ---- dual GEMM ----
void check_dual(int64_t m, int64_t k, int64_t n, Layout l, DType t, bool backward, bool bias) {
  const float wscale = 1.0f / std::sqrt(float(k));  // keeps pre-activations O(1)
  const int64_t xrs = k + 3;                        // padded row stride
  Buf xb(t, m * xrs);
  fill(xb);
  Mat x = view(xb, 0, m, k, xrs, 1);
  Weights w = make_weights(l, t, k, n, wscale);
  Buf bgb(t, n), bub(t, n);
  fill(bgb, 0.5f);
  fill(bub, 0.5f);
  const int64_t ors = n + 5;  // outputs with padded rows: padding must stay untouched
  Buf o0(t, m * ors), o1(t, m * ors), o2(t, m * ors), dzb(t, m * n);
  fill(dzb);

  DualGemmArgs a;
  a.epilogue = backward ? DualGemmArgs::kBackward : DualGemmArgs::kForward;
  a.x = x;
  a.wg = w.g;
  a.wu = w.u;
  if (bias) {
    a.bg = vview(bgb, n);
    a.bu = vview(bub, n);
  }
  if (backward) {
    a.dz = view(dzb, 0, m, n, n, 1);
    a.da = view(o0, 0, m, n, ors, 1);
    a.db = view(o1, 0, m, n, ors, 1);
  } else {
    a.z = view(o0, 0, m, n, ors, 1);
    a.a_out = view(o1, 0, m, n, ors, 1);
    a.b_out = view(o2, 0, m, n, ors, 1);
  }
  const fsg_status st = cpu_dual_gemm(a, kThreads);

  std::vector<double> ag = ref_matmul(x, w.g), bu = ref_matmul(x, w.u);
  std::vector<double> r0(size_t(m * n)), r1(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const size_t p = size_t(i * n + j);
      ag[p] += getv(a.bg, j);
      bu[p] += getv(a.bu, j);
      if (backward) {
        const double dz = get(a.dz, i, j);
        r0[p] = dz * bu[p] * dsilu_d(ag[p]);
        r1[p] = dz * silu_d(ag[p]);
      } else {
        r0[p] = silu_d(ag[p]) * bu[p];
      }
    }
  std::vector<std::pair<const char*, Err>> errs;
  bool clean = untouched_outside(o0, {a.epilogue ? a.da : a.z}) && untouched_outside(o1, {backward ? a.db : a.a_out});
  if (backward) {
    errs = {{"da", compare(a.da, r0)}, {"db", compare(a.db, r1)}};
  } else {
    errs = {{"z", compare(a.z, r0)}, {"a", compare(a.a_out, ag)}, {"b", compare(a.b_out, bu)}};
    clean = clean && untouched_outside(o2, {a.b_out});
  }
  char name[128];
  snprintf(name, sizeof name, "dual_gemm %s M=%lld K=%lld N=%lld %s %s%s", backward ? "bwd" : "fwd", (long long)m,
           (long long)k, (long long)n, lname(l), dname(t), bias ? " bias" : "");
  report(name, st, errs, tol(t), clean);
}

// ---- GEMM (optional second product with its own K, bias, accumulate) ----
void check_gemm(int64_t m, int64_t k0, int64_t n, int64_t k1, Layout l, DType t, bool bias, bool accumulate) {
  const float s0 = 1.0f / std::sqrt(float(k0 + k1));
  Buf a0b(t, m * (k0 + 2)), a1b(t, m * std::max<int64_t>(k1, 1));
  fill(a0b);
  fill(a1b);
  Mat a0 = view(a0b, 0, m, k0, k0 + 2, 1);
  // second A stored column-major (rs=1, cs=M): a transposed operand, as in dW = x^T · dA
  Mat a1 = view(a1b, 0, m, k1, 1, m);
  Weights w0 = make_weights(l, t, k0, n, s0), w1 = make_weights(l, t, std::max<int64_t>(k1, 1), n, s0);
  Buf biasb(t, 2 * n), cb(t, m * (n + 1));
  fill(biasb, 0.5f);
  Mat c = view(cb, 0, m, n, n + 1, 1);
  std::vector<double> old(size_t(m * n), 0.0);
  if (accumulate) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) cpu::store(c, i, j, rnd());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) old[size_t(i * n + j)] = get(c, i, j);
  }
  GemmArgs g;
  g.a0 = a0;
  g.b0 = w0.g;
  if (k1 > 0) {
    g.a1 = a1;
    g.b1 = w1.u;
  }
  if (bias) g.bias = vview(biasb, n, 2);  // strided bias
  g.c = c;
  g.accumulate = accumulate;
  const fsg_status st = cpu_gemm(g, kThreads);

  std::vector<double> ref = ref_matmul(a0, w0.g);
  if (k1 > 0) {
    std::vector<double> r1 = ref_matmul(a1, w1.u);
    for (size_t p = 0; p < ref.size(); ++p) ref[p] += r1[p];
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) ref[size_t(i * n + j)] += getv(g.bias, j) + old[size_t(i * n + j)];
  char name[128];
  snprintf(name, sizeof name, "gemm M=%lld K0=%lld K1=%lld N=%lld %s %s%s%s", (long long)m, (long long)k0,
           (long long)k1, (long long)n, lname(l), dname(t), bias ? " bias" : "", accumulate ? " acc" : "");
  report(name, st, {{"c", compare(c, ref)}}, tol(t), accumulate || untouched_outside(cb, {c}));
}

// ---- GLU forward / backward on views of a packed y [M, 2N] ----
enum WeightsKind { kNoWeights, kWeightsF32, kWeightsCall };

void check_glu(int64_t m, int64_t n, bool interleaved, DType t, bool bias, WeightsKind wk) {
  Buf yb(t, m * 2 * n), doutb(t, m * n), biasb(t, 2 * n), wb(wk == kWeightsF32 ? DType::F32 : t, m);
  fill(yb, 3.0f);
  fill(doutb);
  fill(biasb, 0.5f);
  fill(wb);
  const int64_t cs = interleaved ? 2 : 1;
  Mat gate = view(yb, 0, m, n, 2 * n, cs), up = view(yb, interleaved ? 1 : n, m, n, 2 * n, cs);
  Vec bg, bu, w;
  if (bias) {
    bg = vview(biasb, n);
    bu = vview(biasb, n);
    bu.data = biasb.at(n);
  }
  if (wk != kNoWeights) w = vview(wb, m);

  // forward
  Buf outb(t, m * n);
  GluForwardArgs f;
  f.gate = gate;
  f.up = up;
  f.bias_gate = bg;
  f.bias_up = bu;
  f.weights = w;
  f.out = view(outb, 0, m, n, n, 1);
  fsg_status st = cpu_glu_forward(f, kThreads);
  std::vector<double> rout(size_t(m * n)), rdg(size_t(m * n)), rdu(size_t(m * n)), rdw(size_t(m), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    const double wi = w.present() ? getv(w, i) : 1.0;
    for (int64_t j = 0; j < n; ++j) {
      const size_t p = size_t(i * n + j);
      const double g = get(gate, i, j) + getv(bg, j), u = get(up, i, j) + getv(bu, j);
      const double dout = get(view(doutb, 0, m, n, n, 1), i, j);
      rout[p] = silu_d(g) * u * wi;
      rdg[p] = dout * wi * u * dsilu_d(g);
      rdu[p] = dout * wi * silu_d(g);
      rdw[size_t(i)] += dout * silu_d(g) * u;
    }
  }
  char name[128];
  const char* wn = wk == kNoWeights ? "" : wk == kWeightsF32 ? " w=f32" : " w=call";
  snprintf(name, sizeof name, "glu_forward M=%lld N=%lld %s %s%s%s", (long long)m, (long long)n,
           interleaved ? "interleaved" : "packed", dname(t), bias ? " bias" : "", wn);
  report(name, st, {{"out", compare(f.out, rout)}}, tol(t));

  // backward (dgate/dup written into strided halves of a packed dy [M, 2N])
  Buf dyb(t, m * 2 * n), dwb(wb.t, m);
  GluBackwardArgs b;
  b.dout = view(doutb, 0, m, n, n, 1);
  b.gate = gate;
  b.up = up;
  b.bias_gate = bg;
  b.bias_up = bu;
  b.weights = w;
  b.dgate = view(dyb, 0, m, n, 2 * n, cs);
  b.dup = view(dyb, interleaved ? 1 : n, m, n, 2 * n, cs);
  if (w.present()) b.dweights = vview(dwb, m);
  st = cpu_glu_backward(b, kThreads);
  std::vector<std::pair<const char*, Err>> errs = {{"dgate", compare(b.dgate, rdg)}, {"dup", compare(b.dup, rdu)}};
  if (w.present()) {
    Err e;
    for (int64_t i = 0; i < m; ++i) e.add(getv(b.dweights, i), rdw[size_t(i)]);
    errs.push_back({"dw", e});
  }
  snprintf(name, sizeof name, "glu_backward M=%lld N=%lld %s %s%s%s", (long long)m, (long long)n,
           interleaved ? "interleaved" : "packed", dname(t), bias ? " bias" : "", wn);
  report(name, st, errs, tol(t));
}

// ---- column sum ----
void check_column_sum(int64_t m, int64_t n, bool transposed, DType t, bool accumulate) {
  Buf sb(t, m * n), db(t, n);
  fill(sb);
  Mat src = transposed ? view(sb, 0, m, n, 1, m) : view(sb, 0, m, n, n, 1);
  std::vector<double> ref(size_t(n), 0.0);
  if (accumulate) fill(db);
  Vec dst = vview(db, n);
  for (int64_t j = 0; j < n; ++j) ref[size_t(j)] = accumulate ? getv(dst, j) : 0.0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) ref[size_t(j)] += get(src, i, j);
  ColumnSumArgs a;
  a.src = src;
  a.dst = dst;
  a.accumulate = accumulate;
  fsg_status st = cpu_column_sum(a, kThreads);
  Err e;
  for (int64_t j = 0; j < n; ++j) e.add(getv(dst, j), ref[size_t(j)]);
  // deterministic: the same call with 1 thread gives identical bits
  std::vector<unsigned char> first = db.bytes;
  bool same = true;
  if (!accumulate) {
    cpu_column_sum(a, 1);
    same = first == db.bytes;
  }
  char name[128];
  snprintf(name, sizeof name, "column_sum M=%lld N=%lld %s %s%s", (long long)m, (long long)n,
           transposed ? "colmajor" : "rowmajor", dname(t), accumulate ? " acc" : "");
  report(name, same ? st : FSG_ERR_INTERNAL, {{"dst", e}}, tol(t));
  if (!same) printf("     not deterministic across thread counts\n");
}

// ---- conversions ----
// Independent references: the nearest representable value by comparing distances in double,
// ties to the even pattern.
uint16_t ref_bf16(float f) {
  if (std::isnan(f)) return 0x7fc0;
  const uint32_t u = cpu::float_bits(f);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;  // truncation and next magnitude up
  const double dlo = std::fabs(double(f) - double(cpu::bits_float(lo)));
  // past the largest finite bf16, "next" is 2^128 (IEEE rounds as if the exponent went on)
  const double hv = (hi & 0x7fffffffu) == 0x7f800000u ? std::copysign(std::ldexp(1.0, 128), double(f))
                                                       : double(cpu::bits_float(hi));
  const double dhi = std::fabs(hv - double(f));
  if (dlo < dhi) return uint16_t(lo >> 16);
  if (dhi < dlo) return uint16_t(hi >> 16);
  return uint16_t(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

uint16_t ref_fp16(float f) {
  if (std::isnan(f)) return 0x7e00;
  const double v = std::fabs(double(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (v >= 65520.0) return sign | 0x7c00;
  // all non-negative finite halves are monotonic in their bit pattern: binary search
  uint16_t lo = 0, hi = 0x7bff;
  while (lo < hi) {  // largest pattern with value <= v
    const uint16_t mid = uint16_t((lo + hi + 1) / 2);
    if (double(cpu::fp16_to_float(mid)) <= v) lo = mid; else hi = uint16_t(mid - 1);
  }
  if (lo == 0x7bff) return sign | 0x7bff;  // v < 65520 here: below the midpoint to 2^16
  const double dlo = v - cpu::fp16_to_float(lo), dhi = double(cpu::fp16_to_float(uint16_t(lo + 1))) - v;
  const uint16_t r = dlo < dhi ? lo : dhi < dlo ? uint16_t(lo + 1) : ((lo & 1) ? uint16_t(lo + 1) : lo);
  return sign | r;
}

bool same_conv(uint16_t got, uint16_t want, bool is_bf16) {
  const uint16_t exp_mask = is_bf16 ? 0x7f80 : 0x7c00, man_mask = is_bf16 ? 0x007f : 0x03ff;
  const bool got_nan = (got & exp_mask) == exp_mask && (got & man_mask);
  const bool want_nan = (want & exp_mask) == exp_mask && (want & man_mask);
  if (want_nan) return got_nan;  // any NaN payload is fine, but it must be a NaN
  return got == want;
}

void check_conversions() {
  int bad = 0;
  auto one = [&](float f) {
    const uint16_t b = cpu::float_to_bf16(f), h = cpu::float_to_fp16(f);
    if (!same_conv(b, ref_bf16(f), true)) {
      if (bad++ < 10) printf("     bf16(%a) = 0x%04x, want 0x%04x\n", double(f), b, ref_bf16(f));
    }
    if (!same_conv(h, ref_fp16(f), false)) {
      if (bad++ < 10) printf("     fp16(%a) = 0x%04x, want 0x%04x\n", double(f), h, ref_fp16(f));
    }
  };
  const float inf = INFINITY, fmax = 3.4028234663852886e38f;
  const float edge[] = {0.0f, -0.0f, 1.0f, -1.0f, inf, -inf, NAN, -NAN, fmax, -fmax, 1e-45f, -1e-45f,
                        1.17549435e-38f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 65536.0f, 6.1035156e-05f,
                        6.0975552e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 8.940697e-08f,
                        1.0009766f, 1.0004883f, 1.0014648f, 1.00390625f, 1.01171875f, 3.3895314e38f,
                        3.3961775e38f, 0.33333334f};
  for (float f : edge) one(f);
  // signalling NaN whose payload lies only in the low bits: truncation alone would give inf
  one(cpu::bits_float(0x7f800001u));
  one(cpu::bits_float(0xff800001u));
  if (!std::isnan(cpu::bf16_to_float(cpu::float_to_bf16(cpu::bits_float(0x7f800001u))))) bad++;
  if (!std::isnan(cpu::fp16_to_float(cpu::float_to_fp16(cpu::bits_float(0x7f800001u))))) bad++;
  // every fp16 pattern round-trips through float exactly (NaNs stay NaNs)
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = cpu::fp16_to_float(uint16_t(h));
    if (!same_conv(cpu::float_to_fp16(f), uint16_t(h), false)) {
      if (bad++ < 10) printf("     fp16 round trip 0x%04x\n", h);
    }
    // exact midpoints between neighbouring halves: ties to even
    if ((h & 0x7fff) < 0x7bff) {
      const double mid = (double(f) + double(cpu::fp16_to_float(uint16_t(h + 1)))) / 2.0;
      one(float(mid));
      one(std::nextafter(float(mid), 0.0f));
      one(std::nextafter(float(mid), INFINITY));
    }
  }
  // a sweep over float bit patterns, plus bf16 midpoints
  for (uint64_t u = 0; u < (1ull << 32); u += 65521) {
    one(cpu::bits_float(uint32_t(u)));
    one(cpu::bits_float(uint32_t(u & 0xffff0000u) | 0x8000u));  // bf16 tie
  }
  ++g_cases;
  if (bad) ++g_failures;
  printf("%-4s %-64s %d mismatches\n", bad ? "FAIL" : "ok", "conversions (edge cases, midpoints, sweep)", bad);
}

// ---- timing of the bf16 forward dual GEMM ----
void bench(int64_t m, int64_t k, int64_t n, Layout l, int threads) {
  Buf xb(DType::BF16, m * k), zb(DType::BF16, m * n);
  fill(xb);
  Weights w = make_weights(l, DType::BF16, k, n, 0.03f);
  DualGemmArgs a;
  a.x = view(xb, 0, m, k, k, 1);
  a.wg = w.g;
  a.wu = w.u;
  a.z = view(zb, 0, m, n, n, 1);
  double best = 1e30;
  for (int it = 0; it < 5; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu_dual_gemm(a, threads);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  printf("bench dual_gemm fwd bf16 M=%lld K=%lld N=%lld %-11s threads=%d: %.3f s (%.1f GFLOP/s), best of 5\n",
         (long long)m, (long long)k, (long long)n, lname(l), threads, best, 4.0 * m * k * n / best / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const bool do_bench = argc > 1 && std::strcmp(argv[1], "--bench") == 0;
  check_conversions();

  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  const Layout layouts[] = {kRowMajor, kTransposed, kPackedHalves, kInterleaved};
  struct Shape { int64_t m, k, n; };
  const Shape shapes[] = {{1, 1, 1}, {7, 13, 61}, {13, 127, 7}, {61, 257, 13}, {127, 61, 257}, {257, 1000, 127}};
  int combo = 0;
  for (const Shape& s : shapes)
    for (Layout l : layouts)
      for (DType t : dtypes) {
        ++combo;
        check_dual(s.m, s.k, s.n, l, t, false, combo % 2 == 0);
        check_dual(s.m, s.k, s.n, l, t, true, combo % 2 == 1);
      }
  check_dual(1000, 61, 257, kInterleaved, DType::BF16, false, true);
  check_dual(1000, 61, 257, kTransposed, DType::F16, true, true);

  combo = 0;
  for (const Shape& s : shapes)
    for (Layout l : {kRowMajor, kTransposed, kInterleaved})
      for (DType t : dtypes) {
        ++combo;
        check_gemm(s.m, s.k, s.n, 0, l, t, combo % 2 == 0, combo % 3 == 0);
        check_gemm(s.m, s.k, s.n, s.k % 7 + 5, l, t, combo % 2 == 1, combo % 3 == 1);
      }
  check_gemm(1000, 13, 127, 257, kRowMajor, DType::BF16, true, true);

  const std::pair<int64_t, int64_t> glu_shapes[] = {{1, 1}, {7, 13}, {61, 127}, {257, 1000}, {1000, 61}};
  combo = 0;
  for (auto [m, n] : glu_shapes)
    for (DType t : dtypes)
      for (WeightsKind wk : {kNoWeights, kWeightsF32, kWeightsCall}) {
        ++combo;
        check_glu(m, n, combo % 2 == 0, t, combo % 3 != 0, wk);
      }

  const std::pair<int64_t, int64_t> cs_shapes[] = {{1, 1}, {7, 13}, {127, 257}, {3000, 61}, {257, 1000}};
  combo = 0;
  for (auto [m, n] : cs_shapes)
    for (DType t : dtypes) {
      ++combo;
      check_column_sum(m, n, combo % 2 == 0, t, false);
      check_column_sum(m, n, combo % 2 == 1, t, true);
    }

  printf("\n%d cases, %d failed\n", g_cases, g_failures);
  if (do_bench) {
    bench(256, 1024, 2816, kRowMajor, 2);
    bench(256, 1024, 2816, kTransposed, 2);
    bench(256, 1024, 2816, kRowMajor, 1);
    bench(64, 4096, 14336, kRowMajor, 2);
    bench(64, 4096, 14336, kTransposed, 2);
  }
  return g_failures == 0 ? 0 : 1;
}
