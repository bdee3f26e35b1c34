// backward_check.ts: one fused-backward case (stored or recompute mode, a subset of the
// gradients, optionally accumulated into existing values) run and compared with the float64
// reference; shared by the suites.
import { expect } from "bun:test";
import type { Device } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { weightGradsLike } from "../src/function.ts";
import { disposeWeights, type Layout } from "../src/layouts.ts";
import { fusedSwiglu, fusedSwigluBackward } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { cachedReference, caseSeeds, disposeAll, f64, nextSeed, poison, randn, randomWeights, RTOL } from "./helpers.ts";
import { swigluBackwardRef, swigluBackwardScaleRef } from "./reference.ts";

export type Subset = "all" | "dx" | "dw" | "bias";
export const SUBSETS: Subset[] = ["all", "dx", "dw", "bias"];

export interface BackwardCase {
  layout: Layout;
  dtype: FloatDType;
  mode: "stored" | "recompute";
  subset: Subset;
  bias: boolean;
  lead: number[];
  K: number;
  N: number;
  accumulate?: boolean;
  /** rtol against the error scale instead of RTOL[dtype]. */
  scaledRtol?: number;
  /**
   * The case's own inputs (caseSeeds(sharedInputs)), equal on every kernel path, so the float64
   * reference is computed once per run (cachedReference): for the large cases.
   */
  sharedInputs?: number;
}

export function checkBackward(dev: Device, c: BackwardCase): void {
  const { layout, dtype, lead, K, N } = c;
  const M = lead.reduce((a, b) => a * b, 1);
  const device = { device: dev };
  const seeds = c.sharedInputs === undefined ? nextSeed : caseSeeds(c.sharedInputs);
  const x = randn([...lead, K], dtype, dev, 1, seeds);
  const w = randomWeights(layout, K, N, dtype, dev, seeds);
  const bGate = c.bias ? randn([N], dtype, dev, 0.5, seeds) : null;
  const bUp = c.bias ? randn([N], dtype, dev, 0.5, seeds) : null;
  const dz = randn([...lead, N], dtype, dev, 1, seeds);
  let aSaved: Tensor | null = null;
  let bSaved: Tensor | null = null;
  let z: Tensor | null = null;
  if (c.mode === "stored") {
    aSaved = Tensor.empty([...lead, N], dtype, device);
    bSaved = Tensor.empty([...lead, N], dtype, device);
    z = fusedSwiglu(x, w.gate, w.up, { bGate, bUp, aOut: aSaved, bOut: bSaved });
  }
  const want = {
    dx: c.subset === "all" || c.subset === "dx",
    dw: c.subset === "all" || c.subset === "dw",
    db: c.bias && (c.subset === "all" || c.subset === "bias"),
  };
  // Outputs: poisoned, or (accumulate) pre-filled with random values to add into.
  const init = (t: Tensor): { t: Tensor; before: Float64Array | null } => {
    if (!c.accumulate) return { t: poison(t), before: null };
    const values = randn([...t.shape], dtype, dev);
    t.writeRaw(values.toRaw());
    values.dispose();
    return { t, before: f64(t) };
  };
  const dx = want.dx ? init(Tensor.empty(x.shape, dtype, device)) : null;
  const wg = want.dw ? weightGradsLike(w.gate, w.up) : null;
  const dwGate = wg ? init(wg.dwGate) : null;
  const dwUp = wg ? init(wg.dwUp) : null;
  const dbGate = want.db ? init(Tensor.empty([N], dtype, device)) : null;
  const dbUp = want.db ? init(Tensor.empty([N], dtype, device)) : null;
  try {
    fusedSwigluBackward(dz, x, w.gate, w.up, {
      bGate, bUp, aSaved, bSaved,
      dx: dx?.t, dwGate: dwGate?.t, dwUp: dwUp?.t, dbGate: dbGate?.t, dbUp: dbUp?.t,
      accumulate: c.accumulate ?? false,
    });
    const inputs = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: bGate && f64(bGate), bUp: bUp && f64(bUp), M, K, N };
    const dz64 = f64(dz);
    const key = c.sharedInputs === undefined ? null : `backward ${JSON.stringify(c)}`;
    const { ref, scale } = cachedReference(key, [inputs.x, inputs.wGate, inputs.wUp, inputs.bGate, inputs.bUp, dz64], () => ({
      ref: swigluBackwardRef(inputs, dz64),
      scale: swigluBackwardScaleRef(inputs, dz64),
    }));
    const expectGrad = (got: { t: Tensor; before: Float64Array | null } | null, name: keyof typeof ref) => {
      if (!got) return;
      const before = got.before;
      const wanted = before ? ref[name].map((v, i) => v + before[i]!) : ref[name];
      const s = before ? scale[name].map((v, i) => v + Math.abs(before[i]!)) : scale[name];
      // With scaledRtol, float16's subnormal step (2^-24) bounds tiny gradients as in forward_check.ts.
      const atol = c.scaledRtol !== undefined && dtype === "float16" ? 2 ** -24 : 0;
      const values = got.t.toFloat32();
      expect(values).toBeAllClose(wanted, { rtol: c.scaledRtol ?? RTOL[dtype], scale: s, atol });
      // That scale sums the terms' magnitudes at every step, so for 16-bit dtypes at large K, N or M
      // it outgrows the gradient itself (|ref| / |scale| ~ 0.01): an all-zero result would pass.
      // 16-bit gradients (fp32 accumulation) must also be within 3 RTOL of the gradient's own norm
      // (a zero result, or one missing a term, is off by tens of percent). Only where they have
      // enough elements: a lone element, or the 7 values of dA behind a rank-1 dW at M = 1, can be
      // near a cancellation (silu' near its zero at -1.28), which only the scale above bounds.
      if (dtype !== "float32" && c.scaledRtol === undefined && wanted.length >= 64) {
        let err = 0;
        let norm = 0;
        for (let i = 0; i < wanted.length; i++) {
          err += (values[i]! - wanted[i]!) ** 2;
          norm += wanted[i]! ** 2;
        }
        if (norm > 0 && Math.sqrt(err / norm) > 3 * RTOL[dtype]) {
          throw new Error(`${name}: normwise error ${Math.sqrt(err / norm).toExponential(2)} against the gradient's norm exceeds ${3 * RTOL[dtype]}`);
        }
      }
    };
    expectGrad(dx, "dx");
    expectGrad(dwGate, "dwGate");
    expectGrad(dwUp, "dwUp");
    expectGrad(dbGate, "dbGate");
    expectGrad(dbUp, "dbUp");
    if (wg) {
      // Weight grads have the weights' layout: same strides and offsets.
      expect(wg.dwGate.strides).toEqual(w.gate.strides);
      expect(wg.dwUp.strides).toEqual(w.up.strides);
      if (w.gate.storage === w.up.storage) {
        expect(wg.dwGate.storage).toBe(wg.dwUp.storage);
        expect(wg.dwUp.offset - wg.dwGate.offset).toBe(w.up.offset - w.gate.offset);
      }
    }
  } finally {
    disposeAll(x, bGate, bUp, dz, aSaved, bSaved, z, dx?.t, dwGate?.t, dwUp?.t, dbGate?.t, dbUp?.t);
    disposeWeights(w);
  }
}
