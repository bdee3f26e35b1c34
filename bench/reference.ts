// reference.ts: float64 host reference of SwiGLU forward/backward on SAMPLED rows (z, a, b, dx)
// and SAMPLED columns (dWg, dWu), from raw host arrays (Uint16 bit patterns or Float32), so that
// Llama-sized shapes can be checked without a full host GEMM:
//   row r of z/dx needs x[r, :] and all of Wg, Wu (2·K·N multiply-adds per row and pass);
//   column c of dWg/dWu needs all of x and column c of Wg, Wu, dz (4·M·K per column).
// Shared by bench/ and examples/demo.ts. Errors are normwise: ||out - ref|| / ||ref|| over the
// sampled values (max-abs relative error is reported beside it).
import { bf16BitsToF32, f16BitsToF32, type FloatDType } from "../src/index.ts";

export type Raw = Float32Array | Uint16Array;

/** A float32 reader over raw elements of `dtype` (a 64K lookup table for 16-bit dtypes). */
export function reader(dtype: FloatDType): (raw: Raw, i: number) => number {
  if (dtype === "float32") return (raw, i) => raw[i]!;
  const lut = new Float32Array(65536);
  const dec = dtype === "bfloat16" ? bf16BitsToF32 : f16BitsToF32;
  for (let h = 0; h < 65536; h++) lut[h] = dec(h);
  return (raw, i) => lut[raw[i]!]!;
}

/** Decodes a whole raw array to float32 (for small downloads: sampled rows). */
export function decodeAll(dtype: FloatDType, raw: Raw): Float64Array {
  const rd = reader(dtype);
  const out = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = rd(raw, i);
  return out;
}

/** Normwise relative error ||got - ref|| / ||ref|| of two whole downloads. */
export function relErr(got: Float32Array, ref: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/**
 * Host copies of the inputs of one problem. Weights are logical [K, N] read through (row stride,
 * col stride, offset) in their raw storage, so every layout works.
 */
export interface RefProblem {
  dtype: FloatDType;
  M: number;
  K: number;
  N: number;
  x: Raw; // [M, K] row-major
  dz: Raw; // [M, N] row-major
  wg: { raw: Raw; rs: number; cs: number; off: number };
  wu: { raw: Raw; rs: number; cs: number; off: number };
}

export interface RowRef {
  row: number;
  a: Float64Array;
  b: Float64Array;
  z: Float64Array;
  /** dL/da and dL/db of the row (dz from the problem). */
  dA: Float64Array;
  dB: Float64Array;
  dx: Float64Array;
}

/** Reference of rows `rows`: a, b, z (forward) and dx (backward). */
export function referenceRows(p: RefProblem, rows: number[]): RowRef[] {
  const rd = reader(p.dtype);
  const { K, N } = p;
  const out: RowRef[] = [];
  const wgF = new Float64Array(N);
  const wuF = new Float64Array(N);
  for (const r of rows) {
    const a = new Float64Array(N);
    const b = new Float64Array(N);
    for (let k = 0; k < K; k++) {
      const xv = rd(p.x, r * K + k);
      const gBase = p.wg.off + k * p.wg.rs;
      const uBase = p.wu.off + k * p.wu.rs;
      for (let j = 0; j < N; j++) {
        a[j] += xv * rd(p.wg.raw, gBase + j * p.wg.cs);
        b[j] += xv * rd(p.wu.raw, uBase + j * p.wu.cs);
      }
    }
    const z = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      const s = sigmoid(a[j]!);
      const silu = a[j]! * s;
      z[j] = silu * b[j]!;
      const dz = rd(p.dz, r * N + j);
      wgF[j] = dz * b[j]! * s * (1 + a[j]! * (1 - s)); // dA
      wuF[j] = dz * silu; // dB
    }
    const dx = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      let acc = 0;
      const gBase = p.wg.off + k * p.wg.rs;
      const uBase = p.wu.off + k * p.wu.rs;
      for (let j = 0; j < N; j++) acc += wgF[j]! * rd(p.wg.raw, gBase + j * p.wg.cs) + wuF[j]! * rd(p.wu.raw, uBase + j * p.wu.cs);
      dx[k] = acc;
    }
    out.push({ row: r, a, b, z, dA: Float64Array.from(wgF), dB: Float64Array.from(wuF), dx });
  }
  return out;
}

export interface ColRef {
  col: number;
  dwg: Float64Array; // [K]
  dwu: Float64Array; // [K]
}

/** Reference of columns `cols` of dWg and dWu (each [K]). */
export function referenceCols(p: RefProblem, cols: number[]): ColRef[] {
  const rd = reader(p.dtype);
  const { M, K, N } = p;
  const out: ColRef[] = [];
  const dA = new Float64Array(M);
  const dB = new Float64Array(M);
  const wgc = new Float64Array(K);
  const wuc = new Float64Array(K);
  for (const c of cols) {
    for (let k = 0; k < K; k++) {
      wgc[k] = rd(p.wg.raw, p.wg.off + k * p.wg.rs + c * p.wg.cs);
      wuc[k] = rd(p.wu.raw, p.wu.off + k * p.wu.rs + c * p.wu.cs);
    }
    for (let i = 0; i < M; i++) {
      let a = 0;
      let b = 0;
      const base = i * K;
      for (let k = 0; k < K; k++) {
        const xv = rd(p.x, base + k);
        a += xv * wgc[k]!;
        b += xv * wuc[k]!;
      }
      const s = sigmoid(a);
      const dz = rd(p.dz, i * N + c);
      dA[i] = dz * b * s * (1 + a * (1 - s));
      dB[i] = dz * a * s;
    }
    const dwg = new Float64Array(K);
    const dwu = new Float64Array(K);
    for (let i = 0; i < M; i++) {
      const base = i * K;
      const ga = dA[i]!;
      const gb = dB[i]!;
      for (let k = 0; k < K; k++) {
        const xv = rd(p.x, base + k);
        dwg[k] += xv * ga;
        dwu[k] += xv * gb;
      }
    }
    out.push({ col: c, dwg, dwu });
  }
  return out;
}

/** Accumulates sampled (out, ref) pairs into a normwise relative error. */
export class ErrorAccumulator {
  #num = 0;
  #den = 0;
  #maxAbs = 0;
  #maxRef = 0;
  #nonFinite = 0;

  add(out: ArrayLike<number>, ref: ArrayLike<number>): this {
    for (let i = 0; i < ref.length; i++) {
      const o = out[i]!;
      const r = ref[i]!;
      if (!Number.isFinite(o)) this.#nonFinite++;
      const d = o - r;
      this.#num += d * d;
      this.#den += r * r;
      this.#maxAbs = Math.max(this.#maxAbs, Math.abs(d));
      this.#maxRef = Math.max(this.#maxRef, Math.abs(r));
    }
    return this;
  }

  /** ||out - ref|| / ||ref||; Infinity when any output was NaN/Inf. */
  get normwise(): number {
    if (this.#nonFinite > 0) return Infinity;
    return this.#den > 0 ? Math.sqrt(this.#num / this.#den) : Math.sqrt(this.#num);
  }

  /** max |out - ref| / max |ref|. */
  get maxRelative(): number {
    if (this.#nonFinite > 0) return Infinity;
    return this.#maxRef > 0 ? this.#maxAbs / this.#maxRef : this.#maxAbs;
  }
}

/** Sampled row indices: first, last and evenly spread ones (unique, sorted). */
export function sampleIndices(n: number, count: number): number[] {
  const s = new Set<number>();
  for (let i = 0; i < count; i++) s.add(Math.min(n - 1, Math.round((i * (n - 1)) / Math.max(1, count - 1))));
  return [...s].sort((a, b) => a - b);
}

/** Normwise tolerance of the sampled checks per dtype. */
export const TOLERANCE: Record<FloatDType, number> = { bfloat16: 2e-2, float16: 1e-2, float32: 1e-3 };
