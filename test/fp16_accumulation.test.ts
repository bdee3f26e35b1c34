// fp16 accumulation (Device.fp16Accumulation, fattorib's FastAccumFusedSwiGLU): the setting on
// every backend; float16 forward, backward and GEMMs with it allowed, over every layout, against
// the float64 reference within fp16 accumulation's error bound; bfloat16 and float32 calls left
// bit for bit as they were; and on the sm_80 kernels, proof that the f16 accumulators run.
import { expect, test } from "bun:test";
import { Device } from "../src/device.ts";
import { check, Status } from "../src/errors.ts";
import { lib } from "../src/ffi.ts";
import { disposeWeights, LAYOUTS } from "../src/layouts.ts";
import { linearGrads } from "../src/linear.ts";
import { fusedSwiglu, matmul } from "../src/ops.ts";
import type { Tensor } from "../src/tensor.ts";
import { checkBackward } from "./backward_check.ts";
import { checkForward } from "./forward_check.ts";
import { disposeAll, expectError, f64, forEachBackend, randn, randomWeights, RTOL } from "./helpers.ts";
import { gemmRef, swigluForwardRef, transposeRef } from "./reference.ts";
import { compare } from "./setup.ts";

/**
 * The worst case of a sum of k products accumulated in fp16, relative to sum |products|: one
 * rounding to fp16 (under 2^-10 relative: one ulp, so rounding toward zero is covered too) per 16 terms,
 * on top of the usual float16 tolerance for the output's own rounding.
 */
const accumulationRtol = (k: number): number => RTOL.float16 + Math.ceil(k / 16) * 2 ** -10;

const abs = (a: Float64Array): Float64Array => a.map(Math.abs);

/** run() with fp16 accumulation off, then allowed; the device is left with it off. */
function offAndOn<R>(dev: Device, run: () => R): [R, R] {
  dev.fp16Accumulation = false;
  const off = run();
  dev.fp16Accumulation = true;
  try {
    return [off, run()];
  } finally {
    dev.fp16Accumulation = false;
  }
}

const sameBytes = (a: Tensor, b: Tensor): boolean => Bun.deepEquals(a.toRaw(), b.toRaw());

/** [M, K, N]: 1, primes, tile remainders; reductions kept short so the bound stays tight. */
const SHAPES: [number, number, number][] = [[1, 1, 1], [13, 61, 7], [127, 61, 257], [65, 129, 63], [257, 127, 61], [16, 257, 96]];

forEachBackend("fp16 accumulation", (device, backend) => {
  const allowed = (): Device => {
    const dev = device();
    dev.fp16Accumulation = true;
    return dev;
  };

  test("off by default; toggles; Device.open takes it; bad values are typed errors naming the argument", () => {
    const dev = device();
    dev.fp16Accumulation = false;
    expect(dev.fp16Accumulation).toBe(false);
    dev.fp16Accumulation = true;
    expect(dev.fp16Accumulation).toBe(true);
    dev.fp16Accumulation = false;
    expect(dev.fp16Accumulation).toBe(false);
    expectError(() => { (dev as { fp16Accumulation: unknown }).fp16Accumulation = 1; }, "FSG_ERR_INVALID_ARGUMENT", "fp16Accumulation", "boolean");
    expect(lib.fsg_context_set_fp16_accumulation(dev.handle, 2)).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
    expectError(() => check(lib.fsg_context_set_fp16_accumulation(dev.handle, -1), "fsg_context_set_fp16_accumulation"),
      "FSG_ERR_INVALID_ARGUMENT", "allow", "-1");
    expectError(() => check(lib.fsg_context_fp16_accumulation(dev.handle, 0n), "fsg_context_fp16_accumulation"),
      "FSG_ERR_INVALID_ARGUMENT", "out_allow");
    expect(dev.fp16Accumulation).toBe(false);

    const fresh = Device.open({ backend: dev.backend, fp16Accumulation: true });
    expect(fresh.fp16Accumulation).toBe(true);
    fresh.dispose();
    expectError(() => fresh.fp16Accumulation, "FSG_ERR_INVALID_ARGUMENT", "disposed");
    expectError(() => Device.open({ backend: dev.backend, fp16Accumulation: "yes" as unknown as boolean }), "FSG_ERR_INVALID_ARGUMENT", "fp16Accumulation");
  });

  test("float16 forward over every layout, biases and saves alternating, within the fp16-accumulation bound", () => {
    const dev = allowed();
    SHAPES.forEach(([M, K, N], i) => {
      LAYOUTS.forEach((layout, l) => {
        checkForward(dev, { layout, dtype: "float16", bias: (i + l) % 2 === 0, lead: [M], K, N, preactivations: (i + l) % 3 === 0, scaledRtol: accumulationRtol(K) });
      });
    });
  });

  for (const mode of ["stored", "recompute"] as const) {
    test(`float16 ${mode} backward over every layout, within the fp16-accumulation bound`, () => {
      const dev = allowed();
      SHAPES.forEach(([M, K, N], i) => {
        LAYOUTS.forEach((layout, l) => {
          // dX reduces over 2N, dW over M, the forward over K.
          const scaledRtol = accumulationRtol(Math.max(K, 2 * N, M));
          checkBackward(dev, { layout, dtype: "float16", mode, subset: "all", bias: (i + l) % 2 === 0, lead: [M], K, N, accumulate: l === 1, scaledRtol });
        });
      });
    });
  }

  test("float16 matmul and linear backward (nn.Linear weight), within the fp16-accumulation bound", () => {
    const dev = allowed();
    for (const [M, K, N] of SHAPES) {
      const x = randn([M, K], "float16", dev);
      const wStored = randn([N, K], "float16", dev, 1 / Math.sqrt(K)); // [out, in]
      const w = wStored.t();
      const bias = randn([N], "float16", dev, 0.5);
      const dy = randn([M, N], "float16", dev);
      const y = matmul(x, w, { bias });
      const g = linearGrads(dy, x, w, { needsBiasGrad: true });
      try {
        const [xs, ws, bs, dys] = [f64(x), f64(w), f64(bias), f64(dy)];
        expect(y.toFloat32()).toBeAllClose(gemmRef(xs, ws, M, K, N, bs), { rtol: accumulationRtol(K), scale: gemmRef(abs(xs), abs(ws), M, K, N, abs(bs)) });
        const wt = transposeRef(ws, K, N);
        expect(g.dx!.toFloat32()).toBeAllClose(gemmRef(dys, wt, M, N, K), { rtol: accumulationRtol(N), scale: gemmRef(abs(dys), abs(wt), M, N, K) });
        const xt = transposeRef(xs, M, K);
        expect(g.dw!.toFloat32()).toBeAllClose(gemmRef(xt, dys, K, M, N), { rtol: accumulationRtol(M), scale: gemmRef(abs(xt), abs(dys), K, M, N) });
        const dbias = gemmRef(new Float64Array(M).fill(1), dys, 1, M, N);
        expect(g.dbias!.toFloat32()).toBeAllClose(dbias, { rtol: accumulationRtol(M), scale: gemmRef(new Float64Array(M).fill(1), abs(dys), 1, M, N) });
      } finally {
        disposeAll(x, wStored, bias, dy, y, g.dx, g.dw, g.dbias);
      }
    }
  });

  for (const dtype of ["bfloat16", "float32"] as const) {
    test(`${dtype} calls ignore it: bit for bit the result without it`, () => {
      const dev = device();
      const [M, K, N] = [67, 300, 45];
      const x = randn([M, K], dtype, dev);
      const w = randomWeights("packed", K, N, dtype, dev);
      const [off, on] = offAndOn(dev, () => [fusedSwiglu(x, w.gate, w.up), matmul(x, w.gate)]);
      try {
        expect(sameBytes(on[0]!, off[0]!)).toBe(true);
        expect(sameBytes(on[1]!, off[1]!)).toBe(true);
      } finally {
        disposeAll(x, ...off, ...on);
        disposeWeights(w);
      }
    });
  }

  // The CPU backend gains nothing from fp16 sums, so it keeps fp32: the permission changes nothing.
  test.if(!backend.cuda)("the CPU backend keeps fp32 accumulation: float16 results are unchanged", () => {
    const dev = device();
    const [M, K, N] = [33, 1000, 40];
    const x = randn([M, K], "float16", dev);
    const w = randomWeights("linear", K, N, "float16", dev);
    const [off, on] = offAndOn(dev, () => fusedSwiglu(x, w.gate, w.up));
    try {
      expect(sameBytes(on, off)).toBe(true);
    } finally {
      disposeAll(x, off, on);
      disposeWeights(w);
    }
  });

  // On the sm_80 kernels the permission is taken: over K = 1024 the fp16 sums must differ from the
  // fp32 ones and err more (fp32 accumulation leaves only the output's rounding), yet stay in bound.
  test.if(backend.label.includes("sm_80"))("the sm_80 kernels accumulate in fp16: results change and err more, within the bound", () => {
    const dev = device();
    const [M, K, N] = [256, 1024, 256];
    const x = randn([M, K], "float16", dev);
    const w = randomWeights("packed", K, N, "float16", dev);
    const [off, on] = offAndOn(dev, () => [fusedSwiglu(x, w.gate, w.up), matmul(x, w.up)] as const);
    try {
      const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M, K, N };
      const ref = swigluForwardRef(p);
      for (const [i, want] of [ref.z, ref.b].entries()) {
        expect(sameBytes(on[i]!, off[i]!)).toBe(false);
        const err16 = compare(on[i]!.toFloat32(), want).rel;
        const err32 = compare(off[i]!.toFloat32(), want).rel;
        expect(err16).toBeGreaterThan(err32);
        expect(err16).toBeLessThan(accumulationRtol(K));
      }
    } finally {
      disposeAll(x, ...off, ...on);
      disposeWeights(w);
    }
  });
});
