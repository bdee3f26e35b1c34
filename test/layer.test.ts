// SwiGLU layer: init range, every layout, grads vs the reference, accumulation across backward
// calls, zeroGrad, parameters, dispose.
import { expect, test } from "bun:test";
import { LAYOUTS } from "../src/layouts.ts";
import { SwiGLU } from "../src/layer.ts";
import { disposeAll, f64, forEachBackend, randn, RTOL } from "./helpers.ts";
import { swigluBackwardRef, swigluBackwardScaleRef, swigluForwardRef } from "./reference.ts";

forEachBackend("SwiGLU layer", (device) => {
  test("nn.Linear-style init: weights and biases in (-1/sqrt(in), 1/sqrt(in)), deterministic per seed", () => {
    const dev = device();
    const layer = new SwiGLU({ inFeatures: 64, hiddenFeatures: 48, bias: true, device: dev, seed: 3, layout: "linear" });
    const bound = 1 / Math.sqrt(64);
    for (const t of layer.parameters()) {
      const v = t.toFloat32();
      expect(v.every((x) => Math.abs(x) <= bound)).toBe(true);
      expect(v.some((x) => x !== 0)).toBe(true);
    }
    const same = new SwiGLU({ inFeatures: 64, hiddenFeatures: 48, bias: true, device: dev, seed: 3, layout: "linear" });
    expect(Array.from(same.wGate.toFloat32())).toEqual(Array.from(layer.wGate.toFloat32()));
    expect(layer.wGate.shape).toEqual([64, 48]);
    expect(layer.parameters().map((t) => t.shape)).toEqual([[96, 64], [48], [48]]);
    expect(Object.keys(layer.namedParameters())).toEqual(["wGate", "wUp", "bGate", "bUp"]);
    layer.dispose();
    same.dispose();
  });

  for (const layout of LAYOUTS) {
    for (const dtype of ["float32", "bfloat16"] as const) {
      test(`${dtype} ${layout}: forward, backward, grads accumulate until zeroGrad`, () => {
        const dev = device();
        const [K, N] = [24, 20];
        const layer = new SwiGLU({ inFeatures: K, hiddenFeatures: N, bias: layout !== "separate", dtype, layout, device: dev, seed: 9 });
        const x = randn([3, 5, K], dtype, dev);
        const z = layer.forward(x);
        const p = {
          x: f64(x), wGate: f64(layer.wGate), wUp: f64(layer.wUp),
          bGate: layer.bGate && f64(layer.bGate), bUp: layer.bUp && f64(layer.bUp), M: 15, K, N,
        };
        expect(z.toFloat32()).toBeAllClose(swigluForwardRef(p).z, { rtol: RTOL[dtype] });
        const dz = randn([3, 5, N], dtype, dev);
        const dx = layer.backward(dz)!;
        const ref = swigluBackwardRef(p, f64(dz));
        const scale = swigluBackwardScaleRef(p, f64(dz));
        expect(dx.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL[dtype], scale: scale.dx });
        const g = layer.grads!;
        expect(g.wGate.toFloat32()).toBeAllClose(ref.dwGate, { rtol: RTOL[dtype], scale: scale.dwGate });
        expect(g.wUp.toFloat32()).toBeAllClose(ref.dwUp, { rtol: RTOL[dtype], scale: scale.dwUp });
        expect(g.wGate.strides).toEqual(layer.wGate.strides);
        if (layer.bGate) expect(g.bGate!.toFloat32()).toBeAllClose(ref.dbGate, { rtol: RTOL[dtype], scale: scale.dbGate });
        else expect(g.bGate).toBeUndefined();
        // A second forward/backward on the same batch doubles the accumulated grads.
        layer.forward(x, { saveForBackward: "input" }).dispose();
        const dx2 = layer.backward(dz)!;
        expect(layer.grads!.wUp).toBe(g.wUp);
        expect(g.wUp.toFloat32()).toBeAllClose(ref.dwUp.map((v) => 2 * v), { rtol: RTOL[dtype], scale: scale.dwUp.map((v) => 2 * v) });
        layer.zeroGrad();
        expect(layer.grads).toBe(null);
        expect(g.wUp.disposed).toBe(true);
        layer.forward(x).dispose();
        const dx3 = layer.backward(dz, { needsInputGrad: false });
        expect(dx3).toBe(null);
        expect(layer.grads!.wGate.toFloat32()).toBeAllClose(ref.dwGate, { rtol: RTOL[dtype], scale: scale.dwGate });
        disposeAll(x, z, dz, dx, dx2);
        layer.dispose();
      });
    }
  }

  test("dispose frees weights and grads; use after dispose throws; dispose twice is a no-op", () => {
    const dev = device();
    const layer = new SwiGLU({ inFeatures: 8, hiddenFeatures: 4, bias: true, device: dev, layout: "packed" });
    const x = randn([2, 8], "float32", dev);
    layer.forward(x).dispose();
    layer.backward(randn([2, 4], "float32", dev))?.dispose();
    const storage = layer.weights.storage.storage;
    const gradStorage = layer.grads!.wGate.storage;
    layer.dispose();
    expect(storage.freed).toBe(true);
    expect(gradStorage.freed).toBe(true);
    expect(() => layer.forward(x)).toThrow("layer was disposed");
    layer.dispose();
    x.dispose();
  });

  test("backward without a saved forward throws", () => {
    const dev = device();
    const layer = new SwiGLU({ inFeatures: 8, hiddenFeatures: 4, device: dev });
    const x = randn([2, 8], "float32", dev);
    layer.forward(x, { saveForBackward: false }).dispose();
    const dz = randn([2, 4], "float32", dev);
    expect(() => layer.backward(dz)).toThrow("nothing was saved");
    disposeAll(x, dz);
    layer.dispose();
  });
});
