// forward_check.ts: one fused-forward case (random inputs of a layout and dtype, optional biases
// and saved pre-activations) run and compared with the float64 reference; shared by the suites.
import { expect } from "bun:test";
import type { Device } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { disposeWeights, type Layout } from "../src/layouts.ts";
import { fusedSwiglu } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { cachedReference, caseSeeds, disposeAll, f64, nextSeed, poison, randn, randomWeights, RTOL } from "./helpers.ts";
import { swigluForwardRef, swigluForwardScaleRef, type FusedInputs } from "./reference.ts";

/**
 * float32: relative to the accumulation's error scale (|x|·|W|), since fp32 GEMM error grows with
 * K whatever the summation order (a missing K tile is still ~1e-3 of that scale, far above 1e-5).
 * 16-bit: relative to ||ref||, where the output rounding dominates.
 */
export function forwardTolerance(dtype: FloatDType, p: FusedInputs, which: "z" | "a" | "b" = "z"): { rtol: number; scale?: Float64Array } {
  return dtype === "float32" ? { rtol: RTOL.float32, scale: swigluForwardScaleRef(p)[which] } : { rtol: RTOL[dtype] };
}

export interface ForwardCase {
  layout: Layout;
  dtype: FloatDType;
  bias: boolean;
  lead: number[]; // leading dims of x (M = their product)
  K: number;
  N: number;
  preactivations?: boolean;
  /** rtol against the accumulation's error scale (|x|·|W|) instead of forwardTolerance's. */
  scaledRtol?: number;
  /**
   * The case's own inputs (caseSeeds(sharedInputs)), equal on every kernel path, so the float64
   * reference is computed once per run (cachedReference): for the large cases.
   */
  sharedInputs?: number;
}

export function checkForward(dev: Device, c: ForwardCase): void {
  const { layout, dtype, bias, lead, K, N } = c;
  const M = lead.reduce((a, b) => a * b, 1);
  const seeds = c.sharedInputs === undefined ? nextSeed : caseSeeds(c.sharedInputs);
  const x = randn([...lead, K], dtype, dev, 1, seeds);
  const w = randomWeights(layout, K, N, dtype, dev, seeds);
  const bGate = bias ? randn([N], dtype, dev, 0.5, seeds) : null;
  const bUp = bias ? randn([N], dtype, dev, 0.5, seeds) : null;
  const z = poison(Tensor.empty([...lead, N], dtype, { device: dev }));
  const aOut = c.preactivations ? poison(Tensor.empty([...lead, N], dtype, { device: dev })) : null;
  const bOut = c.preactivations ? poison(Tensor.empty([...lead, N], dtype, { device: dev })) : null;
  try {
    const ret = fusedSwiglu(x, w.gate, w.up, { bGate, bUp, out: z, aOut, bOut });
    expect(ret).toBe(z);
    const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: bGate && f64(bGate), bUp: bUp && f64(bUp), M, K, N };
    const key = c.sharedInputs === undefined ? null : `forward ${JSON.stringify(c)}`;
    const { ref, scale } = cachedReference(key, [p.x, p.wGate, p.wUp, p.bGate, p.bUp], () => ({
      ref: swigluForwardRef(p),
      scale: c.scaledRtol === undefined ? null : swigluForwardScaleRef(p),
    }));
    // float16 outputs below 2^-14 are subnormal, rounded to a fixed step of 2^-24 whatever the
    // scale: an output that small (a one-element z, say) may miss by up to that step.
    const atol = dtype === "float16" ? 2 ** -24 : 0;
    const tolerance = (which: "z" | "a" | "b") =>
      ({ ...(scale ? { rtol: c.scaledRtol!, scale: scale[which] } : forwardTolerance(dtype, p, which)), atol });
    expect(z.toFloat32()).toBeAllClose(ref.z, tolerance("z"));
    if (aOut && bOut) {
      expect(aOut.toFloat32()).toBeAllClose(ref.a, tolerance("a"));
      expect(bOut.toFloat32()).toBeAllClose(ref.b, tolerance("b"));
    }
  } finally {
    disposeAll(x, bGate, bUp, z, aOut, bOut);
    disposeWeights(w);
  }
}
