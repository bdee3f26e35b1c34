// timing.ts: kernel time with CUDA events (Event from src/device.ts) and end-to-end JS call time
// with tinybench.
//
// Kernel time: `warmup` untimed runs, a synchronize, then a head start (a large device copy that
// keeps the GPU busy while the host enqueues the first timed runs, so the timed runs are not
// stretched by host launch latency), then `iters` runs each between its own pair of events.
// Stats are over the per-run times: median (the number we report), min, max, mean. The caller's
// run(i) rotates input buffers by i (see data.ts). When the host cannot enqueue a run faster than
// the GPU finishes it (tiny activation ops), the host's launch gaps show in the numbers: that is
// the launch-bound regime and the end-to-end column says so.
//
// End-to-end time: tinybench calls run(i) then device.synchronize() in each task, so FFI,
// descriptor and wrapper costs (and the allocation of outputs where the op allocates) are in it.
import { Bench } from "tinybench";
import type { Device, Event } from "../src/index.ts";

export interface Stats {
  median: number;
  min: number;
  max: number;
  mean: number;
  n: number;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: NaN, min: NaN, max: NaN, mean: NaN, n: 0 };
  const median = n % 2 === 1 ? s[(n - 1) >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]!, mean: s.reduce((a, b) => a + b, 0) / n, n };
}

/** The q-quantile (0..1) of the samples, linearly interpolated between order statistics. */
export function quantile(samples: number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const at = q * (s.length - 1), lo = Math.floor(at), hi = Math.ceil(at);
  return s[lo]! + (s[hi]! - s[lo]!) * (at - lo);
}

/** A ratio paired round by round: its median and interquartile range over the rounds, and each round's. */
export interface PairedRatio {
  median: number;
  iqr: [number, number];
  perRound: number[];
}

/**
 * num / den of the rounds' median times, where num[r] and den[r] are the per-run samples of two
 * implementations timed in the same round. Clock drift between rounds (heat, power) hits both
 * sides of a round alike and cancels; a round disturbed on one side only widens the IQR.
 */
export function pairedRatio(num: number[][], den: number[][]): PairedRatio {
  if (num.length !== den.length) throw new Error(`pairedRatio: ${num.length} rounds against ${den.length}`);
  const perRound = num.map((s, r) => stats(s).median / stats(den[r]!).median);
  return { median: quantile(perRound, 0.5), iqr: [quantile(perRound, 0.25), quantile(perRound, 0.75)], perRound };
}

/**
 * How much slower `option` runs than `baseline`, in percent, from per-round samples of both: over
 * the medians of all samples, and paired per round (pairedRatio).
 */
export function pairedOverhead(option: number[][], baseline: number[][]) {
  const r = pairedRatio(option, baseline);
  const pct = (v: number) => (v - 1) * 100;
  const medianMs = stats(option.flat()).median;
  return {
    medianMs,
    overallPct: pct(medianMs / stats(baseline.flat()).median),
    pairedPct: pct(r.median),
    pairedIqrPct: [pct(r.iqr[0]), pct(r.iqr[1])] as [number, number],
    roundPct: r.perRound.map(pct),
  };
}

export interface EventTimingOptions {
  warmup: number;
  iters: number;
  /** Enqueues a few hundred microseconds of device work (or nothing) before the timed runs. */
  headStart?: () => void;
}

/** Reusable event pairs for one device. */
export class EventTimer {
  readonly device: Device;
  #starts: Event[] = [];
  #ends: Event[] = [];

  constructor(device: Device) {
    this.device = device;
  }

  #ensure(n: number): void {
    while (this.#starts.length < n) {
      this.#starts.push(this.device.createEvent());
      this.#ends.push(this.device.createEvent());
    }
  }

  /** Per-run device times in ms of run(i), i = 0..iters-1 (warm-up runs use i = 0..warmup-1). */
  time(run: (i: number) => void, o: EventTimingOptions): Stats & { samples: number[] } {
    this.#ensure(o.iters);
    for (let i = 0; i < o.warmup; i++) run(i);
    this.device.synchronize();
    o.headStart?.();
    for (let i = 0; i < o.iters; i++) {
      this.#starts[i]!.record();
      run(i);
      this.#ends[i]!.record();
    }
    this.#ends[o.iters - 1]!.synchronize();
    const samples: number[] = [];
    for (let i = 0; i < o.iters; i++) samples.push(this.#starts[i]!.elapsedMs(this.#ends[i]!));
    this.device.synchronize();
    return { ...stats(samples), samples };
  }

  dispose(): void {
    for (const e of [...this.#starts, ...this.#ends]) e.dispose();
    this.#starts = [];
    this.#ends = [];
  }
}

/**
 * Times each run in `rounds` interleaved rounds; round r starts at run r (mod the count), so each
 * takes every place in the order alike (with a fixed order, runs timed late in a round read slower
 * as the GPU heats). Returns each run's per-round samples. A run that throws is reported through
 * onError and left out of the later rounds (and of the result).
 */
export function timeInRounds(
  timer: EventTimer,
  runs: { name: string; run: (i: number) => void }[],
  rounds: number,
  o: EventTimingOptions,
  onError: (name: string, e: unknown) => void = (_, e) => { throw e; },
): Map<string, number[][]> {
  const samples = new Map<string, number[][]>(runs.map((r) => [r.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < runs.length; i++) {
      const r = runs[(round + i) % runs.length]!;
      if (!samples.has(r.name)) continue;
      try {
        samples.get(r.name)!.push(timer.time(r.run, o).samples);
      } catch (e) {
        samples.delete(r.name);
        onError(r.name, e);
      }
    }
  }
  return samples;
}

export interface E2EStats {
  median: number;
  mean: number;
  min: number;
  max: number;
  n: number;
}

/** End-to-end ms per call (run + synchronize), tinybench latency statistics. */
export async function timeEndToEnd(
  tasks: { name: string; run: (i: number) => void }[],
  device: Device,
  o: { timeMs: number; minIters: number },
): Promise<Map<string, E2EStats>> {
  const bench = new Bench({ time: o.timeMs, iterations: o.minIters, warmupIterations: 3, warmupTime: 0, throws: true });
  for (const t of tasks) {
    let i = 0;
    bench.add(t.name, () => {
      t.run(i++);
      device.synchronize();
    });
  }
  await bench.run();
  const out = new Map<string, E2EStats>();
  for (const task of bench.tasks) {
    const r = task.result as { state?: string; latency?: { p50: number; mean: number; min: number; max: number; samplesCount: number } };
    if (r.latency) {
      out.set(task.name, { median: r.latency.p50, mean: r.latency.mean, min: r.latency.min, max: r.latency.max, n: r.latency.samplesCount });
    }
  }
  return out;
}
