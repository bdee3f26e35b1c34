// SwiGLUFunction: forward fills the context, backward returns the requested gradients (vs the
// reference), weight grads share the weights' layout, accumulation, context lifetime.
import { expect, test } from "bun:test";
import type { FloatDType } from "../src/dtype.ts";
import { SwiGLUContext, SwiGLUFunction, type SaveMode } from "../src/function.ts";
import { disposeWeights, LAYOUTS, type Layout } from "../src/layouts.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, f64, forEachBackend, randn, randomWeights, RTOL } from "./helpers.ts";
import { swigluBackwardRef, swigluBackwardScaleRef, swigluForwardRef } from "./reference.ts";

forEachBackend("SwiGLUFunction", (device) => {
  const cases: [Layout, FloatDType, SaveMode][] = LAYOUTS.flatMap((layout, i) => [
    [layout, (["float32", "float16", "bfloat16"] as FloatDType[])[i % 3]!, "preactivations"],
    [layout, (["bfloat16", "float32", "float16"] as FloatDType[])[i % 3]!, "input"],
  ] as [Layout, FloatDType, SaveMode][]);

  for (const [layout, dtype, save] of cases) {
    test(`${dtype} ${layout} save=${save}: forward and every gradient match the reference`, () => {
      const dev = device();
      const [B, S, K, N] = [2, 7, 19, 23];
      const x = randn([B, S, K], dtype, dev);
      const w = randomWeights(layout, K, N, dtype, dev);
      const bGate = randn([N], dtype, dev, 0.5);
      const bUp = randn([N], dtype, dev, 0.5);
      const ctx = new SwiGLUContext();
      const z = SwiGLUFunction.forward(ctx, x, w.gate, w.up, { bGate, bUp, saveForBackward: save });
      expect(ctx.saved).toBe(save);
      expect(ctx.aSaved !== null).toBe(save === "preactivations");
      const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M: B * S, K, N };
      expect(z.shape).toEqual([B, S, N]);
      expect(z.toFloat32()).toBeAllClose(swigluForwardRef(p).z, { rtol: RTOL[dtype] });
      // The context holds its own references: the caller may drop x now.
      x.dispose();
      const dz = randn([B, S, N], dtype, dev);
      const g = SwiGLUFunction.backward(ctx, dz);
      const ref = swigluBackwardRef(p, f64(dz));
      const scale = swigluBackwardScaleRef(p, f64(dz));
      expect(g.dx!.shape).toEqual([B, S, K]);
      for (const k of ["dx", "dwGate", "dwUp", "dbGate", "dbUp"] as const) {
        expect(g[k]!.toFloat32()).toBeAllClose(ref[k], { rtol: RTOL[dtype], scale: scale[k] });
      }
      // Weight grads are laid out like the weights.
      expect(g.dwGate!.strides).toEqual(w.gate.strides);
      expect(g.dwUp!.offset - g.dwGate!.offset).toBe(w.up.offset - w.gate.offset);
      if (layout !== "separate") expect(g.dwGate!.storage).toBe(g.dwUp!.storage);
      // Backward released the context.
      expect(ctx.saved).toBe(false);
      expect(ctx.x).toBe(null);
      disposeAll(z, dz, bGate, bUp, g.dx, g.dwGate, g.dwUp, g.dbGate, g.dbUp);
      disposeWeights(w);
    });
  }

  test("requested subsets: dx only, weights only, biases off; frozen weights get no grads", () => {
    const dev = device();
    const [M, K, N] = [11, 13, 17];
    const x = randn([M, K], "float32", dev);
    const w = randomWeights("packed", K, N, "float32", dev);
    const bGate = randn([N], "float32", dev);
    const bUp = randn([N], "float32", dev);
    const dz = randn([M, N], "float32", dev);
    const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M, K, N };
    const ref = swigluBackwardRef(p, f64(dz));
    const run = (opts: Parameters<typeof SwiGLUFunction.backward>[2]) => {
      const ctx = new SwiGLUContext();
      SwiGLUFunction.forward(ctx, x, w.gate, w.up, { bGate, bUp }).dispose();
      return SwiGLUFunction.backward(ctx, dz, opts);
    };
    const onlyDx = run({ needsWeightGrad: false, needsBiasGrad: false });
    expect(Object.keys(onlyDx)).toEqual(["dx"]);
    expect(onlyDx.dx!.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL.float32 });
    const onlyW = run({ needsInputGrad: false, needsBiasGrad: false });
    expect(Object.keys(onlyW).sort()).toEqual(["dwGate", "dwUp"]);
    expect(onlyW.dwUp!.toFloat32()).toBeAllClose(ref.dwUp, { rtol: RTOL.float32 });
    const onlyB = run({ needsInputGrad: false, needsWeightGrad: false });
    expect(Object.keys(onlyB).sort()).toEqual(["dbGate", "dbUp"]);
    expect(onlyB.dbGate!.toFloat32()).toBeAllClose(ref.dbGate, { rtol: RTOL.float32 });
    for (const g of [onlyDx, onlyW, onlyB]) disposeAll(...Object.values(g));
    disposeAll(x, bGate, bUp, dz);
    disposeWeights(w);
  });

  test("accumulateInto adds to existing gradients (two micro-batches = their sum)", () => {
    const dev = device();
    const [M, K, N] = [9, 12, 10];
    const w = randomWeights("interleaved", K, N, "float32", dev);
    const bGate = randn([N], "float32", dev);
    const bUp = randn([N], "float32", dev);
    const xs = [randn([M, K], "float32", dev), randn([M, K], "float32", dev)];
    const dzs = [randn([M, N], "float32", dev), randn([M, N], "float32", dev)];
    let grads: ReturnType<typeof SwiGLUFunction.backward> | undefined;
    for (let i = 0; i < 2; i++) {
      const ctx = new SwiGLUContext();
      SwiGLUFunction.forward(ctx, xs[i]!, w.gate, w.up, { bGate, bUp, saveForBackward: i === 0 ? "input" : "preactivations" }).dispose();
      const g = SwiGLUFunction.backward(ctx, dzs[i]!, { needsInputGrad: false, accumulateInto: grads });
      if (grads) {
        expect(g.dwGate).toBe(grads.dwGate!); // same tensors, added into
      }
      grads = g;
    }
    const refs = [0, 1].map((i) =>
      swigluBackwardRef({ x: f64(xs[i]!), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M, K, N }, f64(dzs[i]!)));
    for (const k of ["dwGate", "dwUp", "dbGate", "dbUp"] as const) {
      const sum = refs[0]![k].map((v, j) => v + refs[1]![k][j]!);
      expect(grads![k]!.toFloat32()).toBeAllClose(sum, { rtol: RTOL.float32 });
    }
    disposeAll(...Object.values(grads!), bGate, bUp, ...xs, ...dzs);
    disposeWeights(w);
  });

  test("accumulateInto with a missing target starts it at zero", () => {
    const dev = device();
    const [M, K, N] = [5, 6, 7];
    const x = randn([M, K], "float32", dev);
    const w = randomWeights("separate", K, N, "float32", dev);
    const dz = randn([M, N], "float32", dev);
    const dx0 = Tensor.full([M, K], 1, "float32", { device: dev });
    const ctx = new SwiGLUContext();
    SwiGLUFunction.forward(ctx, x, w.gate, w.up).dispose();
    const g = SwiGLUFunction.backward(ctx, dz, { accumulateInto: { dx: dx0 } });
    const ref = swigluBackwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M, K, N }, f64(dz));
    expect(g.dx).toBe(dx0);
    expect(dx0.toFloat32()).toBeAllClose(ref.dx.map((v) => v + 1), { rtol: RTOL.float32 });
    expect(g.dwGate!.toFloat32()).toBeAllClose(ref.dwGate, { rtol: RTOL.float32 });
    disposeAll(x, dz, dx0, g.dwGate, g.dwUp);
    disposeWeights(w);
  });

  test("release: false keeps the context for a second backward; ctx.dispose() is idempotent", () => {
    const dev = device();
    const x = randn([4, 5], "float32", dev);
    const w = randomWeights("linear", 5, 3, "float32", dev);
    const dz = randn([4, 3], "float32", dev);
    const ctx = new SwiGLUContext();
    SwiGLUFunction.forward(ctx, x, w.gate, w.up).dispose();
    const g1 = SwiGLUFunction.backward(ctx, dz, { release: false });
    const g2 = SwiGLUFunction.backward(ctx, dz);
    expect(Array.from(g2.dx!.toFloat32())).toEqual(Array.from(g1.dx!.toFloat32()));
    ctx.dispose();
    ctx.dispose();
    disposeAll(x, dz, ...Object.values(g1), ...Object.values(g2));
    disposeWeights(w);
  });

  test("the backward differentiates the activation the forward ran, whatever the caller changes after", () => {
    const dev = device();
    const x = randn([4, 5], "float32", dev);
    const w = randomWeights("packed", 5, 3, "float32", dev);
    const dz = randn([4, 3], "float32", dev);
    const grads = (mutate: boolean) => {
      const activation = { kind: "gelu" as const };
      const ctx = new SwiGLUContext();
      SwiGLUFunction.forward(ctx, x, w.gate, w.up, { activation, saveForBackward: "input" }).dispose();
      if (mutate) (activation as { kind: string }).kind = "relu";
      return SwiGLUFunction.backward(ctx, dz);
    };
    const kept = grads(false);
    const changed = grads(true);
    expect(Array.from(changed.dx!.toFloat32())).toEqual(Array.from(kept.dx!.toFloat32()));
    disposeAll(x, dz, ...Object.values(kept), ...Object.values(changed));
    disposeWeights(w);
  });
});
