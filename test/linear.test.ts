// linear.test.ts: the linear op (fsg_gemm forward, fsg_linear_backward gradients) and the Linear
// layer against the float64 reference, on every backend: dtypes, bias on/off, odd shapes, the
// nn.Linear [out, in] storage used through its transposed view, gradient subsets, accumulation,
// an empty batch, and bad inputs (the message names the argument; the next call still works).
import { expect, test } from "bun:test";
import type { Device } from "../src/device.ts";
import { Linear, linear, linearBackward, linearGrads } from "../src/linear.ts";
import { Tensor, type FloatDType } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, expectError, f64, forEachBackend, poison, randn, RTOL } from "./helpers.ts";
import { columnSum, gemmRef, transposeRef } from "./reference.ts";

const SHAPES: [number, number, number][] = [[1, 1, 1], [7, 13, 61], [61, 7, 13], [127, 257, 33], [300, 64, 10], [13, 1024, 7]];

/** w as a logical [K, N] view: contiguous [K, N], or the transpose of an nn.Linear [N, K] storage. */
function weightView(dev: Device, K: number, N: number, dtype: FloatDType, transposed: boolean): { store: Tensor; w: Tensor } {
  const store = randn(transposed ? [N, K] : [K, N], dtype, dev, 1 / Math.sqrt(K));
  return { store, w: transposed ? store.t() : store.view() };
}

/** float64 gradients of y = x·w + b given dy (x [M, K], w [K, N], dy [M, N]). */
function gradsRef(x: Float64Array, w: Float64Array, dy: Float64Array, M: number, K: number, N: number) {
  return {
    dx: gemmRef(dy, transposeRef(w, K, N), M, N, K),
    dw: gemmRef(transposeRef(x, M, K), dy, K, M, N),
    dbias: columnSum(dy, M, N),
  };
}

forEachBackend("linear", (device) => {
  let i = 0;
  for (const dtype of DTYPE_LIST) {
    for (const bias of [false, true]) {
      for (const transposed of [false, true]) {
        const [M, K, N] = SHAPES[i++ % SHAPES.length]!;
        const layout = transposed ? "[out, in] storage, transposed view" : "[in, out] contiguous";
        test(`${dtype} ${M}x${K}x${N} bias=${bias} w=${layout}: forward and every gradient`, () => {
          const dev = device();
          const x = randn([M, K], dtype, dev);
          const { store, w } = weightView(dev, K, N, dtype, transposed);
          const b = bias ? randn([N], dtype, dev) : null;
          const y = linear(x, w, { bias: b });
          expect(y.shape).toEqual([M, N]);
          expect(y.toFloat32()).toBeAllClose(gemmRef(f64(x), f64(w), M, K, N, b && f64(b)), { rtol: RTOL[dtype] });

          const dy = randn([M, N], dtype, dev);
          const dx = poison(Tensor.empty([M, K], dtype, { device: dev }));
          const dwStore = poison(Tensor.empty(store.shape, dtype, { device: dev }));
          const dw = transposed ? dwStore.t() : dwStore.view();
          const dbias = poison(Tensor.empty([N], dtype, { device: dev }));
          linearBackward(dy, x, w, { dx, dw, dbias: bias ? dbias : undefined });
          const ref = gradsRef(f64(x), f64(w), f64(dy), M, K, N);
          expect(dx.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL[dtype] });
          expect(dw.toFloat32()).toBeAllClose(ref.dw, { rtol: RTOL[dtype] });
          if (bias) expect(dbias.toFloat32()).toBeAllClose(ref.dbias, { rtol: RTOL[dtype] });
          else expect(dbias.toFloat32().every(Number.isNaN)).toBe(true); // not requested: untouched
          disposeAll(x, store, w, b, y, dy, dx, dwStore, dw, dbias);
        });
      }
    }

    test(`${dtype}: accumulate adds into dx, dw (transposed view) and dbias`, () => {
      const dev = device();
      const [M, K, N] = [37, 45, 29];
      const x = randn([M, K], dtype, dev);
      const { store, w } = weightView(dev, K, N, dtype, true);
      const dy = randn([M, N], dtype, dev);
      const dx = randn([M, K], dtype, dev);
      const dwStore = randn([N, K], dtype, dev);
      const dw = dwStore.t();
      const dbias = randn([N], dtype, dev);
      const before = { dx: f64(dx), dw: f64(dw), dbias: f64(dbias) };
      linearBackward(dy, x, w, { dx, dw, dbias, accumulate: true });
      const ref = gradsRef(f64(x), f64(w), f64(dy), M, K, N);
      const plus = (a: Float64Array, b: Float64Array) => a.map((v, j) => v + b[j]!);
      expect(dx.toFloat32()).toBeAllClose(plus(ref.dx, before.dx), { rtol: RTOL[dtype] });
      expect(dw.toFloat32()).toBeAllClose(plus(ref.dw, before.dw), { rtol: RTOL[dtype] });
      expect(dbias.toFloat32()).toBeAllClose(plus(ref.dbias, before.dbias), { rtol: RTOL[dtype] });
      disposeAll(x, store, w, dy, dx, dwStore, dw, dbias);
    });
  }

  test("linearGrads computes only what is requested; dw takes w's layout", () => {
    const dev = device();
    const [M, K, N] = [19, 23, 11];
    const x = randn([M, K], "float32", dev);
    const { store, w } = weightView(dev, K, N, "float32", true);
    const dy = randn([M, N], "float32", dev);
    const ref = gradsRef(f64(x), f64(w), f64(dy), M, K, N);

    const onlyW = linearGrads(dy, x, w, { needsInputGrad: false });
    expect(Object.keys(onlyW)).toEqual(["dw"]);
    expect(onlyW.dw!.strides).toEqual(w.strides); // [1, K]: an [out, in] gradient seen transposed
    expect(onlyW.dw!.toFloat32()).toBeAllClose(ref.dw, { rtol: RTOL.float32 });

    const onlyX = linearGrads(dy, x, w, { needsWeightGrad: false });
    expect(Object.keys(onlyX)).toEqual(["dx"]);
    expect(onlyX.dx!.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL.float32 });

    const onlyB = linearGrads(dy, x, w, { needsInputGrad: false, needsWeightGrad: false, needsBiasGrad: true });
    expect(Object.keys(onlyB)).toEqual(["dbias"]);
    expect(onlyB.dbias!.toFloat32()).toBeAllClose(ref.dbias, { rtol: RTOL.float32 });
    disposeAll(x, store, w, dy, onlyW.dw, onlyX.dx, onlyB.dbias);
  });

  test("rank-3 x [B, S, K]: y [B, S, N] and dx [B, S, K]", () => {
    const dev = device();
    const [B, S, K, N] = [3, 5, 17, 9];
    const x = randn([B, S, K], "float32", dev);
    const { store, w } = weightView(dev, K, N, "float32", true);
    const y = linear(x, w);
    expect(y.shape).toEqual([B, S, N]);
    expect(y.toFloat32()).toBeAllClose(gemmRef(f64(x), f64(w), B * S, K, N), { rtol: RTOL.float32 });
    const dy = randn([B, S, N], "float32", dev);
    const g = linearGrads(dy, x, w);
    expect(g.dx!.shape).toEqual([B, S, K]);
    const ref = gradsRef(f64(x), f64(w), f64(dy), B * S, K, N);
    expect(g.dx!.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL.float32 });
    expect(g.dw!.toFloat32()).toBeAllClose(ref.dw, { rtol: RTOL.float32 });
    disposeAll(x, store, w, y, dy, g.dx, g.dw);
  });

  test("an empty batch: y is empty, dw and dbias are zero (or untouched when accumulating)", () => {
    const dev = device();
    const [K, N] = [6, 4];
    const x = Tensor.empty([0, K], "float32", { device: dev });
    const { store, w } = weightView(dev, K, N, "float32", false);
    const b = randn([N], "float32", dev);
    const y = linear(x, w, { bias: b });
    expect(y.shape).toEqual([0, N]);
    const dy = Tensor.empty([0, N], "float32", { device: dev });
    const g = linearGrads(dy, x, w, { needsBiasGrad: true });
    expect(Array.from(g.dw!.toFloat32())).toEqual(new Array(K * N).fill(0));
    expect(Array.from(g.dbias!.toFloat32())).toEqual(new Array(N).fill(0));
    const kept = randn([N], "float32", dev);
    const before = Array.from(kept.toFloat32());
    linearBackward(dy, x, w, { dbias: kept, accumulate: true });
    expect(Array.from(kept.toFloat32())).toEqual(before);
    disposeAll(x, store, w, b, y, dy, g.dx, g.dw, g.dbias, kept);
  });

  for (const dtype of DTYPE_LIST) {
    test(`Linear layer (${dtype}): weight [out, in], forward, backward, accumulation, zeroGrad`, () => {
      const dev = device();
      const [M, K, N] = [21, 50, 10];
      const layer = new Linear({ inFeatures: K, outFeatures: N, dtype, device: dev, seed: 7 });
      expect(layer.weight.shape).toEqual([N, K]);
      expect(layer.weightT.shape).toEqual([K, N]);
      expect(layer.weightT.storage).toBe(layer.weight.storage); // a view, not a copy
      const wv = f64(layer.weight);
      const bound = 1 / Math.sqrt(K);
      expect(wv.every((v) => Math.abs(v) <= bound * 1.01)).toBe(true);
      const w = transposeRef(wv, N, K); // logical [K, N]
      const x = randn([M, K], dtype, dev);
      const y = layer.forward(x);
      expect(y.toFloat32()).toBeAllClose(gemmRef(f64(x), w, M, K, N, f64(layer.bias!)), { rtol: RTOL[dtype] });

      const dy = randn([M, N], dtype, dev);
      const ref = gradsRef(f64(x), w, f64(dy), M, K, N);
      const dx = layer.backward(dy)!;
      expect(dx.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL[dtype] });
      expect(layer.grads!.weight.shape).toEqual([N, K]);
      expect(layer.grads!.weight.toFloat32()).toBeAllClose(transposeRef(ref.dw, K, N), { rtol: RTOL[dtype] });
      expect(layer.grads!.bias!.toFloat32()).toBeAllClose(ref.dbias, { rtol: RTOL[dtype] });
      expect(() => layer.backward(dy)).toThrow(/nothing was saved/); // the saved input is released

      // A second forward/backward adds into the gradients; needsInputGrad: false returns null.
      layer.forward(x).dispose();
      expect(layer.backward(dy, { needsInputGrad: false })).toBeNull();
      const twice = (a: Float64Array) => a.map((v) => 2 * v);
      expect(layer.grads!.weight.toFloat32()).toBeAllClose(twice(transposeRef(ref.dw, K, N)), { rtol: RTOL[dtype] });
      expect(layer.grads!.bias!.toFloat32()).toBeAllClose(twice(ref.dbias), { rtol: RTOL[dtype] });
      // A third pass with dx: the weight gradients accumulate, dx is this pass's alone. The block
      // just freed, full of 1000s, is what the allocator hands out next for dx.
      layer.forward(x).dispose();
      Tensor.full([M, K], 1000, dtype, { device: dev }).dispose();
      const dx3 = layer.backward(dy)!;
      expect(dx3.toFloat32()).toBeAllClose(ref.dx, { rtol: RTOL[dtype] });
      expect(layer.grads!.weight.toFloat32()).toBeAllClose(transposeRef(ref.dw, K, N).map((v) => 3 * v), { rtol: RTOL[dtype] });
      dx3.dispose();
      layer.zeroGrad();
      expect(layer.grads).toBeNull();
      expect(layer.parameters().length).toBe(2);
      disposeAll(x, y, dy, dx);
      layer.dispose();
      layer.dispose();
    });
  }

  test("Linear without bias; forward without saving", () => {
    const dev = device();
    const layer = new Linear({ inFeatures: 8, outFeatures: 3, bias: false, device: dev });
    expect(layer.bias).toBeNull();
    expect(layer.parameters().length).toBe(1);
    const x = randn([4, 8], "float32", dev);
    const y = layer.forward(x, { saveForBackward: false });
    expect(y.toFloat32()).toBeAllClose(gemmRef(f64(x), f64(layer.weightT), 4, 8, 3), { rtol: RTOL.float32 });
    expect(() => layer.backward(y)).toThrow(/nothing was saved/);
    disposeAll(x, y);
    layer.dispose();
  });

  test("bad inputs name the argument; the next valid call works", () => {
    const dev = device();
    const [M, K, N] = [5, 7, 3];
    const x = randn([M, K], "float32", dev);
    const { store, w } = weightView(dev, K, N, "float32", true);
    const dy = randn([M, N], "float32", dev);
    const dyBad = randn([M, N + 1], "float32", dev);
    const dyRows = randn([M + 1, N], "float32", dev);
    const wBad = randn([K + 1, N], "float32", dev);
    const dxBad = Tensor.empty([M, K + 1], "float32", { device: dev });
    const dwBad = Tensor.empty([N, K], "float32", { device: dev });
    const dbBad = Tensor.empty([N + 2], "float32", { device: dev });
    const xHalf = randn([M, K], "bfloat16", dev);
    const dw = Tensor.empty([K, N], "float32", { device: dev });

    expectError(() => linearBackward(dyBad, x, w, { dw }), "FSG_ERR_SHAPE", "fsg_linear_backward: dc:", `= ${N}, got ${N + 1}`);
    expectError(() => linearBackward(dyRows, x, w, { dw }), "FSG_ERR_SHAPE", "dc: expected leading dims");
    expectError(() => linearBackward(dy, x, wBad, { dw }), "FSG_ERR_SHAPE", "b: expected dim 0");
    expectError(() => linearBackward(dy, x, w, { dx: dxBad }), "FSG_ERR_SHAPE", "da: expected last dim");
    expectError(() => linearBackward(dy, x, w, { dw: dwBad }), "FSG_ERR_SHAPE", "db: expected dim 0");
    expectError(() => linearBackward(dy, x, w, { dbias: dbBad }), "FSG_ERR_SHAPE", "dbias: expected");
    expectError(() => linearBackward(dy, xHalf, w, { dw }), "FSG_ERR_DTYPE", "b: expected dtype bfloat16");
    expectError(() => linearBackward(dy, x, w, { dw: w }), "FSG_ERR_ALIAS", "db overlaps b");
    expectError(() => linear(x, wBad), "FSG_ERR_SHAPE", "fsg_gemm: b: expected dim 0");
    expectError(() => new Linear({ inFeatures: 0, outFeatures: 3, device: dev }), "FSG_ERR_INVALID_ARGUMENT", "inFeatures");
    expectError(() => new Linear({ inFeatures: 3, outFeatures: 2.5, device: dev }), "FSG_ERR_INVALID_ARGUMENT", "outFeatures");
    const gone = randn([M, K], "float32", dev);
    gone.dispose();
    expectError(() => linearBackward(dy, gone, w, { dw }), "FSG_ERR_INVALID_ARGUMENT", "x");

    linearBackward(dy, x, w, { dw });
    expect(dw.toFloat32()).toBeAllClose(gradsRef(f64(x), f64(w), f64(dy), M, K, N).dw, { rtol: RTOL.float32 });
    disposeAll(x, store, w, dy, dyBad, dyRows, wBad, dxBad, dwBad, dbBad, xHalf, dw);
  });
});
