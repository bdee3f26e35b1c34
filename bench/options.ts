// options.ts: `bun bench/options.ts` — what each option of the GLU-variants issue costs:
//   1. the fused forward's time with each GLU variant and with the pre-activations saved in bf16
//      or fp8, against plain SwiGLU in the same run (CUDA events; the options are timed in
//      interleaved rounds whose order rotates, so clock drift hits all of them alike; median of
//      every sample; --rounds a multiple of the 9 options puts each in every place equally); also
//      paired per round (option over baseline in the same round) with the median and interquartile
//      range over rounds, the reading to use against a 2% budget. Each sample is 50 launches: with
//      10, the options bench read gpt-oss +4.9% where sustained loops and ncu read +2.0% and +1.7%
//      (bench/NOTES.md, "GLU variants", step 6);
//   2. fp8 storage: bytes kept for backward, and the gradients' error against an fp32 run of the
//      same inputs, next to the bf16 store's error.
//
//   bun bench/options.ts                                  8192x4096x14336 and 2048x4096x14336, bf16
//   bun bench/options.ts --shapes 8192x4096x11008 --rounds 10 --iters 10 --json out.json
//   bun bench/options.ts --kernel-path 80                 force a kernel family (0 auto, 1 small-M, 80, 90)
//   bun bench/options.ts --cpu-smoke                      one tiny shape on the CPU backend (CI)
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  BILINEAR, Device, GEGLU, GEGLU_TANH, GPT_OSS, REGLU, SwiGLUContext, SwiGLUFunction, Tensor, disposeFp8, emptyFp8,
  fusedSwiglu, type FloatDType, type GluActivation, type KernelPath,
} from "../src/index.ts";
import { parseOptionBenchArgs, type OptionBenchArgs } from "./args.ts";
import { parseShape, shapeKey, type Shape } from "./cases.ts";
import { randomRaw, separateLayer, upload } from "./data.ts";
import { relErr } from "./reference.ts";
import { deviceSlug, sysInfo } from "./sysinfo.ts";
import { EventTimer, pairedOverhead, timeInRounds } from "./timing.ts";

interface Args extends OptionBenchArgs {
  kernelPath: KernelPath;
}

const parseArgs = (argv: string[]): Args =>
  parseOptionBenchArgs<Args>(
    argv,
    { shapes: ["8192x4096x14336", "2048x4096x14336"], errorShape: "2048x4096x14336", rounds: 18, iters: 50, json: null, cpuSmoke: false, kernelPath: 0 },
    { "--kernel-path": (a, v) => { a.kernelPath = Number(v) as KernelPath; } },
  );

const VARIANTS: [string, GluActivation | null][] = [
  ["swiglu", null],
  ["geglu (erf)", GEGLU],
  ["geglu (tanh)", GEGLU_TANH],
  ["reglu", REGLU],
  ["bilinear", BILINEAR],
  ["gpt-oss clamp", GPT_OSS],
  ["falcon-h1 scales", { gateScale: 0.5, outScale: 1.25 }],
];

interface TimedOption {
  option: string;
  medianMs: number;
  /** Time over the baseline's (plain SwiGLU for variants, bf16 saves for fp8 saves), in percent: medians of all samples. */
  overheadPct: number;
  /**
   * The same per round, pairing the option with its baseline in that round (so clock drift between
   * rounds cancels); the median over rounds and the interquartile range.
   */
  pairedOverheadPct: number;
  pairedIqrPct: [number, number];
  roundOverheadPct: number[];
  baseline: string;
}

function benchShape(device: Device, timer: EventTimer, s: Shape, dtype: FloatDType, a: Args): TimedOption[] {
  const { M, K, N } = s;
  const { x, wg, wu } = separateLayer(M, K, N, dtype, device);
  const z = Tensor.empty([M, N], dtype, { device });
  const a16 = Tensor.empty([M, N], dtype, { device });
  const b16 = Tensor.empty([M, N], dtype, { device });
  const a8 = emptyFp8([M, N], device);
  const b8 = emptyFp8([M, N], device);
  try {
    const runs: [string, () => void][] = VARIANTS.map(([name, activation]) => [name, () => void fusedSwiglu(x, wg, wu, { out: z, activation })]);
    runs.push(["save bf16", () => void fusedSwiglu(x, wg, wu, { out: z, aOut: a16, bOut: b16 })]);
    runs.push(["save fp8", () => void fusedSwiglu(x, wg, wu, { out: z, aOut: a8.data, bOut: b8.data, aScale: a8.scale, bScale: b8.scale })]);
    const t = timeInRounds(timer, runs.map(([name, run]) => ({ name, run })), a.rounds, { warmup: 2, iters: a.iters });
    return runs.map(([name]) => {
      const baseline = name === "save fp8" ? "save bf16" : "swiglu";
      const o = pairedOverhead(t.get(name)!, t.get(baseline)!);
      return {
        option: name, baseline, medianMs: o.medianMs, overheadPct: o.overallPct,
        pairedOverheadPct: o.pairedPct, pairedIqrPct: o.pairedIqrPct, roundOverheadPct: o.roundPct,
      };
    });
  } finally {
    for (const u of [x, wg, wu, z, a16, b16]) u.dispose();
    disposeFp8(a8);
    disposeFp8(b8);
  }
}

interface GradError {
  store: string;
  savedBytes: number;
  dx: number;
  dwGate: number;
  dwUp: number;
}

/** Gradient error of the bf16 and fp8 stores against an fp32 run of the same (rounded) inputs. */
function gradientError(device: Device, s: Shape, dtype: FloatDType): GradError[] {
  const { M, K, N } = s;
  const layer = separateLayer(M, K, N, dtype, device, 11);
  const inputs = [layer.x, layer.wg, layer.wu, upload(randomRaw(dtype, M * N, 1, 14), [M, N], dtype, device)];
  const run = (ts: Tensor[], save: "preactivations" | "preactivations-fp8") => {
    const [x, wg, wu, dz] = ts as [Tensor, Tensor, Tensor, Tensor];
    const ctx = new SwiGLUContext();
    SwiGLUFunction.forward(ctx, x, wg, wu, { saveForBackward: save }).dispose();
    const savedBytes = ctx.savedBytes;
    const g = SwiGLUFunction.backward(ctx, dz);
    const result = { savedBytes, dx: g.dx!.toFloat32(), dwGate: g.dwGate!.toFloat32(), dwUp: g.dwUp!.toFloat32() };
    for (const t of [g.dx, g.dwGate, g.dwUp]) t?.dispose();
    return result;
  };
  const f32 = inputs.map((t) => Tensor.fromFloat32(t.toFloat32(), t.shape, "float32", { device }));
  try {
    const truth = run(f32, "preactivations");
    return (["preactivations", "preactivations-fp8"] as const).map((save) => {
      const r = run(inputs, save);
      return {
        store: save === "preactivations" ? dtype : "fp8 e4m3 + e8m0 scales",
        savedBytes: r.savedBytes,
        dx: relErr(r.dx, truth.dx),
        dwGate: relErr(r.dwGate, truth.dwGate),
        dwUp: relErr(r.dwUp, truth.dwUp),
      };
    });
  } finally {
    for (const t of [...inputs, ...f32]) t.dispose();
  }
}

function main(): void {
  const a = parseArgs(process.argv.slice(2));
  const device = Device.open({ backend: a.cpuSmoke ? "cpu" : "auto" });
  if (device.backend === "cuda") device.setKernelPath(a.kernelPath);
  const dtype: FloatDType = "bfloat16";
  const timer = new EventTimer(device);
  const info = sysInfo(device);
  console.log(`options bench on ${info.gpuName ?? device.name} (${device.backend}, kernel path ${a.kernelPath}), ${dtype}`);
  const timing: Record<string, TimedOption[]> = {};
  for (const text of a.shapes) {
    const s = parseShape(text);
    const rows = benchShape(device, timer, s, dtype, a);
    timing[shapeKey(s)] = rows;
    console.log(`\n${shapeKey(s)} fused forward:`);
    console.table(rows.map((r) => ({
      option: r.option, "ms": r.medianMs.toFixed(4), "vs": r.baseline, "overhead %": r.overheadPct.toFixed(2),
      "paired %": r.pairedOverheadPct.toFixed(2), "paired IQR %": `${r.pairedIqrPct[0].toFixed(2)}..${r.pairedIqrPct[1].toFixed(2)}`,
    })));
  }
  const es = parseShape(a.errorShape);
  const errors = gradientError(device, es, dtype);
  console.log(`\n${shapeKey(es)} gradients, relative Frobenius error against an fp32 run of the same inputs:`);
  console.table(errors.map((e) => ({ store: e.store, "saved MB": (e.savedBytes / 1e6).toFixed(1), dx: e.dx.toExponential(2), dWg: e.dwGate.toExponential(2), dWu: e.dwUp.toExponential(2) })));
  const saving = 1 - errors[1]!.savedBytes / errors[0]!.savedBytes;
  console.log(`fp8 store keeps ${(100 * (1 - saving)).toFixed(1)}% of the bf16 store's bytes (saves ${(100 * saving).toFixed(1)}%)`);
  const json = a.json ?? (a.cpuSmoke ? null : join("bench/results", `options-${deviceSlug(device)}-${info.date.slice(0, 10)}.json`));
  if (json) {
    mkdirSync(join(json, ".."), { recursive: true });
    Bun.write(json, JSON.stringify({ system: info, dtype, kernelPath: a.kernelPath, timing, gradientError: { shape: shapeKey(es), results: errors } }, null, 2));
    console.log(`wrote ${json}`);
  }
  timer.dispose();
  device.dispose();
}

main();
