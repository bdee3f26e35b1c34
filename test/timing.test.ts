// The benchmark's statistics (bench/timing.ts): quantiles and the per-round paired overhead that
// the options bench reports against the 2% budget, and the interleaved rounds both benches time in.
import { describe, expect, test } from "bun:test";
import { EventTimer, pairedOverhead, pairedRatio, quantile, timeInRounds } from "../bench/timing.ts";
import { Device } from "../src/index.ts";

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
    expect(() => pairedOverhead([[1]], [[1], [1]])).toThrow(/pairedRatio: 1 rounds against 2/);
  });
});

describe("pairedRatio", () => {
  test("is the per-round ratio of medians, with its median and IQR", () => {
    const den = [[2, 2, 2], [4, 4, 4], [1, 1, 1], [3, 3, 3]];
    const num = [[2.2, 2.2, 9], [4.4, 4.4, 0], [1.3, 1.3, 1.3], [3.3, 3.3, 3.3]];
    const r = pairedRatio(num, den);
    expect(r.perRound.map((v) => Number(v.toFixed(9)))).toEqual([1.1, 1.1, 1.3, 1.1]);
    expect(r.median).toBeCloseTo(1.1, 9);
    expect(r.iqr[0]).toBeCloseTo(1.1, 9);
    expect(r.iqr[1]).toBeCloseTo(1.15, 9);
  });
});

describe("timeInRounds", () => {
  test("rotates the order each round and keeps each run's samples per round", () => {
    const device = Device.open({ backend: "cpu" });
    const timer = new EventTimer(device);
    try {
      const order: string[] = [];
      const runs = ["a", "b", "c"].map((name) => ({ name, run: (i: number) => { if (i === 0) order.push(name); } }));
      const t = timeInRounds(timer, runs, 3, { warmup: 1, iters: 2 });
      // warm-up run 0 and timed run 0 each log once per timing: two entries per run per round.
      expect(order.filter((_, k) => k % 2 === 0)).toEqual(["a", "b", "c", "b", "c", "a", "c", "a", "b"]);
      for (const name of ["a", "b", "c"]) {
        expect(t.get(name)!.length).toBe(3);
        for (const round of t.get(name)!) expect(round.length).toBe(2);
      }
    } finally {
      timer.dispose();
      device.dispose();
    }
  });

  test("a run that throws is reported once and left out of the later rounds", () => {
    const device = Device.open({ backend: "cpu" });
    const timer = new EventTimer(device);
    try {
      let calls = 0;
      const runs = [
        { name: "ok", run: () => {} },
        { name: "bad", run: () => { calls++; throw new Error("boom"); } },
      ];
      const errors: string[] = [];
      const t = timeInRounds(timer, runs, 4, { warmup: 0, iters: 1 }, (name, e) => errors.push(`${name}: ${(e as Error).message}`));
      expect(errors).toEqual(["bad: boom"]);
      expect(calls).toBe(1);
      expect(t.has("bad")).toBe(false);
      expect(t.get("ok")!.length).toBe(4);
      expect(() => timeInRounds(timer, runs, 1, { warmup: 0, iters: 1 })).toThrow("boom");
    } finally {
      timer.dispose();
      device.dispose();
    }
  });
});
