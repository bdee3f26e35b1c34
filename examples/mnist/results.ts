// results.ts: what a training run produces (the JSON written next to the table and the plot),
// the per-step loss agreement of the two modes, and the pass/fail checks.
import type { SavedBytes } from "./blocks.ts";

export interface TrainConfig {
  dtype: "float32" | "bfloat16";
  epochs: number;
  hidden: number;
  batch: number;
  lr: number;
  weightDecay: number;
  save: "input" | "preactivations";
  backend: "auto" | "cpu" | "cuda";
  out: string;
  quick: boolean;
  seed: number;
  trainCount: number;
  testCount: number;
  /** Write the md/json/svg files. */
  write: boolean;
}

export interface EpochRow {
  epoch: number;
  /** Mean of the epoch's per-step training losses. */
  trainLoss: number;
  trainAccuracy: number;
  testLoss: number;
  testAccuracy: number;
  /** Wall time of the epoch's training steps. */
  ms: number;
  /** Of which inside the SwiGLU layer (forward + backward). */
  swigluMs: number;
}

export interface ModeRun {
  stepLosses: number[];
  epochs: EpochRow[];
  /** Activation memory the SwiGLU layer keeps for backward (largest batch). */
  saved: SavedBytes;
}

export interface Agreement {
  /** max over steps of |fused - unfused| / |unfused|. */
  maxRel: number;
  meanRel: number;
  /** Per epoch: mean over its steps of |fused - unfused|. */
  epochGap: number[];
  /** bf16 only, per epoch: mean of |unfused - fp32 reference|, the noise of bf16 rounding. */
  epochNoise: number[] | null;
  /** What was required, in words. */
  criterion: string;
  pass: boolean;
}

export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

export interface RunResult {
  system: {
    device: string;
    backend: string;
    computeCapability: number;
    bun: string;
    library: string;
    command: string;
    date: string;
  };
  config: TrainConfig;
  modes: { fused: ModeRun; unfused: ModeRun };
  /** bf16 runs: the unfused model trained in fp32 on the same batches (noise reference). */
  reference: ModeRun | null;
  agreement: Agreement;
  checks: Check[];
  /** Files written. */
  files: string[];
}

/** fp32: every step's |fused - unfused| / |unfused| stays below this (the paths differ only in summation order). */
export const FP32_TOLERANCE = 1e-4;

/** Mean over each epoch's steps of |a - b|. */
function epochMeanAbsDiff(a: number[], b: number[], stepsPerEpoch: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < a.length; s += stepsPerEpoch) {
    const n = Math.min(stepsPerEpoch, a.length - s);
    let sum = 0;
    for (let i = s; i < s + n; i++) sum += Math.abs(a[i]! - b[i]!);
    out.push(sum / n);
  }
  return out;
}

/**
 * bf16: in every epoch, mean |fused - unfused| <= NOISE_FACTOR x mean |unfused - the same run in
 * fp32|. If each bf16 run strays from the fp32 trajectory by independent rounding noise of size
 * s, two bf16 runs differ by about sqrt(2)·s: 2 leaves room for that and for chance. (A fixed
 * per-step bound does not fit bf16: the two paths round different intermediates, the
 * trajectories drift apart as two runs of different rounding do, and late losses near 0.01 make
 * per-step ratios large.)
 */
export const NOISE_FACTOR = 2;

export function agreementOf(fused: number[], unfused: number[], reference: number[] | null, dtype: TrainConfig["dtype"], stepsPerEpoch: number): Agreement {
  const comparable = fused.length === unfused.length && fused.length > 0;
  const rel = fused.map((f, i) => Math.abs(f - unfused[i]!) / Math.max(Math.abs(unfused[i]!), 1e-30));
  const maxRel = comparable ? Math.max(...rel) : Infinity;
  const meanRel = rel.reduce((a, b) => a + b, 0) / Math.max(1, rel.length);
  const epochGap = comparable ? epochMeanAbsDiff(fused, unfused, stepsPerEpoch) : [];
  if (dtype === "float32" || !reference) {
    return {
      maxRel, meanRel, epochGap, epochNoise: null,
      criterion: `every step: |fused - unfused| / unfused < ${FP32_TOLERANCE}`,
      pass: Number.isFinite(maxRel) && maxRel < FP32_TOLERANCE,
    };
  }
  const epochNoise = epochMeanAbsDiff(unfused, reference, stepsPerEpoch);
  return {
    maxRel, meanRel, epochGap, epochNoise,
    criterion: `every epoch: mean |fused - unfused| <= ${NOISE_FACTOR} x mean |unfused - the same run in fp32| (bf16 rounding noise)`,
    pass: comparable && epochGap.length === epochNoise.length && epochGap.every((g, i) => g <= NOISE_FACTOR * epochNoise[i]!),
  };
}

/** Mean of a slice. */
const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);

export function checksOf(r: RunResult): Check[] {
  const a = r.agreement;
  const gaps = a.epochGap.map((g, i) => `${g.toExponential(1)}${a.epochNoise ? ` vs ${a.epochNoise[i]!.toExponential(1)}` : ""}`).join(", ");
  const checks: Check[] = [{
    name: "per-step losses agree (fused vs unfused)",
    pass: a.pass,
    detail: `${a.criterion}; max relative difference ${a.maxRel.toExponential(2)}, mean ${a.meanRel.toExponential(2)}; ` +
      `per epoch mean |fused - unfused|${a.epochNoise ? " vs bf16 noise" : ""}: ${gaps}`,
  }];
  const accuracyBar = r.config.quick ? 0.7 : 0.95; // quick: 20 steps on 1,000 digits
  for (const mode of ["fused", "unfused"] as const) {
    const run = r.modes[mode];
    const q = Math.max(1, Math.floor(run.stepLosses.length / 4));
    const first = mean(run.stepLosses.slice(0, q));
    const last = mean(run.stepLosses.slice(-q));
    checks.push({
      name: `${mode}: training loss decreases`,
      pass: Number.isFinite(last) && last < 0.75 * first,
      detail: `mean loss of the first quarter of the steps ${first.toFixed(4)}, of the last quarter ${last.toFixed(4)}`,
    });
    const acc = run.epochs.at(-1)?.testAccuracy ?? 0;
    checks.push({
      name: `${mode}: held-out accuracy >= ${100 * accuracyBar}%${r.config.quick ? " (quick run)" : ""}`,
      pass: acc >= accuracyBar,
      detail: `${(100 * acc).toFixed(2)}% of ${r.config.testCount} held-out digits`,
    });
  }
  return checks;
}
