// Fused backward: both modes (stored pre-activations, recompute), requested-gradient subsets,
// accumulation into existing gradients, every layout (weight grads laid out like the weights)
// and dtype, against the float64 reference. Outputs are poisoned before each run.
import { expect, test } from "bun:test";
import { disposeWeights, LAYOUTS } from "../src/layouts.ts";
import { backwardWorkspaceSize, fusedSwigluBackward } from "../src/ops.ts";
import { Storage, Tensor } from "../src/tensor.ts";
import { checkBackward, SUBSETS } from "./backward_check.ts";
import { disposeAll, DTYPE_LIST, forEachBackend, poison, randn, randomWeights } from "./helpers.ts";

const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 13, 5], [13, 7, 61], [61, 33, 13], [127, 17, 29], [1, 257, 7], [200, 64, 96], [1500, 24, 40], [64, 129, 65],
];

forEachBackend("fused backward", (device, backend) => {
  let i = 0;
  for (const dtype of DTYPE_LIST) {
    for (const layout of LAYOUTS) {
      for (const mode of ["stored", "recompute"] as const) {
        const subset = SUBSETS[i % SUBSETS.length]!;
        const bias = i % 3 !== 1 || subset === "bias";
        const shapes = [0, 1].map((j) => SHAPES[(2 * i + j) % SHAPES.length]!);
        i++;
        test(`${dtype} ${layout} ${mode} grads=${subset} bias=${bias} shapes ${shapes.map((s) => s.join("x")).join(", ")}`, () => {
          for (const [M, K, N] of shapes) checkBackward(device(), { layout, dtype, mode, subset, bias, lead: [M], K, N });
        });
      }
    }
  }

  for (const dtype of DTYPE_LIST) {
    for (const mode of ["stored", "recompute"] as const) {
      test(`${dtype} ${mode}: accumulates into existing gradients (every layout)`, () => {
        LAYOUTS.forEach((layout, j) => {
          checkBackward(device(), { layout, dtype, mode, subset: "all", bias: j % 2 === 0, lead: [37], K: 23, N: 19, accumulate: true });
        });
      });
    }
    test(`${dtype}: a caller-provided workspace, reused across calls, gives the allocating path's result`, () => {
      const dev = device();
      const [M, K, N] = [45, 37, 29];
      const x = randn([M, K], dtype, dev);
      const dz = randn([M, N], dtype, dev);
      const w = randomWeights("separate", K, N, dtype, dev);
      const workspace = new Storage(dev, backwardWorkspaceSize(x, N));
      workspace.retain();
      const grads = () => [Tensor.empty([M, K], dtype, { device: dev }), Tensor.empty([K, N], dtype, { device: dev })];
      const [dxRef, dwRef] = grads();
      fusedSwigluBackward(dz, x, w.gate, w.up, { dx: dxRef, dwGate: dwRef });
      for (let round = 0; round < 2; round++) {
        const [dx, dw] = grads().map(poison);
        fusedSwigluBackward(dz, x, w.gate, w.up, { dx, dwGate: dw, workspace });
        expect(Array.from(dx!.toRaw())).toEqual(Array.from(dxRef!.toRaw()));
        expect(Array.from(dw!.toRaw())).toEqual(Array.from(dwRef!.toRaw()));
        disposeAll(dx, dw);
      }
      workspace.release();
      expect(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx: dxRef, workspace })).toThrow(/workspace/);
      disposeAll(x, dz, dxRef, dwRef);
      disposeWeights(w);
    });

    test(`${dtype}: rank-3 x [B, S, K], both modes`, () => {
      for (const mode of ["stored", "recompute"] as const) {
        checkBackward(device(), { layout: "packed", dtype, mode, subset: "all", bias: true, lead: [2, 3, 11], K: 29, N: 31 });
      }
    });
  }

  // 16-byte aligned strides (the sm_90a GEMM takes dX and dW): M, K, N not multiples of its
  // 128 x 256 x 64 tiles; weight grads contiguous, halves of a packed [K, 2N] buffer, transposed
  // (nn.Linear [N, K]) or interleaved (no unit stride: scalar stores); with and without accumulate.
  for (const dtype of ["float16", "bfloat16"] as const) {
    for (const accumulate of [false, true]) {
      test(`${dtype}: 16-byte aligned shapes, every layout, accumulate=${accumulate}`, () => {
        LAYOUTS.forEach((layout, j) => {
          const mode = j % 2 === 0 ? "recompute" : "stored";
          checkBackward(device(), { layout, dtype, mode, subset: "all", bias: j % 2 === 1, lead: [136], K: 72, N: 264, accumulate });
        });
      });
    }
  }
  // Split-K (Hopper, the workspace's scratch): outputs of a few tiles over long reductions. dX is
  // [1100, 24] (9 tiles) over 2N = 1040 and dW [24, 520] (3 tiles; 5 of C^T for nn.Linear grads)
  // over M = 1100, so both GEMMs cut K into pieces whose fp32 partials are summed in order.
  test("bfloat16: few output tiles over a long reduction (split-K), every layout", () => {
    LAYOUTS.forEach((layout, j) => {
      const mode = j % 2 === 0 ? "stored" : "recompute";
      checkBackward(device(), { layout, dtype: "bfloat16", mode, subset: "all", bias: true, lead: [1100], K: 24, N: 520, accumulate: j >= 2 });
    });
  });
  test("float16: split-K gives the same bits run to run", () => {
    const dev = device();
    const [M, K, N] = [1100, 24, 520];
    const x = randn([M, K], "float16", dev);
    const dz = randn([M, N], "float16", dev);
    const w = randomWeights("packed", K, N, "float16", dev);
    const run = () => {
      const [dx, dw] = [Tensor.empty([M, K], "float16", { device: dev }), Tensor.empty([K, N], "float16", { device: dev })];
      fusedSwigluBackward(dz, x, w.gate, w.up, { dx, dwGate: dw });
      const bits = [Array.from(dx.toRaw()), Array.from(dw.toRaw())];
      disposeAll(dx, dw);
      return bits;
    };
    expect(run()).toEqual(run());
    disposeAll(x, dz);
    disposeWeights(w);
  });
  // More tiles than an H100 has SMs (17 x 17 tiles of the sm_90a dual GEMM, 289 > 132): each CTA of
  // the persistent grid runs 2-3 tiles, so per-tile barrier phases (the recompute epilogue's dz
  // slab) must turn over correctly.
  test("bfloat16: several tiles per CTA of the persistent grid, both modes", () => {
    for (const mode of ["recompute", "stored"] as const) {
      checkBackward(device(), { layout: "packed", dtype: "bfloat16", mode, subset: "all", bias: true, lead: [2100], K: 8, N: 2056, sharedInputs: 3 });
    }
  });
  // The same over a long K: 7 K stages per tile of the recompute dual GEMM, more than its ring's 4
  // (GPU only: the CPU backend takes ~20 s here and runs the same math in the shape fuzz). Every
  // kernel path reads the same inputs, so the ~25 s float64 reference is computed once.
  test.if(backend.cuda)("float16: several tiles per CTA over a long K, recompute", () => {
    checkBackward(device(), {
      layout: "linear", dtype: "float16", mode: "recompute", subset: "all", bias: true, lead: [520], K: 400, N: 3400, sharedInputs: 1,
    });
  });
});

// Small M (decode-sized batches, issue 5): dW = x^T·dA has a reduction of only M rows and
// dX = dA·Wg^T + dB·Wu^T few output rows over a long reduction (2N >= 1024: gemm_short.cu's
// weight-streaming kernels take it, forced or automatic). Every layout at every M, with dtype,
// mode, bias and accumulate rotating; N = 520 leaves partial reduction steps and column groups.
forEachBackend("fused backward, small M", (device) => {
  [1, 3, 17, 64, 127].forEach((M, iM) => {
    const K = 40 + 4 * (iM % 2);
    test(`M=${M} K=${K} N=520: every layout`, () => {
      LAYOUTS.forEach((layout, j) => {
        const dtype = DTYPE_LIST[(iM + j) % DTYPE_LIST.length]!;
        const mode = (iM + j) % 2 === 0 ? "stored" : "recompute";
        checkBackward(device(), { layout, dtype, mode, subset: "all", bias: j % 2 === 0, lead: [M], K, N: 520, accumulate: (iM + j) % 3 === 1 });
      });
    });
  });
});
