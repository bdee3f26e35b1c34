// The GLU family (issue "GLU variants"): GEGLU (tanh and exact), ReGLU, bilinear, gpt-oss's
// clamped SwiGLU and Falcon-H1's scales, through the fused forward, both backward modes and the
// activation-only ops, on every backend, against a float64 reference that is itself checked by
// finite differences. Defaults must reproduce plain SwiGLU bit for bit.
import { describe, expect, test } from "bun:test";
import { GEGLU, GEGLU_TANH, GPT_OSS, REGLU, BILINEAR, resolveActivation, type GluActivation } from "../src/activation.ts";
import type { Device } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { dequantizeFp8 } from "../src/fp8.ts";
import { SwiGLUContext, SwiGLUFunction, weightGradsLike } from "../src/function.ts";
import { disposeWeights, type WeightViews } from "../src/layouts.ts";
import { fusedSwiglu, fusedSwigluBackward, glu, swigluBackward } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, f64, forEachBackend, poison, randn, randomValues, randomWeights, RTOL } from "./helpers.ts";
import { columnSum, gemmRef, transposeRef } from "./reference.ts";

// ---- float64 reference of one gated element and its gradients ----

/** erfc(ax) for ax >= 3 to ~1e-15 relative: exp(-ax^2)/sqrt(pi) / (ax + 1/2/(ax + 1/(ax + 3/2/(ax + ...)))). */
function erfcTail(ax: number): number {
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  return Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
}

/** erf to ~1e-15 (series below 3, continued fraction of erfc above). */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x, sum = x;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x) * (1 - erfcTail(ax));
}

/** The normal CDF (1 + erf(x / sqrt 2)) / 2, to ~1e-15 relative also in the left tail, where 1 + erf cancels. */
function normalCdf(x: number): number {
  const z = x / Math.SQRT2;
  return z < -3 ? 0.5 * erfcTail(-z) : 0.5 * (1 + erf(z));
}

function actRef(kind: string, alpha: number, x: number): number {
  switch (kind) {
    case "gelu-tanh": return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case "gelu": return x * normalCdf(x);
    case "relu": return Math.max(x, 0);
    case "identity": return x;
    default: return x / (1 + Math.exp(-alpha * x));
  }
}

function dactRef(kind: string, alpha: number, x: number): number {
  switch (kind) {
    case "gelu-tanh": {
      const k = Math.sqrt(2 / Math.PI), t = Math.tanh(k * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
    case "gelu": return normalCdf(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case "relu": return x > 0 ? 1 : 0;
    case "identity": return 1;
    default: {
      const s = 1 / (1 + Math.exp(-alpha * x));
      return s * (1 + alpha * x * (1 - s));
    }
  }
}

export function gluRef(act: GluActivation, g: number, u: number): number {
  const a = resolveActivation(act);
  const gs = a.gateScale * g;
  const gc = a.limit > 0 ? Math.min(gs, a.limit) : gs;
  const uc = a.limit > 0 ? Math.min(Math.max(u, -a.limit), a.limit) : u;
  return actRef(a.kind, a.alpha, gc) * (uc + a.upOffset) * a.outScale;
}

export function gluGradRef(act: GluActivation, g: number, u: number): [number, number] {
  const a = resolveActivation(act);
  const gs = a.gateScale * g;
  const gateFree = !(a.limit > 0 && gs > a.limit);
  const upFree = !(a.limit > 0 && Math.abs(u) > a.limit);
  const gc = gateFree ? gs : a.limit;
  const uc = a.limit > 0 ? Math.min(Math.max(u, -a.limit), a.limit) : u;
  const dg = gateFree ? dactRef(a.kind, a.alpha, gc) * (uc + a.upOffset) * a.outScale * a.gateScale : 0;
  const du = upFree ? actRef(a.kind, a.alpha, gc) * a.outScale : 0;
  return [dg, du];
}

const VARIANTS: [string, GluActivation][] = [
  ["GEGLU (exact)", GEGLU],
  ["GEGLU (tanh)", GEGLU_TANH],
  ["ReGLU", REGLU],
  ["bilinear", BILINEAR],
  ["gpt-oss clamped SwiGLU", GPT_OSS],
  ["Falcon-H1 scales, swish-beta", { kind: "silu", alpha: 0.5, gateScale: 1.7, outScale: 0.6 }],
  // A gate scale <= 0 cannot be folded into the clamp (min(gs g, L) flips): the sm_90a general epilogue.
  ["SiLU, negative gate scale and clamps", { kind: "silu", alpha: 1.3, gateScale: -0.8, limit: 5, upOffset: 0.5 }],
];

describe("GLU variant reference", () => {
  for (const [name, act] of VARIANTS) {
    test(`${name}: gradients match central finite differences`, () => {
      const h = 1e-6;
      // Points away from the clamp and relu kinks (the derivative jumps there).
      for (const [g, u] of [[0.37, -1.3], [-2.2, 0.8], [1.9, 2.5], [-0.6, -0.45], [3.1, 9.5], [8.5, -0.2]]) {
        const [dg, du] = gluGradRef(act, g!, u!);
        const fdg = (gluRef(act, g! + h, u!) - gluRef(act, g! - h, u!)) / (2 * h);
        const fdu = (gluRef(act, g!, u! + h) - gluRef(act, g!, u! - h)) / (2 * h);
        expect(Math.abs(dg - fdg)).toBeLessThan(1e-6 * (1 + Math.abs(fdg)));
        expect(Math.abs(du - fdu)).toBeLessThan(1e-6 * (1 + Math.abs(fdu)));
      }
    });
  }
  test("erf matches known values", () => {
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(-1.5)).toBeCloseTo(-0.9661051464753108, 14);
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 14);
    // Phi(-8) = erfc(8 / sqrt 2) / 2 = 6.22096057427178e-16, where 1 + erf(-8 / sqrt 2) keeps no digit
    expect(normalCdf(-8) / 6.22096057427178e-16).toBeCloseTo(1, 12);
  });
});

// ---- the ops against it ----

/**
 * Forward and gradients. `saved`: the pre-activations the stored-mode backward reads (rounded to
 * the dtype), so an element rounded across a clamp or kink is judged by what the device saw.
 */
function fusedRef(act: GluActivation, x: Float64Array, wg: Float64Array, wu: Float64Array, bg: Float64Array | null,
  bu: Float64Array | null, dz: Float64Array, M: number, K: number, N: number, saved?: { a: Float64Array; b: Float64Array }) {
  const a = saved?.a ?? gemmRef(x, wg, M, K, N, bg);
  const b = saved?.b ?? gemmRef(x, wu, M, K, N, bu);
  const z = new Float64Array(M * N), da = new Float64Array(M * N), db = new Float64Array(M * N);
  for (let i = 0; i < M * N; i++) {
    z[i] = gluRef(act, a[i]!, b[i]!);
    const [dg, du] = gluGradRef(act, a[i]!, b[i]!);
    da[i] = dz[i]! * dg;
    db[i] = dz[i]! * du;
  }
  const dx = gemmRef(da, transposeRef(wg, K, N), M, N, K, null, gemmRef(db, transposeRef(wu, K, N), M, N, K));
  const xt = transposeRef(x, M, K);
  return { z, dx, dwGate: gemmRef(xt, da, K, M, N), dwUp: gemmRef(xt, db, K, M, N), dbGate: columnSum(da, M, N), dbUp: columnSum(db, M, N) };
}

/**
 * A fused case's inputs; pre-activations spread to about +-15 so the gpt-oss clamps at 7 are
 * exercised. The biases keep every pre-activation at least 1e-3 from the points where act's
 * gradient jumps (kinkFreeBias): otherwise a recomputed pre-activation one fp32 rounding away from
 * the float64 reference's can fall on the other side of a clamp, and one gradient element flips.
 */
function fusedInputs(act: GluActivation, dtype: FloatDType, dev: Device, M: number, K: number, N: number) {
  const a = resolveActivation(act);
  const x = randn([M, K], dtype, dev, 6);
  const w = randomWeights("packed", K, N, dtype, dev);
  const gateKinks = [...(a.limit > 0 ? [a.limit / a.gateScale] : []), ...(a.kind === "relu" ? [0] : [])];
  const upKinks = a.limit > 0 ? [a.limit, -a.limit] : [];
  return {
    x,
    w,
    bGate: kinkFreeBias(gemmRef(f64(x), f64(w.gate), M, K, N), gateKinks, dtype, dev, M, N),
    bUp: kinkFreeBias(gemmRef(f64(x), f64(w.up), M, K, N), upKinks, dtype, dev, M, N),
    dz: randn([M, N], dtype, dev),
  };
}

/**
 * A random bias [N] (scale 0.5) for pre-activations xw [M, N], each column's moved by the first of
 * 0, +-0.01, +-0.02, ... (rounded to dtype) that puts every xw + bias at least 1e-3 from each kink.
 */
function kinkFreeBias(xw: Float64Array, kinks: number[], dtype: FloatDType, dev: Device, M: number, N: number): Tensor {
  const base = randn([N], dtype, dev, 0.5);
  if (kinks.length === 0) return base;
  const steps = [0, ...Array.from({ length: 40 }, (_, i) => (i % 2 ? -1 : 1) * 0.01 * (1 + (i >> 1)))];
  const b = f64(base);
  const raw = Float32Array.from({ length: N * steps.length }, (_, i) => b[i % N]! + steps[Math.floor(i / N)]!);
  const rounded = Tensor.fromFloat32(raw, [raw.length], dtype, { device: dev });
  const candidates = rounded.toFloat32();
  disposeAll(base, rounded);
  const chosen = new Float32Array(N);
  for (let j = 0; j < N; j++) {
    const clear = (c: number) => {
      for (let i = 0; i < M; i++) for (const k of kinks) if (Math.abs(xw[i * N + j]! + c - k) < 1e-3) return false;
      return true;
    };
    const t = steps.findIndex((_, t) => clear(candidates[t * N + j]!));
    if (t < 0) throw new Error(`kinkFreeBias: no bias clears column ${j}`);
    chosen[j] = candidates[t * N + j]!;
  }
  return Tensor.fromFloat32(chosen, [N], dtype, { device: dev });
}

/** dA/dB are rounded to the dtype before the GEMMs: three times the forward's bound. */
const GRADS = ["dx", "dwGate", "dwUp", "dbGate", "dbUp"] as const;
function expectGrads(got: Partial<Record<(typeof GRADS)[number], Tensor | null>>, want: ReturnType<typeof fusedRef>, dtype: FloatDType) {
  for (const k of GRADS) expect(got[k]!.toFloat32()).toBeAllClose(want[k], { rtol: RTOL[dtype] * 3 });
}

/**
 * The fused backward into poisoned gradients, checked against `want`: stored mode from `saved`,
 * recompute mode when it is null.
 */
function expectFusedBackward(act: GluActivation, dtype: FloatDType,
  inputs: { x: Tensor; w: WeightViews; bGate: Tensor; bUp: Tensor }, dz: Tensor,
  saved: { a: Tensor; b: Tensor } | null, want: ReturnType<typeof fusedRef>) {
  const { x, w, bGate, bUp } = inputs;
  const [M, K] = x.shape as [number, number];
  const N = dz.shape[1]!;
  const dev = x.device;
  const dx = poison(Tensor.empty([M, K], dtype, { device: dev }));
  const { dwGate, dwUp } = weightGradsLike(w.gate, w.up);
  const dbGate = poison(Tensor.empty([N], dtype, { device: dev }));
  const dbUp = poison(Tensor.empty([N], dtype, { device: dev }));
  fusedSwigluBackward(dz, x, w.gate, w.up, {
    bGate, bUp, aSaved: saved?.a ?? null, bSaved: saved?.b ?? null,
    dx, dwGate: poison(dwGate), dwUp: poison(dwUp), dbGate, dbUp, activation: act,
  });
  expectGrads({ dx, dwGate, dwUp, dbGate, dbUp }, want, dtype);
  disposeAll(dx, dwGate, dwUp, dbGate, dbUp);
}

forEachBackend("GLU variants", (device) => {
  for (const dtype of DTYPE_LIST) {
    // 37x29x23: rows no kernel can load with TMA (the sm_80 kernels run); 136x72x264: 16-byte
    // aligned rows, so the sm_90a dual GEMM takes it where chosen or forced (its general epilogue,
    // and the lean per-kind instantiations of GEGLU, ReGLU and bilinear, forward and backward).
    for (const [name, act] of VARIANTS) {
      for (const [M, K, N] of [[37, 29, 23], [136, 72, 264]] as const) {
        test(`${dtype} ${name}: fused forward and both backward modes, ${M}x${K}x${N}`, () => {
          const dev = device();
          const { x, w, bGate, bUp, dz } = fusedInputs(act, dtype, dev, M, K, N);
          const aSaved = Tensor.empty([M, N], dtype, { device: dev });
          const bSaved = Tensor.empty([M, N], dtype, { device: dev });
          const z = fusedSwiglu(x, w.gate, w.up, { bGate, bUp, aOut: aSaved, bOut: bSaved, activation: act });
          const ref = fusedRef(act, f64(x), f64(w.gate), f64(w.up), f64(bGate), f64(bUp), f64(dz), M, K, N);
          expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL[dtype] * 2 });
          // Without saves (a decode step's call) the small-M kernels take an inline path per kind.
          const zOnly = fusedSwiglu(x, w.gate, w.up, { bGate, bUp, activation: act });
          expect(zOnly.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL[dtype] * 2 });
          zOnly.dispose();
          // Stored mode, judged from the saved (rounded) pre-activations; then recompute mode.
          const fromSaved = fusedRef(act, f64(x), f64(w.gate), f64(w.up), null, null, f64(dz), M, K, N,
            { a: f64(aSaved), b: f64(bSaved) });
          expectFusedBackward(act, dtype, { x, w, bGate, bUp }, dz, { a: aSaved, b: bSaved }, fromSaved);
          expectFusedBackward(act, dtype, { x, w, bGate, bUp }, dz, null, ref);
          disposeAll(x, bGate, bUp, dz, aSaved, bSaved, z);
          disposeWeights(w);
        });

        if (M === 136) {
          // Decode-sized calls without saves (small_m.cu's tensor-core and generic kernels on
          // every path but the forced sm_90a one), 16-byte aligned rows.
          test(`${dtype} ${name}: decode-sized forward without saves, 1 and 16 rows`, () => {
            const dev = device();
            for (const rows of [1, 16]) {
              const { x, w, bGate, bUp, dz } = fusedInputs(act, dtype, dev, rows, K, N);
              const z = fusedSwiglu(x, w.gate, w.up, { bGate, bUp, activation: act });
              const ref = fusedRef(act, f64(x), f64(w.gate), f64(w.up), f64(bGate), f64(bUp), f64(dz), rows, K, N);
              expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL[dtype] * 2 });
              disposeAll(x, bGate, bUp, dz, z);
              disposeWeights(w);
            }
          });
        }

        // dz as a view with rows of N + 1 elements: no TMA map can address it, so the sm_90a
        // recompute backward computes dA and dB in registers and stores them pair by pair (with an
        // aligned dz, the test above, they go through shared memory): both paths of every lean kind.
        if (M === 136) test(`${dtype} ${name}: recompute backward with a dz TMA cannot read, ${M}x${K}x${N}`, () => {
          const dev = device();
          const { x, w, bGate, bUp } = fusedInputs(act, dtype, dev, M, K, N);
          const dzRows = randn([M, N + 1], dtype, dev);
          const dz = dzRows.slice(1, 1, N);
          const ref = fusedRef(act, f64(x), f64(w.gate), f64(w.up), f64(bGate), f64(bUp), f64(dz), M, K, N);
          expectFusedBackward(act, dtype, { x, w, bGate, bUp }, dz, null, ref);
          disposeAll(x, bGate, bUp, dzRows);
          disposeWeights(w);
        });

        // fp8 saves run their own sm_90a instantiations (SiLU with or without parameters; the general
        // one for the other kinds); 264 columns are two whole 128-column tiles and a partial one.
        test(`${dtype} ${name}: fp8 saves, forward and the backward from them, ${M}x${K}x${N}`, () => {
          const dev = device();
          const { x, w, bGate, bUp, dz } = fusedInputs(act, dtype, dev, M, K, N);
          const ctx = new SwiGLUContext();
          try {
            const z = SwiGLUFunction.forward(ctx, x, w.gate, w.up, { bGate, bUp, activation: act, saveForBackward: "preactivations-fp8" });
            const [xv, wgv, wuv, bgv, buv, dzv] = [f64(x), f64(w.gate), f64(w.up), f64(bGate), f64(bUp), f64(dz)];
            expect(z.toFloat32()).toBeAllClose(fusedRef(act, xv, wgv, wuv, bgv, buv, dzv, M, K, N).z, { rtol: RTOL[dtype] * 2 });
            const saved: Float64Array[] = [];
            for (const [data, scale, bias, wv] of [[ctx.aSaved!, ctx.aScale!, bgv, wgv], [ctx.bSaved!, ctx.bScale!, buv, wuv]] as const) {
              const deqTensor = dequantizeFp8({ data, scale }, { dtype: "float32" });
              const deq = f64(deqTensor);
              deqTensor.dispose();
              saved.push(deq);
              // Each element within e4m3's rounding (2^-4 relative) of the exact pre-activation, plus
              // its block's subnormal step and the fp32 accumulation (1e-4 of the block's largest).
              const want = gemmRef(xv, wv, M, K, N, bias);
              for (let r = 0; r < M; r++)
                for (let b0 = 0; b0 < N; b0 += 32) {
                  let amax = 0;
                  for (let j = b0; j < Math.min(N, b0 + 32); j++) amax = Math.max(amax, Math.abs(want[r * N + j]!));
                  for (let j = b0; j < Math.min(N, b0 + 32); j++) {
                    const i = r * N + j;
                    expect(Math.abs(deq[i]! - want[i]!)).toBeLessThanOrEqual(2 ** -4 * Math.abs(want[i]!) + 1e-4 * amax);
                  }
                }
            }
            const grads = SwiGLUFunction.backward(ctx, dz);
            const g = fusedRef(act, xv, wgv, wuv, null, null, dzv, M, K, N, { a: saved[0]!, b: saved[1]! });
            expectGrads(grads, g, dtype);
            disposeAll(z, grads.dx, grads.dwGate, grads.dwUp, grads.dbGate, grads.dbUp);
          } finally {
            ctx.dispose();
            disposeAll(x, bGate, bUp, dz);
            disposeWeights(w);
          }
        });
      }

      // 41x19: rows the elementwise kernels read element by element; 23x72: 16-byte rows, read 16
      // bytes per step by their per-kind instantiations.
      for (const [M, N] of [[41, 19], [23, 72]] as const) {
        test(`${dtype} ${name}: activation op with bias and token weights, and its backward, ${M}x${N}`, () => {
          const dev = device();
          const y = randn([M, 2 * N], dtype, dev, 4);
          const bias = randn([2 * N], dtype, dev, 0.5);
          const weights = randn([M, 1], "float32", dev);
          const dout = randn([M, N], dtype, dev);
          const out = glu(y, { bias, weights, activation: act });
          const { dy, dbias, dweights } = swigluBackward(dout, y, { bias, weights, activation: act });
          const [yv, bv, wv, dv] = [f64(y), f64(bias), f64(weights), f64(dout)];
          const refOut = new Float64Array(M * N), refDy = new Float64Array(M * 2 * N), refDw = new Float64Array(M);
          for (let i = 0; i < M; i++) {
            for (let j = 0; j < N; j++) {
              const g = yv[i * 2 * N + j]! + bv[j]!, u = yv[i * 2 * N + N + j]! + bv[N + j]!;
              const value = gluRef(act, g, u);
              const [dg, du] = gluGradRef(act, g, u);
              refOut[i * N + j] = value * wv[i]!;
              refDy[i * 2 * N + j] = dv[i * N + j]! * wv[i]! * dg;
              refDy[i * 2 * N + N + j] = dv[i * N + j]! * wv[i]! * du;
              refDw[i] += dv[i * N + j]! * value;
            }
          }
          expect(out.toFloat32()).toBeAllClose(refOut, { rtol: RTOL[dtype] * 2 });
          expect(dy.toFloat32()).toBeAllClose(refDy, { rtol: RTOL[dtype] * 2 });
          expect(dweights!.toFloat32()).toBeAllClose(refDw, { rtol: RTOL[dtype] * 2 });
          expect(dbias!.toFloat32()).toBeAllClose(columnSum(refDy, M, 2 * N), { rtol: RTOL[dtype] * 2 });
          disposeAll(y, bias, weights, dout, out, dy, dbias, dweights);
        });
      }
    }

    // float16 is left out: outputs near 1e-19 underflow it.
    test.if(dtype !== "float16")(`${dtype}: GEGLU (erf) keeps its relative accuracy in the left tail, where 1 + erf cancels`, () => {
      // g in [-9, -3]: Phi(g) from 1e-19 to 1e-3. 0.5 (1 + erf) in float32 is 0 below about -5.5
      // and keeps few bits above it; every element must be right relative to itself.
      const dev = device();
      const [M, N] = [5, 67];
      const r = randomValues(M * 2 * N);
      const values = r.map((v, i) => (i % (2 * N) < N ? -6 + 3 * v : 1 + 0.5 * v));
      const y = Tensor.fromFloat32(values, [M, 2 * N], dtype, { device: dev });
      const out = glu(y, { activation: GEGLU });
      const yv = f64(y), got = out.toFloat32();
      let worst = 0;
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          const ref = gluRef(GEGLU, yv[i * 2 * N + j]!, yv[i * 2 * N + N + j]!);
          worst = Math.max(worst, Math.abs(got[i * N + j]! - ref) / Math.abs(ref));
        }
      // float32: the computation's own error (1e-5 at worst); 16-bit outputs: their rounding
      expect(worst).toBeLessThan(dtype === "float32" ? 1e-4 : 2 * RTOL[dtype]);
      disposeAll(y, out);
    });

    test(`${dtype}: explicit defaults reproduce plain SwiGLU bit for bit`, () => {
      const dev = device();
      const [M, K, N] = [19, 33, 21];
      const x = randn([M, K], dtype, dev);
      const w = randomWeights("interleaved", K, N, dtype, dev);
      const plain = fusedSwiglu(x, w.gate, w.up);
      const explicit = fusedSwiglu(x, w.gate, w.up, { activation: { kind: "silu", alpha: 1, limit: 0, upOffset: 0, gateScale: 1, outScale: 1 } });
      expect(Array.from(explicit.toRaw())).toEqual(Array.from(plain.toRaw()));
      disposeAll(x, plain, explicit);
      disposeWeights(w);
    });
  }

  test("invalid activation parameters name the field", () => {
    const dev = device();
    const y = randn([3, 8], "float32", dev);
    expect(() => glu(y, { activation: { limit: -1 } })).toThrow(/act\.limit/);
    expect(() => glu(y, { activation: { alpha: Number.NaN } })).toThrow(/act\.alpha/);
    expect(() => glu(y, { activation: { kind: "swish" as "silu" } })).toThrow(/activation\.kind/);
    expect(glu(y).shape).toEqual([3, 4]); // still usable
    y.dispose();
  });
});
