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
  /** Largest relative difference of the epochs' mean training losses. */
  maxEpochRel: number;
  /** The bound maxRel is held to. */
  tolerance: number;
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
  agreement: Agreement;
  checks: Check[];
  /** Files written. */
  files: string[];
}

/**
 * Per-step tolerance on |fused - unfused| / |unfused|: fp32 1e-4 (the two paths sum in different
 * orders, nothing else differs); bf16 5e-2: each step's weights, activations and gradients are
 * rounded to 8 bits of mantissa (relative spacing 2^-8 = 3.9e-3), the two paths round different
 * intermediates (the unfused one stores x·Wg, x·Wu in bf16), and the difference compounds over
 * the steps, so the curves overlap within a few bf16 ulps of the loss rather than exactly.
 */
export const LOSS_TOLERANCE = { float32: 1e-4, bfloat16: 5e-2 } as const;

/** Epoch-mean training losses must agree to this relative difference (both dtypes). */
export const EPOCH_TOLERANCE = { float32: 1e-4, bfloat16: 1e-2 } as const;

export function agreementOf(fused: number[], unfused: number[], dtype: TrainConfig["dtype"], stepsPerEpoch = 0): Agreement {
  const rel = fused.map((f, i) => Math.abs(f - unfused[i]!) / Math.max(Math.abs(unfused[i]!), 1e-30));
  const maxRel = rel.length === fused.length && fused.length === unfused.length ? Math.max(0, ...rel) : Infinity;
  const meanRel = rel.reduce((a, b) => a + b, 0) / Math.max(1, rel.length);
  let maxEpochRel = 0;
  if (stepsPerEpoch > 0) {
    for (let s = 0; s < fused.length; s += stepsPerEpoch) {
      const mean = (a: number[]) => a.slice(s, s + stepsPerEpoch).reduce((x, y) => x + y, 0);
      maxEpochRel = Math.max(maxEpochRel, Math.abs(mean(fused) - mean(unfused)) / Math.abs(mean(unfused)));
    }
  }
  const tolerance = LOSS_TOLERANCE[dtype];
  const pass = Number.isFinite(maxRel) && maxRel < tolerance && maxEpochRel < EPOCH_TOLERANCE[dtype];
  return { maxRel, meanRel, maxEpochRel, tolerance, pass };
}

/** Mean of a slice. */
const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);

export function checksOf(r: RunResult): Check[] {
  const a = r.agreement;
  const checks: Check[] = [{
    name: "per-step losses agree (fused vs unfused)",
    pass: a.pass,
    detail: `max relative difference ${a.maxRel.toExponential(2)} (< ${a.tolerance}), mean ${a.meanRel.toExponential(2)}, ` +
      `epoch means ${a.maxEpochRel.toExponential(2)} (< ${EPOCH_TOLERANCE[r.config.dtype]})`,
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
