// Fused forward: shape fuzz x every layout x every dtype x bias on/off, rank-3 inputs, stored
// pre-activations, the unfused baseline, against the float64 reference.
import { expect, test } from "bun:test";
import { disposeWeights, LAYOUTS } from "../src/layouts.ts";
import { fusedSwiglu, unfusedSwiglu } from "../src/ops.ts";
import { checkForward } from "./forward_check.ts";
import { disposeAll, DTYPE_LIST, f64, forEachBackend, randn, randomWeights, RTOL } from "./helpers.ts";
import { swigluForwardRef } from "./reference.ts";

/** [M, K, N]: 1, primes, non-multiples of any tile, and a few large dims. */
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 13], [7, 13, 1], [13, 61, 7], [61, 127, 13], [127, 61, 257], [257, 127, 61],
  [64, 64, 64], [65, 129, 63], [2000, 32, 48], [16, 1024, 96], [8, 64, 2048], [256, 384, 320],
];

forEachBackend("fused forward", (device, backend) => {
  let i = 0;
  for (const dtype of DTYPE_LIST) {
    for (const layout of LAYOUTS) {
      for (const bias of [false, true]) {
        const shapes = [0, 1, 2].map((j) => SHAPES[(3 * i + j) % SHAPES.length]!);
        i++;
        test(`${dtype} ${layout} bias=${bias} shapes ${shapes.map((s) => s.join("x")).join(", ")}`, () => {
          for (const [M, K, N] of shapes) checkForward(device(), { layout, dtype, bias, lead: [M], K, N });
        });
      }
    }
  }

  for (const dtype of DTYPE_LIST) {
    test(`${dtype} rank-3 x [B, S, K] over every layout, pre-activations stored`, () => {
      LAYOUTS.forEach((layout, j) => {
        checkForward(device(), { layout, dtype, bias: j % 2 === 0, lead: [3, 17], K: 61, N: 37, preactivations: true });
      });
    });
  }

  // Decode sizes M = 17..256 with K and N multiples of 8 (rows TMA can address): on Hopper the
  // swap-AB kernel (small_m_sm90.cu) takes these; every layout, biases and saves alternating.
  const DECODE: [number, number, number][] = [[17, 136, 72], [33, 264, 136], [61, 200, 200], [127, 72, 264], [128, 136, 64], [200, 64, 136], [256, 72, 96]];
  for (const dtype of ["bfloat16", "float16"] as const) {
    test(`${dtype} decode sizes M = ${DECODE.map((s) => s[0]).join(", ")} over every layout`, () => {
      DECODE.forEach(([M, K, N], j) => {
        LAYOUTS.forEach((layout, l) => {
          checkForward(device(), { layout, dtype, bias: (j + l) % 2 === 0, lead: [M], K, N, preactivations: (j + l) % 3 === 0 });
        });
      });
    });
  }

  // Few rows (decode), where the CPU backend streams row-major weights instead of packing them
  // (cpu/gemm.cpp, stream_step): 16-column blocks plus a ragged tail, K not a multiple of the
  // 4-row step nor of the 256-row K step, 1..16 rows; every layout, so the blocked path (nn.Linear,
  // interleaved) is compared too.
  const FEW_ROWS: [number, number, number][] = [[5, 67, 37], [16, 131, 50], [3, 4099, 33], [1, 258, 64]];
  for (const dtype of DTYPE_LIST) {
    test(`${dtype} few rows (${FEW_ROWS.map((s) => s.join("x")).join(", ")}) over every layout`, () => {
      FEW_ROWS.forEach(([M, K, N], j) => {
        LAYOUTS.forEach((layout, l) => {
          checkForward(device(), { layout, dtype, bias: (j + l) % 2 === 1, lead: [M], K, N, preactivations: (j + l) % 2 === 0 });
        });
      });
    });
  }

  // Long K and more tiles than SMs: on Hopper the sm_90a dual GEMM (128 x 128 tiles, 2-CTA
  // clusters: 3 x 27 units for 66 cluster slots) runs two units on some clusters, each over more K
  // stages (9) than its ring holds (4), so every ring slot turns over several phases per tile.
  // A GPU kernel's structure: the CPU backend (seconds per case) runs the same math in the fuzz above.
  for (const dtype of ["bfloat16", "float16"] as const) {
    test.if(backend.cuda)(`${dtype} several tiles per CTA over a long K, pre-activations stored`, () => {
      for (const layout of ["packed", "linear"] as const) {
        // The same inputs on every kernel path: one float64 reference per layout and dtype.
        checkForward(device(), { layout, dtype, bias: true, lead: [520], K: 520, N: 3400, preactivations: true, sharedInputs: 2 });
      }
    });
  }

  test("allocates z [..., N] when no out is given", () => {
    const dev = device();
    const x = randn([2, 5, 7], "float32", dev);
    const w = randomWeights("packed", 7, 11, "float32", dev);
    const z = fusedSwiglu(x, w.gate, w.up);
    expect(z.shape).toEqual([2, 5, 11]);
    expect(z.dtype).toBe("float32");
    const ref = swigluForwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M: 10, K: 7, N: 11 });
    expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL.float32 });
    disposeAll(x, z);
    disposeWeights(w);
  });

  for (const dtype of DTYPE_LIST) {
    test(`${dtype} unfused baseline (two GEMMs + activation) matches the reference`, () => {
      const dev = device();
      for (const [lead, K, N, layout] of [[[33], 64, 48, "linear"], [[2, 9], 31, 17, "interleaved"]] as const) {
        const M = lead.reduce((a: number, b: number) => a * b, 1);
        const x = randn([...lead, K], dtype, dev);
        const w = randomWeights(layout, K, N, dtype, dev);
        const bGate = randn([N], dtype, dev, 0.5);
        const bUp = randn([N], dtype, dev, 0.5);
        const z = unfusedSwiglu(x, w.gate, w.up, { bGate, bUp });
        expect(z.shape).toEqual([...lead, N]);
        const ref = swigluForwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M, K, N });
        expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL[dtype] });
        disposeAll(x, bGate, bUp, z);
        disposeWeights(w);
      }
    });
  }
});
