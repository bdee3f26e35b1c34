// activation_math.h: the gated-activation scalar math (SwiGLU and the GLU family) shared by the
// CUDA kernels and the CPU backend, so both backends round and saturate identically. Always fp32.
#pragma once
#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define FSG_HD __host__ __device__ __forceinline__
#else
#define FSG_HD inline
#endif

namespace fsg {

// The hardware's 2^x and 1/x (MUFU, about 2^-22 relative error; 1/inf = 0, 2^-inf = 0). The .ftz
// forms: only a subnormal 2^x or 1/x differs, and every caller adds it to 1 or multiplies it by a
// bounded value. Without .ftz the compiler wraps each ex2 in a range fix of three instructions (a
// compare and two multiplies), a third of plain SiLU's epilogue math (bench/NOTES.md, "GLU
// variants", step 8).
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float exp2_approx(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float rcp_approx(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}
#endif

constexpr float kLog2e = 1.4426950408889634f;

// 1 / (1 + 2^b), the sigmoid of -b ln 2: callers fold -log2(e) into their own constant, so the
// exponent costs no multiply of its own. b -> +inf gives +0, never NaN; b -> -inf exactly 1; NaN
// propagates. On the device the reciprocal is the hardware approximation: the IEEE division
// compiled to ~15 instructions with a slow-path branch per element, which made half of the sm_90a
// epilogue's instructions (bench/NOTES.md, Hopper step 7).
FSG_HD float sigmoid_exp2(float b) {
#if defined(__CUDA_ARCH__)
  return rcp_approx(1.0f + exp2_approx(b));
#else
  return 1.0f / (1.0f + std::exp2(b));
#endif
}

// sigmoid(a) = 1 / (1 + exp(-a)): +0 at -inf, 1 at +inf.
FSG_HD float sigmoidf_safe(float a) {
#if defined(__CUDA_ARCH__)
  return sigmoid_exp2(-kLog2e * a);
#else
  return 1.0f / (1.0f + std::exp(-a));
#endif
}

// silu(a) = a * sigmoid(a): silu(-1e4) = -1e4 * 0 = -0.
FSG_HD float siluf(float a) { return a * sigmoidf_safe(a); }

// d silu / da = s * (1 + a * (1 - s)), s = sigmoid(a). At a = -1e4: s = 0 -> 0 * (...) = -0,
// finite for every finite a because (1 + a*(1-s)) is finite.
FSG_HD float dsiluf(float a) {
  float s = sigmoidf_safe(a);
  return s * (1.0f + a * (1.0f - s));
}

}  // namespace fsg

// ---- the GLU family (fsg_glu_params): the gated value and its gradients ----
#include "fused_swiglu.h"

namespace fsg {

// Every parameter but the activation's kind at its default (no slope, clamp, offset or scales).
FSG_HD bool has_default_params(const fsg_glu_params& p) {
  return p.alpha == 1.0f && p.limit == 0.0f && p.up_offset == 0.0f && p.gate_scale == 1.0f && p.out_scale == 1.0f;
}

FSG_HD bool is_plain_swiglu(const fsg_glu_params& p) { return p.activation == FSG_ACT_SILU && has_default_params(p); }

// Phi(x) = (1 + erf(x / sqrt 2)) / 2, the normal CDF of GEGLU (erf), computed as
// erfc(-x / sqrt 2) / 2, which keeps its relative accuracy in the left tail, where 1 + erf
// cancels (the host takes std::erfc). On the device it is Numerical Recipes' erfc,
// erfc(z) = t exp(-z^2 + P(t)) with t = 1 / (1 + z/2) and P of degree 9 (relative error below
// 1.2e-7 for every z >= 0), taken in base 2 with the hardware exp2 and reciprocal: two MUFU and 14
// FMAs, no branch; about 1e-6 relative for |x| < 4 and 1e-5 out to where it underflows. CUDA's
// erff took ~27 instructions with selects and a divergent branch per element, which made GEGLU
// (erf) +3% of the sm_90a forward (bench/NOTES.md, "GLU variants", step 8).
FSG_HD float gelu_cdf(float x) {
#if defined(__CUDA_ARCH__)
  constexpr float L = kLog2e;  // P is scaled to base 2 coefficient by coefficient
  const float t = rcp_approx(fmaf(fabsf(x), 0.5f * 0.7071067811865476f, 1.0f));
  float p = 0.17087277f * L;
  p = fmaf(p, t, -0.82215223f * L);
  p = fmaf(p, t, 1.48851587f * L);
  p = fmaf(p, t, -1.13520398f * L);
  p = fmaf(p, t, 0.27886807f * L);
  p = fmaf(p, t, -0.18628806f * L);
  p = fmaf(p, t, 0.09678418f * L);
  p = fmaf(p, t, 0.37409196f * L);
  p = fmaf(p, t, 1.00002368f * L);
  p = fmaf(p, t, -1.26551223f * L - 1.0f);  // the -1: h is erfc / 2
  const float h = t * exp2_approx(fmaf(x, x * (-0.5f * L), p));  // -z^2 = -x^2 / 2
  return x < 0.0f ? h : 1.0f - h;
#else
  return 0.5f * std::erfc(-x * 0.7071067811865476f);
#endif
}

// act(x) and act'(x) of the gate's activation.
FSG_HD void activation_and_grad(const fsg_glu_params& p, float x, float* act, float* grad) {
  switch (p.activation) {
    case FSG_ACT_GELU_TANH: {
      // 0.5 x (1 + tanh(y)), y = k (x + c x^3), computed as x * sigmoid(2y), which is equal: SiLU's
      // fast sigmoid instead of tanhf (a branchy ~20-instruction routine in the sm_90a epilogue,
      // where the tensor cores wait for it), and no cancellation in 1 + tanh(y) for negative x.
      // Past |x| = 10 tanh is exactly +-1 in fp32: the value is x or -0 and the gradient 1 or 0,
      // chosen by selects, not a branch (a branch per element put GEGLU (tanh) at +13% of the
      // sm_90a forward, the selects at +4%: bench/NOTES.md, "GLU variants", step 4). Above 10 the
      // sigmoid is exactly 1, so x * s is x; below -10 the selects keep out -Inf * 0 and the
      // overflow of x^3.
      const float k2 = 2.0f * 0.7978845608028654f, c = 0.044715f;
      const float s = sigmoid_exp2(x * (x * x * (-k2 * c * kLog2e) - k2 * kLog2e));  // (1 + tanh(y)) / 2
      const bool tail = x > 10.0f || x < -10.0f;
      *act = x < -10.0f ? -0.0f : x * s;
      // d/dx: s + x s (1 - s) 2k (1 + 3 c x^2), since (1 - tanh^2) / 2 = 2 s (1 - s)
      *grad = tail ? (x > 0.0f ? 1.0f : 0.0f) : s + x * s * (1.0f - s) * k2 * (1.0f + 3.0f * c * x * x);
      return;
    }
    case FSG_ACT_GELU_ERF: {
      const float cdf = gelu_cdf(x);
      *act = x * cdf;
#if defined(__CUDA_ARCH__)
      // exp(-x^2 / 2) by the hardware's 2^x, as in gelu_cdf: CUDA's accurate expf adds a range
      // reduction and a fix-up of ~8 instructions per element to the backward's epilogue.
      const float density = exp2_approx(x * x * (-0.5f * kLog2e));
#else
      const float density = std::exp(-0.5f * x * x);
#endif
      *grad = cdf + x * 0.3989422804014327f * density;
      return;
    }
    case FSG_ACT_RELU:
      *act = x < 0.0f ? 0.0f : x;  // NaN passes through
      *grad = x > 0.0f ? 1.0f : 0.0f;
      return;
    case FSG_ACT_IDENTITY:
      *act = x;
      *grad = 1.0f;
      return;
    default: {  // FSG_ACT_SILU with slope alpha: x * sigmoid(alpha x)
      const float s = sigmoidf_safe(p.alpha * x);
      *act = x * s;
      *grad = s * (1.0f + p.alpha * x * (1.0f - s));
      return;
    }
  }
}

// min and max that let a NaN in `a` through (fminf would replace it by b). On the device,
// min/max.NaN (sm_80+): one instruction each, and a NaN in either operand comes through; the host
// versions are only called with b not NaN.
FSG_HD float min_nan(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("min.NaN.f32 %0, %1, %2;\n" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a > b ? b : a;
#endif
}
FSG_HD float max_nan(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("max.NaN.f32 %0, %1, %2;\n" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a < b ? b : a;
#endif
}

// The clamps of gpt-oss: gate from above, up on both sides. limit 0 means none, which is a limit
// of +inf, so a clamp is a plain min/max per element with no test of the limit. (With the test in
// the formula, Falcon-H1, which clamps nothing, measured 12 extra instructions per output in the
// sm_90a epilogue for its two multiplies: bench/NOTES.md, "GLU variants", step 5.)
FSG_HD float clamp_limit(const fsg_glu_params& p) { return p.limit > 0.0f ? p.limit : INFINITY; }
FSG_HD float clamp_gate(const fsg_glu_params& p, float g) { return min_nan(g, clamp_limit(p)); }
FSG_HD float clamp_up(const fsg_glu_params& p, float u) {
  const float l = clamp_limit(p);
  return max_nan(min_nan(u, l), -l);
}

// The variants run out of line on the device, so the plain SwiGLU path of a kernel that can take
// either keeps only a branch and a call site per element instead of every activation's code
// (erf, tanh, exp). The sm_90a kernel goes further and compiles plain SwiGLU as its own
// instantiation (bench/NOTES.md, "GLU variants in every kernel family").
#if defined(__CUDACC__)
#define FSG_HD_OUTLINE static __host__ __device__ __noinline__
#else
#define FSG_HD_OUTLINE inline
#endif

// SiLU's GLU with its parameters folded once per call (gpt-oss, Falcon-H1): the slope goes into
// exp2's argument, and the offset and out_scale into one FMA on the up branch,
//   x sigmoid(alpha x) (clamp(u) + up_offset) out_scale = x s (clamp(u) out_scale + up_offset out_scale),
// with x = clamp(gate_scale g). Unfolded, the sm_90a epilogue spent 11 instructions per output on
// the parameters (bench/NOTES.md, "GLU variants", steps 5, 6 and 8).
struct SiluGlu {
  float gate_scale, gate_limit, limit, exp2_slope, out_scale, out_offset;  // gate_limit: the gate's clamp
};
FSG_HD SiluGlu fold_silu_glu(const fsg_glu_params& p) {
  const float l = clamp_limit(p);
  return SiluGlu{p.gate_scale, l, l, -kLog2e * p.alpha, p.out_scale, p.up_offset * p.out_scale};
}
// The same with a positive gate scale folded too (p.gate_scale > 0): min(gs g, L) = gs min(g, L/gs),
// and gs joins the slope and the up branch's factors, so silu_glu_unit_gate needs no multiply for
// it (the sm_90a forward's SiLU-with-parameters instantiation).
FSG_HD SiluGlu fold_silu_glu_unit_gate(const fsg_glu_params& p) {
  const float l = clamp_limit(p), gs = p.gate_scale;
  return SiluGlu{1.0f, l / gs, l, -kLog2e * p.alpha * gs, p.out_scale * gs, p.up_offset * p.out_scale * gs};
}
// x: the clamped, scaled gate.
FSG_HD float silu_glu_at(const SiluGlu& f, float x, float u) {
  const float up = max_nan(min_nan(u, f.limit), -f.limit);
  // up * out_scale + out_offset: one FMA on the device (fmaf would be a library call on the host)
  return x * sigmoid_exp2(f.exp2_slope * x) * (up * f.out_scale + f.out_offset);
}
FSG_HD float silu_glu(const SiluGlu& f, float g, float u) { return silu_glu_at(f, min_nan(f.gate_scale * g, f.gate_limit), u); }
// For a fold_silu_glu_unit_gate fold (its gate_scale is 1).
FSG_HD float silu_glu_unit_gate(const SiluGlu& f, float g, float u) { return silu_glu_at(f, min_nan(g, f.gate_limit), u); }
// Its gradients per unit upstream gradient, with respect to the raw g and u (0 where a clamp cuts,
// as in glu_grads_variant), as d/dg = up * grad and d/du = act. With x = min(g, L/gs) and
// s = sigmoid(alpha gs x), the output is x s (clamp(u) out gs + offset out gs): act = x s out gs
// (0 where u is clamped), up = the up branch's factor (0 where the gate is clamped, so a NaN u
// gives 0 there, as on the general path), grad = s (1 + alpha gs x (1 - s)); alpha gs comes back
// from the folded slope (-log2(e) alpha gs).
struct GluGradFactors {
  float up, grad, act;
};
FSG_HD GluGradFactors silu_glu_unit_gate_factors(const SiluGlu& f, float g, float u) {
  const float x = min_nan(g, f.gate_limit);
  const float s = sigmoid_exp2(f.exp2_slope * x);
  const float up = max_nan(min_nan(u, f.limit), -f.limit);
  const float alpha_gs = f.exp2_slope * (-1.0f / kLog2e);
  const bool gate_free = !(g > f.gate_limit), up_free = !(u > f.limit || u < -f.limit);
  return GluGradFactors{gate_free ? up * f.out_scale + f.out_offset : 0.0f, s * (1.0f + alpha_gs * x * (1.0f - s)),
                        up_free ? x * s * f.out_scale : 0.0f};
}

// out = act(clamp(gate_scale * g)) * (clamp(u) + up_offset) * out_scale, inline: the sm_90a
// epilogue calls it with p.activation fixed at compile time, so the switch folds to one kind.
FSG_HD float glu_value_general(const fsg_glu_params& p, float g, float u) {
  if (p.activation == FSG_ACT_SILU) return silu_glu(fold_silu_glu(p), g, u);
  float act, grad;
  activation_and_grad(p, clamp_gate(p, p.gate_scale * g), &act, &grad);
  return act * (clamp_up(p, u) + p.up_offset) * p.out_scale;
}
FSG_HD_OUTLINE float glu_value_variant(const fsg_glu_params& p, float g, float u) { return glu_value_general(p, g, u); }

// act(g) and act'(g) for activation kind kAct with default parameters (has_default_params), the
// kind fixed at compile time: the sm_90a lean instantiations of GEGLU, ReGLU and the bilinear GLU.
template <int kAct> FSG_HD void activation_and_grad_kind(float g, float* act, float* grad) {
  const fsg_glu_params p{kAct, 1.0f, 0.0f, 0.0f, 1.0f, 1.0f};
  activation_and_grad(p, g, act, grad);
}

// act(g) * u for kind kAct with default parameters. Equal to glu_value_general up to the sign of a
// zero u.
template <int kAct> FSG_HD float glu_value_kind(float g, float u) {
  float act, grad;
  activation_and_grad_kind<kAct>(g, &act, &grad);
  return act * u;
}

// The lean instantiations of the sm_90a epilogue and the elementwise kernels: an FSG_ACT_* kind
// with default parameters (FSG_ACT_SILU: plain SwiGLU), SiLU with its parameters folded on the host
// (a positive gate scale: fold_silu_glu_unit_gate), or the general code for everything else.
constexpr int kGluGeneral = -1;
constexpr int kGluSiluParams = -2;
FSG_HD int lean_glu_kind(const fsg_glu_params& act) {
  if (has_default_params(act))
    return act.activation >= FSG_ACT_SILU && act.activation <= FSG_ACT_IDENTITY ? act.activation : kGluGeneral;
  return act.activation == FSG_ACT_SILU && act.gate_scale > 0.0f ? kGluSiluParams : kGluGeneral;
}
// Calls f(std::integral_constant<int, kind>{}) for a lean kind (lean_glu_kind) and returns its
// result, so a launch picks an instantiation, or a kernel its inlined math, once per call instead
// of per element. Host launches pass host lambdas, hence the exec check is off.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class F> FSG_HD decltype(auto) with_lean_kind(int kind, F&& f) {
  switch (kind) {
    case FSG_ACT_SILU: return f(std::integral_constant<int, FSG_ACT_SILU>{});
    case FSG_ACT_GELU_TANH: return f(std::integral_constant<int, FSG_ACT_GELU_TANH>{});
    case FSG_ACT_GELU_ERF: return f(std::integral_constant<int, FSG_ACT_GELU_ERF>{});
    case FSG_ACT_RELU: return f(std::integral_constant<int, FSG_ACT_RELU>{});
    case FSG_ACT_IDENTITY: return f(std::integral_constant<int, FSG_ACT_IDENTITY>{});
    case kGluSiluParams: return f(std::integral_constant<int, kGluSiluParams>{});
    default: return f(std::integral_constant<int, kGluGeneral>{});
  }
}
// The folded parameters a kGluSiluParams instantiation reads (zeros for the other kinds).
FSG_HD SiluGlu lean_silu_fold(const fsg_glu_params& act) {
  return act.gate_scale > 0.0f ? fold_silu_glu_unit_gate(act) : SiluGlu{};
}
// What a kernel's parameters carry to pick and run its lean epilogue, worked out once per launch.
struct LeanGlu {
  int kind;      // lean_glu_kind(act)
  SiluGlu silu;  // lean_silu_fold(act)
};
FSG_HD LeanGlu lean_glu(const fsg_glu_params& act) { return LeanGlu{lean_glu_kind(act), lean_silu_fold(act)}; }
// A lean kind's value; f: the folded parameters, read by kGluSiluParams only.
template <int kKind> FSG_HD float lean_glu_value(const SiluGlu& f, float g, float u) {
  if constexpr (kKind == FSG_ACT_SILU) return siluf(g) * u;
  else if constexpr (kKind == kGluSiluParams) return silu_glu_unit_gate(f, g, u);
  else return glu_value_kind<kKind>(g, u);
}
// A lean kind's gradients per unit upstream gradient: d/dg = up * grad, d/du = act (an FSG_ACT_*
// kind: u, act'(g) and act(g)).
template <int kKind> FSG_HD GluGradFactors lean_glu_grad_factors(const SiluGlu& f, float g, float u) {
  if constexpr (kKind == kGluSiluParams) {
    return silu_glu_unit_gate_factors(f, g, u);
  } else {
    float act, grad;
    if constexpr (kKind == FSG_ACT_SILU) act = siluf(g), grad = dsiluf(g);
    else activation_and_grad_kind<kKind>(g, &act, &grad);
    return GluGradFactors{u, grad, act};
  }
}

// out = act(clamp(gate_scale * g)) * (clamp(u) + up_offset) * out_scale.
FSG_HD float glu_value(const fsg_glu_params& p, float g, float u) {
  if (is_plain_swiglu(p)) return siluf(g) * u;
  return glu_value_variant(p, g, u);
}

// Gradients for an upstream gradient d of the output: *dg, *du with respect to the raw g and u
// (clamped elements get 0, as torch.clamp gives). Returns glu_value(p, g, u). Inline; the kernels
// that keep many accumulators live call it out of line, as glu_grads_variant.
FSG_HD float glu_grads_general(const fsg_glu_params& p, float g, float u, float d, float* dg, float* du) {
  const float gs = p.gate_scale * g;
  float act, grad;
  activation_and_grad(p, clamp_gate(p, gs), &act, &grad);
  const float up = clamp_up(p, u) + p.up_offset;
  const float l = clamp_limit(p);
  const bool gate_free = !(gs > l);
  const bool up_free = !(u > l || u < -l);
  const float ds = d * p.out_scale;
  *dg = gate_free ? ds * up * grad * p.gate_scale : 0.0f;
  *du = up_free ? ds * act : 0.0f;
  return act * up * p.out_scale;
}
FSG_HD_OUTLINE float glu_grads_variant(const fsg_glu_params& p, float g, float u, float d, float* dg, float* du) {
  return glu_grads_general(p, g, u, d, dg, du);
}

// Plain SwiGLU's case of glu_grads (kernels that decide plain-or-variant once call it directly).
FSG_HD float swiglu_grads(float g, float u, float d, float* dg, float* du) {
  const float s = siluf(g);
  *dg = d * u * dsiluf(g);
  *du = d * s;
  return s * u;
}

FSG_HD float glu_grads(const fsg_glu_params& p, float g, float u, float d, float* dg, float* du) {
  if (is_plain_swiglu(p)) return swiglu_grads(g, u, d, dg, du);
  return glu_grads_variant(p, g, u, d, dg, du);
}

// The glu value and gradients inlined, for a lean kind (lean_glu_kind, decided once on the host;
// f: the folded SiLU parameters) or the general code (kGluGeneral), whose switch on the activation
// goes the same way for the whole grid.
template <int kKind>
FSG_HD float glu_value_of(const fsg_glu_params& act, const SiluGlu& f, float g, float u) {
  if constexpr (kKind == kGluGeneral) return glu_value_general(act, g, u);
  else return lean_glu_value<kKind>(f, g, u);
}
template <int kKind>
FSG_HD float glu_grads_of(const fsg_glu_params& act, const SiluGlu& f, float g, float u, float d, float* dg,
                          float* du) {
  if constexpr (kKind == FSG_ACT_SILU) {
    return swiglu_grads(g, u, d, dg, du);
  } else if constexpr (kKind == kGluGeneral) {
    return glu_grads_general(act, g, u, d, dg, du);
  } else {
    const GluGradFactors k = lean_glu_grad_factors<kKind>(f, g, u);
    *dg = d * k.up * k.grad, *du = d * k.act;
    return lean_glu_value<kKind>(f, g, u);
  }
}

// The same for kernels that keep many accumulators live (the sm_80 and small-M epilogues): the
// general kind's math out of line (glu_value_variant, glu_grads_variant), the lean kinds inline.
template <int kKind> FSG_HD float glu_value_lean(const fsg_glu_params& act, const SiluGlu& f, float g, float u) {
  if constexpr (kKind == kGluGeneral) return glu_value_variant(act, g, u);
  else return glu_value_of<kKind>(act, f, g, u);
}
template <int kKind>
FSG_HD float glu_grads_lean(const fsg_glu_params& act, const SiluGlu& f, float g, float u, float d, float* dg,
                            float* du) {
  if constexpr (kKind == kGluGeneral) return glu_grads_variant(act, g, u, d, dg, du);
  else return glu_grads_of<kKind>(act, f, g, u, d, dg, du);
}

}  // namespace fsg
