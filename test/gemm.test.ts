// fsg_gemm through matmul(): bias on/off, accumulate, transposed (strided) b, rank-3 a, dtypes.
import { expect, test } from "bun:test";
import { matmul } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, f64, forEachBackend, poison, randn, RTOL } from "./helpers.ts";
import { gemmRef } from "./reference.ts";

const SHAPES: [number, number, number][] = [[1, 1, 1], [7, 13, 61], [61, 7, 13], [127, 257, 33], [300, 64, 1000], [13, 1024, 7]];

forEachBackend("gemm", (device) => {
  let i = 0;
  for (const dtype of DTYPE_LIST) {
    for (const bias of [false, true]) {
      for (const accumulate of [false, true]) {
        for (const bT of [false, true]) {
          const [M, K, N] = SHAPES[i++ % SHAPES.length]!;
          test(`${dtype} ${M}x${K}x${N} bias=${bias} accumulate=${accumulate} b=${bT ? "transposed view" : "contiguous"}`, () => {
            const dev = device();
            const a = randn([M, K], dtype, dev);
            const bStore = randn(bT ? [N, K] : [K, N], dtype, dev, 1 / Math.sqrt(K));
            const b = bT ? bStore.t() : bStore.view();
            const bb = bias ? randn([N], dtype, dev) : null;
            const c = accumulate ? randn([M, N], dtype, dev) : poison(Tensor.empty([M, N], dtype, { device: dev }));
            const c0 = accumulate ? f64(c) : null;
            const ret = matmul(a, b, { bias: bb, out: c, accumulate });
            expect(ret).toBe(c);
            const ref = gemmRef(f64(a), f64(b), M, K, N, bb && f64(bb), c0);
            // float32: relative to |a|·|b| + |bias| + |c0| (the accumulation's error scale; the sum
            // itself may cancel to near zero). 16-bit: the output rounding dominates.
            const abs = (v: Float64Array | null) => v && v.map(Math.abs);
            const scale = dtype === "float32" ? gemmRef(abs(f64(a))!, abs(f64(b))!, M, K, N, bb && abs(f64(bb)), abs(c0)) : undefined;
            expect(c.toFloat32()).toBeAllClose(ref, { rtol: RTOL[dtype], scale });
            disposeAll(a, bStore, b, bb, c);
          });
        }
      }
    }
  }

  test("rank-3 a [B, S, K] gives c [B, S, N]; output may be a strided column block", () => {
    const dev = device();
    const a = randn([2, 5, 9], "float32", dev);
    const b = randn([9, 6], "float32", dev);
    const c = matmul(a, b);
    expect(c.shape).toEqual([2, 5, 6]);
    expect(c.toFloat32()).toBeAllClose(gemmRef(f64(a), f64(b), 10, 9, 6), { rtol: RTOL.float32 });
    const a2 = a.reshape([10, 9]);
    const wide = poison(Tensor.empty([10, 20], "float32", { device: dev }));
    const block = wide.slice(1, 7, 6);
    matmul(a2, b, { out: block });
    expect(block.toFloat32()).toBeAllClose(gemmRef(f64(a), f64(b), 10, 9, 6), { rtol: RTOL.float32 });
    // The rest of the wide buffer is untouched (still NaN).
    const all = wide.toFloat32();
    expect(Number.isNaN(all[0]!) && Number.isNaN(all[19]!) && Number.isNaN(all[13]!)).toBe(true);
    disposeAll(a, b, c, a2, wide, block);
  });
});

// Layouts the sm_90a GEMM (wgmma + TMA, gemm_sm90.cu) takes: 16-byte aligned strides, M and N not
// multiples of its 128 x 256 tile, K not a multiple of 64; a and b each K- or MN-contiguous; c
// contiguous, transposed (computed as c^T = b^T·a^T), an aligned column block of a wider buffer,
// or a misaligned one (scalar stores). bias and accumulate rotate over the cases.
const TMA_SHAPES: [number, number, number][] = [[200, 136, 264], [136, 72, 520], [64, 264, 8], [1, 8, 16]];
type COut = "contiguous" | "transposed" | "block" | "misaligned block";
const C_OUTS: COut[] = ["contiguous", "transposed", "block", "misaligned block"];

forEachBackend("gemm, 16-byte aligned layouts", (device) => {
  let i = 0;
  for (const dtype of ["float16", "bfloat16"] as const) {
    for (const aT of [false, true]) {
      for (const bT of [false, true]) {
        for (const cOut of C_OUTS) {
          const [M, K, N] = TMA_SHAPES[i % TMA_SHAPES.length]!;
          const bias = Math.floor(i / 4) % 2 === 0;
          const accumulate = i % 3 === 1;
          i++;
          test(`${dtype} ${M}x${K}x${N} a=${aT ? "[K, M] transposed" : "[M, K]"} b=${bT ? "[N, K] transposed" : "[K, N]"} c=${cOut} bias=${bias} accumulate=${accumulate}`, () => {
            const dev = device();
            const aStore = randn(aT ? [K, M] : [M, K], dtype, dev);
            const a = aT ? aStore.t() : aStore.view();
            const bStore = randn(bT ? [N, K] : [K, N], dtype, dev, 1 / Math.sqrt(K));
            const b = bT ? bStore.t() : bStore.view();
            const bb = bias ? randn([N], dtype, dev) : null;
            const cStore =
              cOut === "transposed" ? Tensor.empty([N, M], dtype, { device: dev })
              : cOut === "block" ? Tensor.empty([M, N + 16], dtype, { device: dev })
              : cOut === "misaligned block" ? Tensor.empty([M, N + 5], dtype, { device: dev })
              : Tensor.empty([M, N], dtype, { device: dev });
            poison(cStore);
            const c = cOut === "transposed" ? cStore.t()
              : cOut === "block" ? cStore.slice(1, 8, N)
              : cOut === "misaligned block" ? cStore.slice(1, 3, N)
              : cStore.view();
            let c0: Float64Array | null = null;
            if (accumulate) {
              const init = randn([M, N], dtype, dev);
              c.writeRaw(init.toRaw());
              init.dispose();
              c0 = f64(c);
            }
            const ret = matmul(a, b, { bias: bb, out: c, accumulate });
            expect(ret).toBe(c);
            const ref = gemmRef(f64(a), f64(b), M, K, N, bb && f64(bb), c0);
            expect(c.toFloat32()).toBeAllClose(ref, { rtol: RTOL[dtype] });
            if (cOut !== "contiguous" && cOut !== "transposed") {
              // The rest of the wide buffer is untouched (still NaN).
              const all = cStore.toFloat32();
              const first = cOut === "block" ? 8 : 3;
              expect(Number.isNaN(all[0]!) && Number.isNaN(all[first - 1]!) && Number.isNaN(all[first + N]!)).toBe(true);
            }
            disposeAll(aStore, a, bStore, b, bb, c, cStore);
          });
        }
      }
    }
  }
});

// Small M (issue 5), the two shapes of the decode backward through fsg_gemm: a long reduction
// into few rows (c [M, N] = a [M, 600] · b, b [K, N] contiguous, the [N, K] transposed view or
// every other column of a wider buffer) and a reduction of only M rows into a large c
// (c [72, 264] = x^T · d, x [M, 72], d [M, 264]; c contiguous or transposed).
forEachBackend("gemm, small M", (device) => {
  [1, 3, 17, 64, 127].forEach((M, iM) => {
    DTYPE_LIST.forEach((dtype, iD) => {
      const bias = (iM + iD) % 2 === 0;
      const accumulate = (iM + iD) % 3 === 1;
      test(`${dtype} M=${M}: long reduction, b [K, N] / [N, K]^T / strided; bias=${bias} accumulate=${accumulate}`, () => {
        const dev = device();
        const [K, N] = [600, 72];
        const a = randn([M, K], dtype, dev);
        for (const bKind of ["contiguous", "transposed", "strided"] as const) {
          const bStore = randn(bKind === "transposed" ? [N, K] : bKind === "strided" ? [K, 2 * N] : [K, N], dtype, dev, 1 / Math.sqrt(K));
          const b = bKind === "transposed" ? bStore.t() : bKind === "strided" ? bStore.asStrided([K, N], [2 * N, 2], 1) : bStore.view();
          const bb = bias ? randn([N], dtype, dev) : null;
          const c = accumulate ? randn([M, N], dtype, dev) : poison(Tensor.empty([M, N], dtype, { device: dev }));
          const c0 = accumulate ? f64(c) : null;
          matmul(a, b, { bias: bb, out: c, accumulate });
          expect(c.toFloat32()).toBeAllClose(gemmRef(f64(a), f64(b), M, K, N, bb && f64(bb), c0), { rtol: RTOL[dtype] });
          disposeAll(bStore, b, bb, c);
        }
        a.dispose();
      });
      test(`${dtype} M=${M}: reduction over M rows (x^T · d), c contiguous / transposed; bias=${bias} accumulate=${accumulate}`, () => {
        const dev = device();
        const [K, N] = [72, 264];
        const x = randn([M, K], dtype, dev);
        const d = randn([M, N], dtype, dev);
        const xt = x.t();
        for (const cT of [false, true]) {
          const bb = bias ? randn([N], dtype, dev) : null;
          const cStore = Tensor.empty(cT ? [N, K] : [K, N], dtype, { device: dev });
          const c = cT ? cStore.t() : cStore.view();
          if (accumulate) {
            const init = randn([K, N], dtype, dev);
            c.writeRaw(init.toRaw());
            init.dispose();
          } else {
            poison(cStore);
          }
          const c0 = accumulate ? f64(c) : null;
          matmul(xt, d, { bias: bb, out: c, accumulate });
          expect(c.toFloat32()).toBeAllClose(gemmRef(f64(xt), f64(d), K, M, N, bb && f64(bb), c0), { rtol: RTOL[dtype] });
          disposeAll(bb, cStore, c);
        }
        disposeAll(x, d, xt);
      });
    });
  });
});
