// The benchmark's statistics (bench/timing.ts): quantiles and the per-round paired overhead that
// the options bench reports against the 2% budget.
import { describe, expect, test } from "bun:test";
import { pairedOverhead, quantile } from "../bench/timing.ts";

describe("quantile", () => {
  test("interpolates between order statistics, whatever the input order", () => {
    expect(quantile([3, 1, 2, 4], 0)).toBe(1);
    expect(quantile([3, 1, 2, 4], 1)).toBe(4);
    expect(quantile([3, 1, 2, 4], 0.5)).toBeCloseTo(2.5, 12);
    expect(quantile([3, 1, 2, 4], 0.25)).toBeCloseTo(1.75, 12);
    expect(quantile([7], 0.9)).toBe(7);
    expect(quantile([], 0.5)).toBeNaN();
  });
});

describe("pairedOverhead", () => {
  test("pairs rounds, so drift between rounds cancels", () => {
    // The clock drops round by round (every run 10% slower than the round before); the option costs
    // exactly 2% in every round. Timed 4 runs per round, with a little noise that keeps each round's median.
    const baseline = [0, 1, 2, 3, 4].map((r) => [1, 0.99, 1.01, 1].map((v) => v * 1.1 ** r));
    const option = baseline.map((s) => s.map((v) => v * 1.02));
    const o = pairedOverhead(option, baseline);
    for (const pct of o.roundPct) expect(pct).toBeCloseTo(2, 9);
    expect(o.pairedPct).toBeCloseTo(2, 9);
    expect(o.pairedIqrPct[0]).toBeCloseTo(2, 9);
    expect(o.pairedIqrPct[1]).toBeCloseTo(2, 9);
    expect(o.medianMs).toBeCloseTo(1.02 * 1.1 ** 2, 9);
  });

  test("rounds where only the option was disturbed widen the IQR and leave the paired median", () => {
    const baseline = [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1]];
    const option = [[1.01, 1.01], [1.01, 1.01], [1.3, 1.3], [1.3, 1.3], [1.01, 1.01]];
    const o = pairedOverhead(option, baseline);
    expect(o.pairedPct).toBeCloseTo(1, 9);
    expect(o.pairedIqrPct[1]).toBeCloseTo(30, 9);
    expect(o.overallPct).toBeCloseTo(1, 9);
    expect(o.roundPct.map((p) => Math.round(p))).toEqual([1, 1, 30, 30, 1]);
  });

  test("rejects samples whose rounds do not pair", () => {
    expect(() => pairedOverhead([[1]], [[1], [1]])).toThrow(/1 rounds of the option, 2 of the baseline/);
  });
});
