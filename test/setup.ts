// setup.ts (preloaded by bunfig.toml): the toBeAllClose matcher and hasCuda.
//
//   expect(out).toBeAllClose(ref, { rtol })
// passes when ||out - ref|| / ||ref|| <= rtol over the finite entries of ref (absolute norm when
// ||ref|| is 0), every non-finite entry of ref is matched exactly (NaN by NaN, ±Inf by the same
// infinity), and no finite entry of ref became non-finite. The message reports both errors.
import { expect } from "bun:test";
import { hasCuda as probeCuda } from "../src/device.ts";

export interface AllCloseOptions {
  /** Relative Frobenius tolerance (default 1e-5). */
  rtol?: number;
  /** Passes also when max |out - ref| <= atol (default 0: off). */
  atol?: number;
  /**
   * Norm to divide by instead of ||ref||: e.g. the reference computed on absolute values
   * (|A|·|B| for a product), the natural error scale when terms cancel.
   */
  scale?: ArrayLike<number>;
}

declare module "bun:test" {
  interface Matchers<T> {
    toBeAllClose(ref: ArrayLike<number>, options?: AllCloseOptions): void;
  }
}

export interface CloseReport {
  rel: number;
  maxAbs: number;
  maxAbsAt: number;
  mismatch: string | null;
}

export function compare(out: ArrayLike<number>, ref: ArrayLike<number>, scale?: ArrayLike<number>): CloseReport {
  if (out.length !== ref.length) {
    return { rel: Infinity, maxAbs: Infinity, maxAbsAt: -1, mismatch: `length ${out.length} != reference length ${ref.length}` };
  }
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  let maxAbsAt = -1;
  let mismatch: string | null = null;
  for (let i = 0; i < ref.length; i++) {
    const o = out[i]!;
    const r = ref[i]!;
    if (!Number.isFinite(r)) {
      if (!(Number.isNaN(r) ? Number.isNaN(o) : o === r)) mismatch ??= `index ${i}: expected ${r}, got ${o}`;
      continue;
    }
    if (!Number.isFinite(o)) {
      mismatch ??= `index ${i}: expected finite ${r}, got ${o}`;
      continue;
    }
    const d = Math.abs(o - r);
    num += d * d;
    den += r * r;
    if (d > maxAbs) {
      maxAbs = d;
      maxAbsAt = i;
    }
  }
  if (scale) {
    den = 0;
    for (let i = 0; i < scale.length; i++) if (Number.isFinite(scale[i]!)) den += scale[i]! * scale[i]!;
  }
  const rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
  return { rel, maxAbs, maxAbsAt, mismatch };
}

expect.extend({
  toBeAllClose(received: unknown, ref: ArrayLike<number>, options: AllCloseOptions = {}) {
    const rtol = options.rtol ?? 1e-5;
    const atol = options.atol ?? 0;
    const out = received as ArrayLike<number>;
    if (out === null || typeof out !== "object" || typeof out.length !== "number") {
      return { pass: false, message: () => `toBeAllClose: expected an array of numbers, got ${String(received)}` };
    }
    const r = compare(out, ref, options.scale);
    const pass = r.mismatch === null && (r.rel <= rtol || (atol > 0 && r.maxAbs <= atol));
    const at = r.maxAbsAt >= 0 ? ` at index ${r.maxAbsAt} (got ${out[r.maxAbsAt]}, expected ${ref[r.maxAbsAt]})` : "";
    return {
      pass,
      message: () =>
        `expected ${pass ? "not " : ""}to be all close (rtol ${rtol}${atol ? `, atol ${atol}` : ""}): ` +
        `relative error${options.scale ? " (to the given scale)" : ""} ${r.rel.toExponential(3)}, max abs error ${r.maxAbs.toExponential(3)}${at}` +
        (r.mismatch ? `; non-finite mismatch at ${r.mismatch}` : "") + ` over ${ref.length} values`,
    };
  },
});

/** True when a CUDA device is usable: the GPU suites run under describe.if(hasCuda). */
export const hasCuda: boolean = probeCuda();
