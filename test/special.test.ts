// Special values and degenerate sizes: NaN/Inf propagate like the reference, silu(-1e4) is -0
// (not NaN), M = 0 gives empty results and zero weight/bias gradients.
import { expect, test } from "bun:test";
import { weightGradsLike } from "../src/function.ts";
import { disposeWeights } from "../src/layouts.ts";
import { fusedSwiglu, fusedSwigluBackward, matmul, swiglu, swigluBackward } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, f64, forEachBackend, randn, randomWeights, RTOL } from "./helpers.ts";
import { gemmRef, gluBackwardRef, gluForwardRef, swigluForwardRef } from "./reference.ts";

forEachBackend("special values", (device) => {
  for (const dtype of DTYPE_LIST) {
    test(`${dtype} NaN and ±Inf in x propagate through the fused forward like the reference`, () => {
      const dev = device();
      const [M, K, N] = [6, 8, 5];
      const xs = Float32Array.from(f64(randn([M, K], "float32", dev)));
      xs[1 * K + 3] = NaN; // row 1: all NaN
      xs[3 * K + 0] = Infinity; // row 3: ±Inf / NaN pattern
      xs[4 * K + 2] = -Infinity;
      const x = Tensor.fromFloat32(xs, [M, K], dtype, { device: dev });
      const w = randomWeights("packed", K, N, dtype, dev);
      const z = fusedSwiglu(x, w.gate, w.up);
      const ref = swigluForwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M, K, N });
      const out = z.toFloat32();
      expect(out).toBeAllClose(ref.z, { rtol: RTOL[dtype] });
      expect(Array.from(out.subarray(N, 2 * N)).every(Number.isNaN)).toBe(true);
      expect(Array.from(out.subarray(0, N)).every(Number.isFinite)).toBe(true);
      disposeAll(x, z);
      disposeWeights(w);
    });

    test(`${dtype} NaN and ±Inf through the activation op and its backward`, () => {
      const dev = device();
      const ys = new Float32Array([NaN, 1, Infinity, -Infinity, 2, 3, 0.5, -2, /* row 2 */ 1, -1, 2, 0.25, NaN, Infinity, -Infinity, 4]);
      const y = Tensor.fromFloat32(ys, [2, 8], dtype, { device: dev });
      const out = swiglu(y);
      const ref = gluForwardRef({ y: f64(y), M: 2, N: 4 });
      expect(out.toFloat32()).toBeAllClose(ref, { rtol: RTOL[dtype] });
      const dout = Tensor.fromFloat32([1, 1, 1, 1, 1, 1, 1, 1], [2, 4], dtype, { device: dev });
      const g = swigluBackward(dout, y);
      expect(g.dy.toFloat32()).toBeAllClose(gluBackwardRef({ y: f64(y), M: 2, N: 4 }, f64(dout)).dy, { rtol: RTOL[dtype] });
      disposeAll(y, out, dout, g.dy);
    });

    test(`${dtype} silu(-1e4) is -0, not NaN, and its gradient is finite`, () => {
      const dev = device();
      // gate = -1e4, up = 1 (positive): out = silu(-1e4) * 1 = -0.
      const y = Tensor.fromFloat32([-1e4, -1e4, 1, 2], [1, 4], dtype, { device: dev });
      const out = swiglu(y).toFloat32();
      expect(Object.is(out[0], -0)).toBe(true);
      expect(Object.is(out[1], -0)).toBe(true);
      const dout = Tensor.fromFloat32([1, 1], [1, 2], dtype, { device: dev });
      const g = swigluBackward(dout, y);
      expect(Array.from(g.dy.toFloat32()).every((v) => v === 0)).toBe(true);
      // Fused: a bias of -1e4 drives every gate pre-activation to about -1e4.
      const x = randn([3, 4], dtype, dev, 0.1);
      const w = randomWeights("separate", 4, 5, dtype, dev);
      const bGate = Tensor.full([5], -1e4, dtype, { device: dev });
      const z = fusedSwiglu(x, w.gate, w.up, { bGate }).toFloat32();
      expect(Array.from(z).every((v) => v === 0)).toBe(true);
      disposeAll(y, dout, g.dy, x, bGate);
      disposeWeights(w);
    });
  }

  test("M = 0: empty outputs, no error; weight/bias grads of an empty batch are zero", () => {
    const dev = device();
    const x = Tensor.empty([0, 16], "float32", { device: dev });
    const w = randomWeights("linear", 16, 8, "float32", dev);
    const bGate = randn([8], "float32", dev);
    const bUp = randn([8], "float32", dev);
    const z = fusedSwiglu(x, w.gate, w.up, { bGate, bUp });
    expect(z.shape).toEqual([0, 8]);
    expect(z.toFloat32().length).toBe(0);
    const x3 = Tensor.empty([2, 0, 16], "float32", { device: dev });
    const z3 = fusedSwiglu(x3, w.gate, w.up);
    expect(z3.shape).toEqual([2, 0, 8]);
    const dz = Tensor.empty([0, 8], "float32", { device: dev });
    const dx = Tensor.empty([0, 16], "float32", { device: dev });
    const { dwGate, dwUp } = weightGradsLike(w.gate, w.up);
    dwGate.fill(NaN);
    dwUp.fill(NaN);
    const dbGate = Tensor.full([8], NaN, "float32", { device: dev });
    const dbUp = Tensor.full([8], NaN, "float32", { device: dev });
    fusedSwigluBackward(dz, x, w.gate, w.up, { bGate, bUp, dx, dwGate, dwUp, dbGate, dbUp });
    for (const t of [dwGate, dwUp, dbGate, dbUp]) expect(Array.from(t.toFloat32()).every((v) => v === 0)).toBe(true);
    const y = Tensor.empty([0, 6], "float32", { device: dev });
    const out = swiglu(y);
    expect(out.shape).toEqual([0, 3]);
    const c = matmul(x, w.gate);
    expect(c.shape).toEqual([0, 8]);
    disposeAll(x, bGate, bUp, z, x3, z3, dz, dx, dwGate, dwUp, dbGate, dbUp, y, out, c);
    disposeWeights(w);
  });

  test("N = 1 and K = 1 edge sizes", () => {
    const dev = device();
    const x = randn([5, 1], "float32", dev);
    const w = randomWeights("interleaved", 1, 1, "float32", dev);
    const z = fusedSwiglu(x, w.gate, w.up);
    expect(z.toFloat32()).toBeAllClose(swigluForwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M: 5, K: 1, N: 1 }).z);
    const c = matmul(x, w.gate);
    expect(c.toFloat32()).toBeAllClose(gemmRef(f64(x), f64(w.gate), 5, 1, 1));
    disposeAll(x, z, c);
    disposeWeights(w);
  });
});

forEachBackend("outputs wider than 65535 tiles", (device, backend) => {
  // The sm_80 and gemm_short kernels number their tiles in one dimension (mma_tile.cuh, tile_grid):
  // a grid.y of column tiles capped N at 4.2 M (dual GEMM) and 8.4 M columns (GEMM). The weights
  // are broadcast rows (row stride 0) of one random vector, so the float64 reference is cheap: every
  // pre-activation is a row sum of x times that vector. GPU only (the CPU backend has no grid).
  test.if(backend.cuda)("fused forward with N = 4,300,000; matmul with N = 8,500,000 (bf16)", () => {
    const dev = device();
    const rowSums = (t: Tensor, rows: number, k: number): number[] => {
      const v = f64(t);
      return Array.from({ length: rows }, (_, m) => v.subarray(m * k, (m + 1) * k).reduce((a, b) => a + b, 0));
    };
    const [M, K, N] = [2, 16, 4_300_000];
    const vg = Tensor.randn([N], "bfloat16", { device: dev, seed: 11 });
    const vu = Tensor.randn([N], "bfloat16", { device: dev, seed: 12 });
    const x = randn([M, K], "bfloat16", dev);
    const wg = vg.asStrided([K, N], [0, 1], 0);
    const wu = vu.asStrided([K, N], [0, 1], 0);
    const z = fusedSwiglu(x, wg, wu);
    const [g, u, s] = [f64(vg), f64(vu), rowSums(x, M, K)];
    const zRef = new Float64Array(M * N);
    for (let m = 0; m < M; ++m) {
      for (let n = 0; n < N; ++n) {
        const a = s[m]! * g[n]!;
        zRef[m * N + n] = (a / (1 + Math.exp(-a))) * s[m]! * u[n]!;
      }
    }
    expect(z.toFloat32()).toBeAllClose(zRef, { rtol: RTOL.bfloat16 });
    disposeAll(vg, vu, x, wg, wu, z);

    // K = 64: two K tiles of bf16, so the small-M path takes gemm_short's tiled kernel, not its one-tile one.
    const [M2, K2, N2] = [2, 64, 8_500_000];
    const vb = Tensor.randn([N2], "bfloat16", { device: dev, seed: 13 });
    const a = randn([M2, K2], "bfloat16", dev);
    const b = vb.asStrided([K2, N2], [0, 1], 0);
    const c = matmul(a, b);
    const [v, sa] = [f64(vb), rowSums(a, M2, K2)];
    const cRef = new Float64Array(M2 * N2);
    for (let m = 0; m < M2; ++m) for (let n = 0; n < N2; ++n) cRef[m * N2 + n] = sa[m]! * v[n]!;
    expect(c.toFloat32()).toBeAllClose(cRef, { rtol: RTOL.bfloat16 });
    disposeAll(vb, a, b, c);
  });
});
