// The float64 oracle's backward checked by central finite differences of L = sum(dout ⊙ out); and
// the memo (helpers.ts) through which the kernel paths of a large case share one reference.
import { describe, expect, test } from "bun:test";
import { mulberry32 } from "../src/tensor.ts";
import { cachedReference, caseSeeds, nextSeed } from "./helpers.ts";
import {
  gemmRef, gluBackwardRef, gluForwardRef, silu, swigluBackwardRef, swigluForwardRef,
  type FusedInputs, type GluInputs,
} from "./reference.ts";

const randArray = (n: number, seed: number, scale = 1): Float64Array => {
  const r = mulberry32(seed);
  return Float64Array.from({ length: n }, () => (2 * r() - 1) * scale);
};

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

/** Central differences of loss() w.r.t. every entry of `param` (perturbed in place). */
function numericGrad(param: Float64Array, loss: () => number, h = 1e-6): Float64Array {
  const g = new Float64Array(param.length);
  for (let i = 0; i < param.length; i++) {
    const v = param[i]!;
    param[i] = v + h;
    const up = loss();
    param[i] = v - h;
    const down = loss();
    param[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

describe("reference", () => {
  test("gemmRef on a hand-computed case", () => {
    // [1 2; 3 4] · [5 6; 7 8] + [1, -1] + c0
    const c = gemmRef([1, 2, 3, 4], [5, 6, 7, 8], 2, 2, 2, [1, -1], [0.5, 0.5, 0.5, 0.5]);
    expect(Array.from(c)).toEqual([20.5, 21.5, 44.5, 49.5]);
  });

  test("silu edge values", () => {
    expect(Object.is(silu(-1e4), -0)).toBe(true);
    expect(silu(0)).toBe(0);
    expect(silu(1e4)).toBe(1e4);
    expect(Number.isNaN(silu(NaN))).toBe(true);
  });

  for (const [M, K, N, bias] of [[3, 4, 5, true], [2, 3, 1, false], [1, 1, 4, true]] as const) {
    test(`fused backward matches finite differences (M=${M} K=${K} N=${N} bias=${bias})`, () => {
      const p: FusedInputs & { x: Float64Array; wGate: Float64Array; wUp: Float64Array; bGate: Float64Array | null; bUp: Float64Array | null } = {
        M, K, N,
        x: randArray(M * K, 1 + M),
        wGate: randArray(K * N, 2 + K),
        wUp: randArray(K * N, 3 + N),
        bGate: bias ? randArray(N, 4) : null,
        bUp: bias ? randArray(N, 5) : null,
      };
      const dz = randArray(M * N, 6);
      const loss = () => dot(swigluForwardRef(p).z, dz);
      const g = swigluBackwardRef(p, dz);
      expect(g.dx).toBeAllClose(numericGrad(p.x, loss), { rtol: 1e-6 });
      expect(g.dwGate).toBeAllClose(numericGrad(p.wGate, loss), { rtol: 1e-6 });
      expect(g.dwUp).toBeAllClose(numericGrad(p.wUp, loss), { rtol: 1e-6 });
      if (p.bGate && p.bUp) {
        expect(g.dbGate).toBeAllClose(numericGrad(p.bGate, loss), { rtol: 1e-6 });
        expect(g.dbUp).toBeAllClose(numericGrad(p.bUp, loss), { rtol: 1e-6 });
      }
    });
  }

  for (const [M, N, bias, weights] of [[4, 3, true, true], [3, 2, false, true], [2, 5, true, false], [5, 1, false, false]] as const) {
    test(`glu backward matches finite differences (M=${M} N=${N} bias=${bias} weights=${weights})`, () => {
      const p: GluInputs & { y: Float64Array; bias: Float64Array | null; weights: Float64Array | null } = {
        M, N,
        y: randArray(M * 2 * N, 7 + M, 3),
        bias: bias ? randArray(2 * N, 8) : null,
        weights: weights ? randArray(M, 9) : null,
      };
      const dout = randArray(M * N, 10);
      const loss = () => dot(gluForwardRef(p), dout);
      const g = gluBackwardRef(p, dout);
      expect(g.dy).toBeAllClose(numericGrad(p.y, loss), { rtol: 1e-6 });
      if (p.bias) expect(g.dbias).toBeAllClose(numericGrad(p.bias, loss), { rtol: 1e-6 });
      if (p.weights) expect(g.dweights).toBeAllClose(numericGrad(p.weights, loss), { rtol: 1e-6 });
    });
  }
});

// The memo that lets every kernel path of a large case share one float64 reference (helpers.ts).
describe("cachedReference and caseSeeds", () => {
  test("a hit needs the same key and equal inputs; null keys and changed inputs recompute", () => {
    let calls = 0;
    const compute = () => ++calls;
    const a = randArray(64, 1), b = randArray(8, 2);
    expect(cachedReference("memo test", [a, null, b], compute)).toBe(1);
    expect(cachedReference("memo test", [a.slice(), null, b.slice()], compute)).toBe(1); // equal copies: a hit
    const changed = a.slice();
    changed[63] = changed[63]! + 2 ** -40;
    expect(cachedReference("memo test", [changed, null, b], compute)).toBe(2); // one element differs
    expect(cachedReference("memo test", [changed, null, b], compute)).toBe(2);
    expect(cachedReference("memo test", [changed], compute)).toBe(3); // fewer inputs
    expect(cachedReference(null, [a], compute)).toBe(4);
    expect(cachedReference(null, [a], compute)).toBe(5);
    expect(cachedReference("memo test, another key", [changed], compute)).toBe(6);
  });

  test("holds the last four keys", () => {
    let calls = 0;
    const compute = () => ++calls;
    const a = randArray(16, 3);
    for (const k of [1, 2, 3, 4, 5]) cachedReference(`evict ${k}`, [a], compute);
    expect(calls).toBe(5);
    cachedReference("evict 5", [a], compute);
    cachedReference("evict 2", [a], compute);
    expect(calls).toBe(5);
    cachedReference("evict 1", [a], compute); // the oldest went
    expect(calls).toBe(6);
  });

  test("a case's seeds repeat wherever it runs, and differ between cases and from nextSeed", () => {
    const one = caseSeeds(7), again = caseSeeds(7), other = caseSeeds(8);
    const s = [one(), one(), one()];
    expect([again(), again(), again()]).toEqual(s);
    expect(s[1]).toBe(s[0]! + 1);
    expect(other()).not.toBe(s[0]);
    expect(s).not.toContain(nextSeed());
  });
});
