// mlp.test.ts: SwiGLUMLP (fused gate/up + the library's GEMM for the down projection) against
// the float64 reference, on every backend, every dtype, several weight layouts, with and
// without the residual; and its argument checks.
import { expect, test } from "bun:test";
import { FusedSwiGLUError } from "../src/errors.ts";
import { weightsIn, type Layout } from "../src/layouts.ts";
import { SwiGLUMLP } from "../src/mlp.ts";
import type { Device } from "../src/device.ts";
import { roundTo } from "../src/dtype.ts";
import { Tensor, type FloatDType } from "../src/tensor.ts";
import { DTYPE_LIST, f64, forEachBackend, nextSeed, randn, randomValues, RTOL } from "./helpers.ts";
import { gemmRef, swigluForwardRef } from "./reference.ts";

/** y = silu(x·Wg) ⊙ (x·Wu) · Wd (+ x), in float64 from the values the device holds. */
function mlpRef(mlp: SwiGLUMLP, x: Tensor, residual: boolean): Float64Array {
  const { K, N } = mlp;
  const M = x.numel / K;
  const xs = f64(x);
  const { z } = swigluForwardRef({ x: xs, wGate: f64(mlp.gate), wUp: f64(mlp.up), M, K, N });
  // The device holds z in the call's dtype between the two kernels.
  const zr = Float64Array.from(roundTo(mlp.dtype, z));
  return gemmRef(zr, f64(mlp.down), M, N, K, null, residual ? xs : null);
}

/** A block whose gate/up live in `layout` with random values. */
function randomMLP(layout: Layout, K: number, N: number, dtype: FloatDType, device: () => Device, residual = false): SwiGLUMLP {
  const d = device();
  const w = weightsIn(layout, K, N, { dtype, device: d });
  w.storage.writeFloat32(randomValues(w.storage.numel, 2 / Math.sqrt(K)));
  w.storage2?.writeFloat32(randomValues(K * N, 2 / Math.sqrt(K)));
  const downStorage = Tensor.fromFloat32(randomValues(K * N, 2 / Math.sqrt(N)), [K, N], dtype, { device: d });
  const down = downStorage.t();
  const owned = [w.gate, w.up, w.storage, downStorage, down, ...(w.storage2 ? [w.storage2] : [])];
  return new SwiGLUMLP({ gate: w.gate, up: w.up, down, residual, owned });
}

forEachBackend("SwiGLUMLP", (device) => {
  for (const dtype of DTYPE_LIST) {
    for (const layout of ["linear", "packed", "separate"] as Layout[]) {
      test(`${dtype}, ${layout} gate/up, [out,in] down: matches the float64 reference`, () => {
        const [M, K, N] = [23, 96, 136];
        using mlp = randomMLP(layout, K, N, dtype, device);
        using x = randn([M, K], dtype, device());
        using y = mlp.forward(x);
        expect(y.shape).toEqual([M, K]);
        expect(y.toFloat32()).toBeAllClose(mlpRef(mlp, x, false), { rtol: 2 * RTOL[dtype] + 1e-5 });
      });
    }

    test(`${dtype}: residual out = x + mlp(x), [B, T, K] input, out option`, () => {
      const [K, N] = [64, 80];
      using mlp = randomMLP("linear", K, N, dtype, device, true);
      using x = randn([2, 5, K], dtype, device());
      using y = mlp.forward(x);
      expect(y.shape).toEqual([2, 5, K]);
      expect(y.toFloat32()).toBeAllClose(mlpRef(mlp, x, true), { rtol: 2 * RTOL[dtype] + 1e-5 });
      using out = Tensor.full([2, 5, K], Number.NaN, dtype, { device: device() });
      mlp.forward(x, { out, residual: false });
      expect(out.toFloat32()).toBeAllClose(mlpRef(mlp, x, false), { rtol: 2 * RTOL[dtype] + 1e-5 });
    });
  }

  test("random(): deterministic for a seed, M = 0 gives an empty result", () => {
    const seed = nextSeed();
    using a = SwiGLUMLP.random({ K: 32, N: 48, device: device(), seed });
    using b = SwiGLUMLP.random({ K: 32, N: 48, device: device(), seed });
    expect(a.gate.toFloat32()).toEqual(b.gate.toFloat32());
    expect(a.down.shape).toEqual([48, 32]);
    using x = Tensor.empty([0, 32], "float32", { device: device() });
    using y = a.forward(x);
    expect(y.shape).toEqual([0, 32]);
  });

  test("bad arguments: wrong K, wrong dtype, mismatched weights, disposed block", () => {
    const d = device();
    const mlp = SwiGLUMLP.random({ K: 32, N: 48, device: d, seed: nextSeed() });
    using wrongK = Tensor.empty([3, 31], "float32", { device: d });
    using wrongDtype = Tensor.empty([3, 32], "bfloat16", { device: d });
    expect(() => mlp.forward(wrongK)).toThrow(/expected \[\.\.\., 32\]/);
    expect(() => mlp.forward(wrongDtype)).toThrow(FusedSwiGLUError);
    using badDown = Tensor.empty([32, 48], "float32", { device: d });
    expect(() => new SwiGLUMLP({ gate: mlp.gate, up: mlp.up, down: badDown })).toThrow(/down: expected \[N, K\] = \[48, 32\]/);
    using badUp = Tensor.empty([32, 47], "float32", { device: d });
    expect(() => new SwiGLUMLP({ gate: mlp.gate, up: badUp, down: mlp.down })).toThrow(/up: expected \[32, 48\]/);
    // An x that cannot be flattened to [M, K] fails before anything is allocated.
    using x3 = Tensor.empty([2, 3, 32], "float32", { device: d });
    const live = d.liveStorages;
    using xt = x3.transpose(0, 1);
    expect(() => mlp.forward(xt)).toThrow(FusedSwiGLUError);
    expect(d.liveStorages).toBe(live);
    using ok = Tensor.empty([3, 32], "float32", { device: d });
    mlp.dispose();
    expect(() => mlp.forward(ok)).toThrow(/disposed/);
  });
});
