// Megatron-style activation ops on packed y [..., 2N]: swiglu, biasSwiglu, weightedSwiglu
// (with and without bias), forward and backward (dy, dbias, dweights), every dtype.
import { expect, test } from "bun:test";
import type { Device } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { biasSwiglu, glu, swiglu, swigluBackward, weightedSwiglu } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, f64, forEachBackend, poison, randn, RTOL } from "./helpers.ts";
import { gluBackwardRef, gluForwardRef } from "./reference.ts";

type Variant = "swiglu" | "biasSwiglu" | "weightedSwiglu" | "weightedBiasSwiglu";
const VARIANTS: Variant[] = ["swiglu", "biasSwiglu", "weightedSwiglu", "weightedBiasSwiglu"];
const SHAPES: number[][] = [[1, 1], [7, 13], [61, 127], [3, 5, 17], [257, 64], [1000, 96], [2, 33, 200]];

function checkGlu(dev: Device, variant: Variant, dtype: FloatDType, lead: number[], N: number, weightsDType: FloatDType): void {
  const M = lead.reduce((a, b) => a * b, 1);
  const y = randn([...lead, 2 * N], dtype, dev, 2);
  const hasBias = variant === "biasSwiglu" || variant === "weightedBiasSwiglu";
  const hasWeights = variant === "weightedSwiglu" || variant === "weightedBiasSwiglu";
  const bias = hasBias ? randn([2 * N], dtype, dev, 0.5) : null;
  const weights = hasWeights ? randn([M, 1], weightsDType, dev) : null;
  const out = poison(Tensor.empty([...lead, N], dtype, { device: dev }));
  const dout = randn([...lead, N], dtype, dev);
  const dy = poison(Tensor.empty(y.shape, dtype, { device: dev }));
  let grads: ReturnType<typeof swigluBackward> | null = null;
  try {
    if (variant === "swiglu") swiglu(y, { out });
    else if (variant === "biasSwiglu") biasSwiglu(y, bias!, { out });
    else weightedSwiglu(y, weights!, bias, { out });
    const p = { y: f64(y), M, N, bias: bias && f64(bias), weights: weights && f64(weights) };
    expect(out.toFloat32()).toBeAllClose(gluForwardRef(p), { rtol: RTOL[dtype] });

    grads = swigluBackward(dout, y, { bias, weights, dy });
    const ref = gluBackwardRef(p, f64(dout));
    expect(grads.dy).toBe(dy);
    expect(dy.toFloat32()).toBeAllClose(ref.dy, { rtol: RTOL[dtype] });
    if (hasBias) {
      expect(grads.dbias!.shape).toEqual([2 * N]);
      expect(grads.dbias!.toFloat32()).toBeAllClose(ref.dbias, { rtol: RTOL[dtype] });
    } else expect(grads.dbias).toBeUndefined();
    if (hasWeights) {
      expect(grads.dweights!.shape).toEqual([M, 1]);
      expect(grads.dweights!.dtype).toBe(weightsDType);
      expect(grads.dweights!.toFloat32()).toBeAllClose(ref.dweights, { rtol: RTOL[dtype] });
    } else expect(grads.dweights).toBeUndefined();
  } finally {
    disposeAll(y, bias, weights, out, dout, dy, grads?.dbias, grads?.dweights);
  }
}

forEachBackend("activation ops", (device) => {
  let i = 0;
  for (const dtype of DTYPE_LIST) {
    for (const variant of VARIANTS) {
      const shapes = [0, 1, 2].map((j) => SHAPES[(3 * i + j) % SHAPES.length]!);
      i++;
      test(`${dtype} ${variant} forward+backward, y shapes ${shapes.map((s) => s.join("x")).join(", ")} (x2 last)`, () => {
        for (const s of shapes) checkGlu(device(), variant, dtype, s.slice(0, -1), s[s.length - 1]!, dtype);
      });
    }
    if (dtype !== "float32") {
      test(`${dtype} weightedSwiglu with float32 token weights`, () => {
        checkGlu(device(), "weightedBiasSwiglu", dtype, [45], 37, "float32");
        checkGlu(device(), "weightedSwiglu", dtype, [4, 8], 16, "float32");
      });
    }
  }

  test("glu() allocates out [..., N] and matches swiglu()", () => {
    const dev = device();
    const y = randn([4, 3, 10], "float32", dev);
    const a = glu(y);
    const b = swiglu(y);
    expect(a.shape).toEqual([4, 3, 5]);
    expect(a.toFloat32()).toEqual(b.toFloat32());
    const ref = gluForwardRef({ y: f64(y), M: 12, N: 5 });
    expect(a.toFloat32()).toBeAllClose(ref, { rtol: RTOL.float32 });
    disposeAll(y, a, b);
  });

  test("strided y (a column slice of a wider buffer)", () => {
    const dev = device();
    const wide = randn([9, 40], "float32", dev);
    const y = wide.slice(1, 4, 22); // [9, 22], row stride 40
    const out = swiglu(y);
    expect(out.toFloat32()).toBeAllClose(gluForwardRef({ y: f64(y), M: 9, N: 11 }), { rtol: RTOL.float32 });
    disposeAll(wide, y, out);
  });
});
