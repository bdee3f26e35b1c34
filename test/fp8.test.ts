// fp8 storage of what backward keeps (issue "GLU variants and memory options"): the e4m3/e8m0
// codecs, fsg_quantize_fp8 / fsg_dequantize_fp8 byte for byte against a host model of the rules in
// fused_swiglu.h, the fused forward's fp8 saves (written by the kernel epilogue), the backward from
// fp8 saves and the activation op's backward from an fp8 input, on every backend, plus bad input.
import { describe, expect, test } from "bun:test";
import { DTYPES, e4m3BitsToF32, f32ToE4m3Bits, roundTo, type DType } from "../src/dtype.ts";
import { dequantizeFp8, disposeFp8, emptyFp8, fp8Bytes, fp8ScaleShape, quantizeFp8 } from "../src/fp8.ts";
import { SwiGLUContext, SwiGLUFunction } from "../src/function.ts";
import { disposeWeights, type Layout } from "../src/layouts.ts";
import { fusedSwiglu, swigluBackward } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, expectError, f64, forEachBackend, randn, randomValues, randomWeights, RTOL } from "./helpers.ts";
import { gluBackwardRef, swigluBackwardFromPreactivationsRef, swigluBackwardRef, swigluForwardRef } from "./reference.ts";

// ---- host model of the encoding (fused_swiglu.h, "fp8 storage") ----

/** The smallest s with amax <= 448 * 2^s (clamped to e8m0's range); NaN/Inf -> null (scale byte 0xFF). */
function scaleExponent(amax: number): number | null {
  if (!Number.isFinite(amax)) return null;
  if (amax === 0) return 0;
  let s = Math.ceil(Math.log2(amax / 448));
  // log2 rounding can be one off at exact powers: fix up with exact comparisons.
  while (amax > 448 * 2 ** s) s++;
  while (amax <= 448 * 2 ** (s - 1)) s--;
  return Math.max(-127, Math.min(127, s));
}

/** Expected (data, scale) bytes of one row of float32 values. */
function quantizeRowRef(v: ArrayLike<number>, n: number): { data: number[]; scale: number[] } {
  const data: number[] = [];
  const scale: number[] = [];
  for (let c0 = 0; c0 < n; c0 += 32) {
    let amax = 0;
    for (let c = c0; c < Math.min(n, c0 + 32); c++) {
      const a = Math.abs(v[c]!);
      amax = Number.isNaN(a) || Number.isNaN(amax) ? NaN : Math.max(amax, a);
    }
    const s = scaleExponent(amax);
    scale.push(s === null ? 0xff : s + 127);
    for (let c = c0; c < Math.min(n, c0 + 32); c++) data.push(s === null ? 0x7f : f32ToE4m3Bits(Math.fround(v[c]! * 2 ** -s)));
  }
  return { data, scale };
}

const decodeBlock = (q: number, s: number): number => (s === 0xff ? NaN : e4m3BitsToF32(q) * 2 ** (s - 127));

/** Dequantized values of an fp8 pair as float64, row-major. */
function dequantRef(data: Uint8Array, scale: Uint8Array, rows: number, n: number): Float64Array {
  const out = new Float64Array(rows * n);
  const sc = Math.ceil(n / 32);
  for (let r = 0; r < rows; r++) for (let c = 0; c < n; c++) out[r * n + c] = decodeBlock(data[r * n + c]!, scale[r * sc + (c >> 5)]!);
  return out;
}

const bytesOf = (t: Tensor): Uint8Array => t.toRaw() as Uint8Array;

describe("fp8 codecs (host)", () => {
  test("e4m3: every code round-trips, midpoints round to even, saturation at 448, NaN", () => {
    for (let c = 0; c < 256; c++) {
      if ((c & 0x7f) === 0x7f) continue;
      expect(f32ToE4m3Bits(e4m3BitsToF32(c))).toBe(c);
    }
    expect(e4m3BitsToF32(0x7e)).toBe(448);
    expect(e4m3BitsToF32(0x01)).toBe(2 ** -9);
    expect(f32ToE4m3Bits(1.0625)).toBe(0x38); // halfway between 1 and 1.125: even (1)
    expect(f32ToE4m3Bits(1.1875)).toBe(0x3a); // halfway between 1.125 and 1.25: even (1.25)
    expect(f32ToE4m3Bits(460)).toBe(0x7e);
    expect(f32ToE4m3Bits(-1e9)).toBe(0xfe);
    expect(f32ToE4m3Bits(Infinity)).toBe(0x7e);
    expect(f32ToE4m3Bits(NaN)).toBe(0x7f);
    expect(Number.isNaN(e4m3BitsToF32(0xff))).toBe(true);
    expect(f32ToE4m3Bits(2 ** -11)).toBe(0); // a quarter of the subnormal step 2^-9: zero
    expect(f32ToE4m3Bits(2 ** -10)).toBe(0); // half a step: to even (zero)
    expect(f32ToE4m3Bits(3 * 2 ** -10)).toBe(0x02); // 1.5 steps: to even (2 steps)
    expect(f32ToE4m3Bits(15 * 2 ** -10)).toBe(0x08); // 7.5 steps: up to 2^-6, the smallest normal
  });

  test("scale rule: the largest value of a block lands in (224, 448]", () => {
    for (const amax of [1e-30, 0.001, 1, 1.75, 1.7500001, 224, 448, 449, 3e38]) {
      const s = scaleExponent(amax)!;
      expect(amax / 2 ** s).toBeLessThanOrEqual(448);
      if (s > -127) expect(amax / 2 ** s).toBeGreaterThan(224);
    }
  });
});

const QUANT_SHAPES: [number, number][] = [[1, 1], [3, 31], [5, 33], [17, 77], [64, 200], [2, 1025]];

forEachBackend("fp8 quantize / dequantize", (device) => {
  for (const dtype of DTYPE_LIST) {
    test(`${dtype}: bytes match the host model; decode is exact`, () => {
      const dev = device();
      for (const [M, C] of QUANT_SHAPES) {
        // Rows of very different magnitudes, an outlier, a zero block and a NaN/Inf block.
        const values = randomValues(M * C);
        for (let r = 0; r < M; r++) for (let c = 0; c < C; c++) values[r * C + c]! *= 10 ** ((r % 7) - 3);
        if (C > 40) values[5] = 3e4;
        if (M > 2 && C >= 32) for (let c = 0; c < 32; c++) values[C + c] = 0;
        if (M > 3 && C > 40) values[3 * C + 40] = NaN;
        if (M > 4 && C > 70) values[4 * C + 70] = -Infinity;
        const src = Tensor.fromFloat32(values, [M, C], dtype, { device: dev });
        const q = quantizeFp8(src);
        try {
          expect(q.scale.shape).toEqual(fp8ScaleShape([M, C]));
          const host = src.toFloat32();
          const data = bytesOf(q.data), scale = bytesOf(q.scale);
          for (let r = 0; r < M; r++) {
            const want = quantizeRowRef(host.subarray(r * C, (r + 1) * C), C);
            expect(Array.from(data.subarray(r * C, (r + 1) * C))).toEqual(want.data);
            expect(Array.from(scale.subarray(r * q.scale.shape[1]!, (r + 1) * q.scale.shape[1]!))).toEqual(want.scale);
          }
          const back = dequantizeFp8(q, { dtype });
          // As plain arrays: NaN equals NaN whatever its sign bit.
          expect(Array.from(back.toFloat32())).toEqual(Array.from(roundTo(dtype, dequantRef(data, scale, M, C))));
          back.dispose();
        } finally {
          disposeAll(src);
          disposeFp8(q);
        }
      }
    });
  }

  test("a [..., C] tensor with leading dims", () => {
    const dev = device();
    const src = randn([2, 3, 40], "bfloat16", dev, 5);
    const q = quantizeFp8(src);
    expect(q.scale.shape).toEqual([2, 3, 2]);
    const back = dequantizeFp8(q, { dtype: "float32" });
    expect(back.toFloat32()).toBeAllClose(f64(src), { rtol: 0.05 });
    disposeAll(src, back);
    disposeFp8(q);
  });
});

// ---- the fused forward's fp8 saves and the backward from them ----

interface FusedCase {
  M: number;
  K: number;
  N: number;
  layout: Layout;
  bias: boolean;
}

const FUSED_CASES: FusedCase[] = [
  { M: 1, K: 19, N: 1, layout: "separate", bias: true },
  { M: 37, K: 64, N: 45, layout: "linear", bias: false },
  { M: 130, K: 33, N: 200, layout: "packed", bias: true },
  { M: 257, K: 72, N: 97, layout: "separate", bias: true },
  // fp8 rows of a multiple of 16 bytes: the sm_90a epilogue stages the codes for TMA stores (a
  // partial last column tile, a 1-row last row tile); the cases above take its register path.
  { M: 200, K: 96, N: 160, layout: "packed", bias: false },
  { M: 129, K: 64, N: 336, layout: "linear", bias: true },
];

forEachBackend("fused SwiGLU with fp8 saves", (device) => {
  for (const dtype of DTYPE_LIST) {
    test(`${dtype}: the saved blocks follow the rule, backward matches the reference on them`, () => {
      const dev = device();
      for (const c of FUSED_CASES) {
        const { M, K, N } = c;
        const x = randn([M, K], dtype, dev);
        const w = randomWeights(c.layout, K, N, dtype, dev);
        const bGate = c.bias ? randn([N], dtype, dev, 0.5) : null;
        const bUp = c.bias ? randn([N], dtype, dev, 0.5) : null;
        const dz = randn([M, N], dtype, dev);
        const ctx = new SwiGLUContext();
        try {
          const z = SwiGLUFunction.forward(ctx, x, w.gate, w.up, { bGate, bUp, saveForBackward: "preactivations-fp8" });
          expect(ctx.aSaved!.dtype).toBe("float8_e4m3fn");
          expect(ctx.savedBytes).toBe(2 * fp8Bytes([M, N]));
          const inputs = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: bGate && f64(bGate), bUp: bUp && f64(bUp), M, K, N };
          const ref = swigluForwardRef(inputs);
          expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL[dtype] * 2 });
          const saved: Float64Array[] = [];
          for (const [t, s, want] of [[ctx.aSaved!, ctx.aScale!, ref.a], [ctx.bSaved!, ctx.bScale!, ref.b]] as const) {
            const data = bytesOf(t), scale = bytesOf(s);
            const deq = dequantRef(data, scale, M, N);
            saved.push(deq);
            const sc = Math.ceil(N / 32);
            for (let r = 0; r < M; r++) {
              for (let b0 = 0; b0 < N; b0 += 32) {
                let amax = 0;
                for (let j = b0; j < Math.min(N, b0 + 32); j++) amax = Math.max(amax, Math.abs(want[r * N + j]!));
                const sExp = scale[r * sc + (b0 >> 5)]! - 127;
                const sRef = scaleExponent(amax)!;
                // The kernel's fp32 value may sit on the other side of a power-of-two boundary.
                if (sExp !== sRef) expect(Math.abs(amax / (448 * 2 ** Math.min(sExp, sRef)) - 1)).toBeLessThan(1e-3);
                for (let j = b0; j < Math.min(N, b0 + 32); j++) {
                  const err = Math.abs(deq[r * N + j]! - want[r * N + j]!);
                  expect(err).toBeLessThanOrEqual(2 ** -4 * Math.abs(want[r * N + j]!) + 2 ** (sExp - 9) + 1e-5 * amax);
                }
              }
            }
          }
          const grads = SwiGLUFunction.backward(ctx, dz);
          const want = swigluBackwardFromPreactivationsRef(inputs, saved[0]!, saved[1]!, f64(dz));
          const exact = swigluBackwardRef(inputs, f64(dz));
          const tol = RTOL[dtype] * 4;
          expect(grads.dx!.toFloat32()).toBeAllClose(want.dx, { rtol: tol });
          expect(grads.dwGate!.toFloat32()).toBeAllClose(want.dwGate, { rtol: tol });
          expect(grads.dwUp!.toFloat32()).toBeAllClose(want.dwUp, { rtol: tol });
          // And within e4m3's error of the exact gradients.
          expect(grads.dx!.toFloat32()).toBeAllClose(exact.dx, { rtol: 0.1 });
          if (c.bias) {
            expect(grads.dbGate!.toFloat32()).toBeAllClose(want.dbGate, { rtol: tol });
            expect(grads.dbUp!.toFloat32()).toBeAllClose(want.dbUp, { rtol: tol });
          }
          disposeAll(z, grads.dx, grads.dwGate, grads.dwUp, grads.dbGate, grads.dbUp);
        } finally {
          ctx.dispose();
          disposeAll(x, bGate, bUp, dz);
          disposeWeights(w);
        }
      }
    });
  }

  test("non-finite rows: every block of the row gets the NaN scale and 0x7F codes, other rows keep theirs", () => {
    const dev = device();
    // A NaN in row 1 of x and an Inf in row M - 2 make every pre-activation of those rows NaN or
    // +-Inf (no weight is 0). Both the register path and the TMA-staged path (N a multiple of 16).
    for (const [M, K, N] of [[7, 19, 45], [130, 64, 160], [67, 72, 336]]) {
      const values = randomValues(M * K);
      values[K + 3] = NaN;
      values[(M - 2) * K + K - 1] = Infinity;
      const x = Tensor.fromFloat32(values, [M, K], "bfloat16", { device: dev });
      const w = randomWeights("packed", K, N, "bfloat16", dev);
      const ctx = new SwiGLUContext();
      try {
        const z = SwiGLUFunction.forward(ctx, x, w.gate, w.up, { saveForBackward: "preactivations-fp8" });
        z.dispose();
        const sc = Math.ceil(N / 32);
        for (const [t, s] of [[ctx.aSaved!, ctx.aScale!], [ctx.bSaved!, ctx.bScale!]] as const) {
          const data = bytesOf(t), scale = bytesOf(s);
          for (const r of [1, M - 2]) {
            expect(Array.from(scale.subarray(r * sc, (r + 1) * sc))).toEqual(new Array(sc).fill(0xff));
            expect(Array.from(data.subarray(r * N, (r + 1) * N))).toEqual(new Array(N).fill(0x7f));
          }
          for (const r of [0, 2, M - 1]) expect(scale.subarray(r * sc, (r + 1) * sc).every((b) => b !== 0xff)).toBe(true);
        }
      } finally {
        ctx.dispose();
        disposeAll(x);
        disposeWeights(w);
      }
    }
  });

  test("activation op: backward from an fp8 copy of y (blocks straddle the gate/up halves)", () => {
    const dev = device();
    // 45 columns: the scalar kernel; 48: the 16-byte kernel, 8 (f32: 4) codes per load, the up half
    // starting mid-block.
    for (const [dtype, M, N] of DTYPE_LIST.flatMap((d) => [[d, 29, 45], [d, 23, 48]] as const)) {
      const y = randn([M, 2 * N], dtype, dev, 2);
      const bias = randn([2 * N], dtype, dev, 0.5);
      const weights = randn([M, 1], "float32", dev);
      const dout = randn([M, N], dtype, dev);
      const q = quantizeFp8(y);
      const r = swigluBackward(dout, q.data, { yScale: q.scale, bias, weights });
      expect(r.dy.dtype).toBe(dtype);
      const yq = dequantRef(bytesOf(q.data), bytesOf(q.scale), M, 2 * N);
      const ref = gluBackwardRef({ y: yq, M, N, bias: f64(bias), weights: f64(weights) }, f64(dout));
      expect(r.dy.toFloat32()).toBeAllClose(ref.dy, { rtol: RTOL[dtype] * 2 });
      expect(r.dbias!.toFloat32()).toBeAllClose(ref.dbias, { rtol: RTOL[dtype] * 4 });
      expect(r.dweights!.toFloat32()).toBeAllClose(ref.dweights, { rtol: RTOL[dtype] * 4 });
      disposeAll(y, bias, weights, dout, r.dy, r.dbias, r.dweights);
      disposeFp8(q);
    }
  });

  test("bad input: typed errors naming the argument", () => {
    const dev = device();
    const M = 4, K = 8, N = 40;
    const x = randn([M, K], "bfloat16", dev);
    const w = randomWeights("separate", K, N, "bfloat16", dev);
    const a = emptyFp8([M, N], dev), b = emptyFp8([M, N], dev);
    const plain = Tensor.empty([M, N], "bfloat16", { device: dev });
    const f = (o: Parameters<typeof fusedSwiglu>[3]) => () => fusedSwiglu(x, w.gate, w.up, o).dispose();
    expectError(f({ aOut: a.data, bOut: b.data, bScale: b.scale }), "FSG_ERR_INVALID_ARGUMENT", "a_out", "a_scale");
    expectError(f({ aOut: plain, aScale: a.scale }), "FSG_ERR_INVALID_ARGUMENT", "a_scale");
    expectError(f({ aScale: a.scale }), "FSG_ERR_INVALID_ARGUMENT", "a_scale", "a_out");
    expectError(f({ aOut: a.data, aScale: a.scale, bOut: plain }), "FSG_ERR_DTYPE", "a_out", "b_out");
    const wrongScale = Tensor.empty([M, 1], "float8_e8m0fnu", { device: dev });
    expectError(f({ aOut: a.data, aScale: wrongScale, bOut: b.data, bScale: b.scale }), "FSG_ERR_SHAPE", "a_scale");
    const f32Scale = Tensor.empty([M, 2], "float32", { device: dev });
    expectError(f({ aOut: a.data, aScale: f32Scale, bOut: b.data, bScale: b.scale }), "FSG_ERR_DTYPE", "a_scale", "float8_e8m0fnu");
    const big = Tensor.empty([N, M], "float8_e4m3fn", { device: dev });
    expectError(f({ aOut: big.t(), aScale: a.scale, bOut: b.data, bScale: b.scale }), "FSG_ERR_LAYOUT", "a_out", "contiguous rows");
    expectError(f({ aOut: a.data, aScale: a.scale, bOut: b.data, bScale: a.scale }), "FSG_ERR_ALIAS", "scale");
    const x8 = Tensor.empty([M, K], "float8_e4m3fn", { device: dev });
    expectError(() => fusedSwiglu(x8, w.gate, w.up), "FSG_ERR_DTYPE", "x", "fp8");
    expectError(() => quantizeFp8(x, { data: plain, scale: a.scale }), "FSG_ERR_INVALID_ARGUMENT", "dst", "float8_e4m3fn");
    expectError(() => dequantizeFp8({ data: a.data, scale: f32Scale }), "FSG_ERR_DTYPE", "scale");
    disposeAll(x, plain, wrongScale, f32Scale, big, x8);
    disposeFp8(a);
    disposeFp8(b);
    disposeWeights(w);
  });
});

test("fp8 dtypes describe themselves in DLPack codes", () => {
  expect(DTYPES.float8_e4m3fn).toEqual({ code: 10, bits: 8, bytes: 1 });
  expect(DTYPES.float8_e8m0fnu).toEqual({ code: 14, bits: 8, bytes: 1 });
  const dt: DType = "float8_e4m3fn";
  expect(dt).toBe("float8_e4m3fn");
});
