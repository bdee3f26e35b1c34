// fp16-accumulation.ts: `bun bench/fp16-accumulation.ts` — what fp16 accumulation
// (Device.fp16Accumulation, fattorib's FastAccumFusedSwiGLU) buys and costs, float16:
//   1. time (CUDA events, interleaved rounds whose order rotates; paired speed-up per round, median
//      and IQR): the fused forward and the stored-mode backward on the sm_80 kernels, the ones that
//      take the permission (kernel path 80 on Hopper; the auto path elsewhere), with fp32 and with
//      fp16 sums; beside them the auto path's default and cuBLAS's x·[Wg|Wu] GEMM (the forward's
//      FLOPs) with CUBLAS_COMPUTE_32F and _16F, whose ratio is what this GPU's tensor cores gain
//      from fp16 sums (NVIDIA lists 2x on GeForce sm_86/sm_89, 1x on A100/H100/H200);
//   2. error: z, dX, dWg, dWu of both settings against a float32 run of the same inputs.
//
//   bun bench/fp16-accumulation.ts                       8192x4096x14336 and 2048x4096x14336
//   bun bench/fp16-accumulation.ts --shapes 4096x4096x11008 --rounds 6 --iters 10 --json out.json
//   bun bench/fp16-accumulation.ts --cpu-smoke           one tiny shape on the CPU backend (CI)
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  Device, SwiGLUContext, SwiGLUFunction, Storage, Tensor, backwardWorkspaceSize, fusedSwiglu, fusedSwigluBackward,
  type KernelPath,
} from "../src/index.ts";
import { parseOptionBenchArgs, type OptionBenchArgs } from "./args.ts";
import { parseShape, shapeKey, type Shape } from "./cases.ts";
import { Cublas } from "./cublas.ts";
import { devicePtr, randomRaw, upload } from "./data.ts";
import { relErr } from "./reference.ts";
import { deviceSlug, sysInfo } from "./sysinfo.ts";
import { EventTimer, pairedRatio, quantile, timeInRounds } from "./timing.ts";

type Args = OptionBenchArgs;

const parseArgs = (argv: string[]): Args =>
  parseOptionBenchArgs(argv, { shapes: ["8192x4096x14336", "2048x4096x14336"], errorShape: "1024x4096x14336", rounds: 6, iters: 10, json: null, cpuSmoke: false });

const dtype = "float16" as const;

interface Inputs {
  x: Tensor;
  w: Tensor; // packed [K, 2N]
  wg: Tensor;
  wu: Tensor;
  dz: Tensor;
}

function inputs(device: Device, s: Shape, seed: number): Inputs {
  const { M, K, N } = s;
  const x = upload(randomRaw(dtype, M * K, 1, seed), [M, K], dtype, device);
  const w = upload(randomRaw(dtype, 2 * K * N, 1 / Math.sqrt(K), seed + 1), [K, 2 * N], dtype, device);
  const [wg, wu] = w.chunk(2, 1) as [Tensor, Tensor];
  const dz = upload(randomRaw(dtype, M * N, 1, seed + 2), [M, N], dtype, device);
  return { x, w, wg, wu, dz };
}

/** Runs fn with the device's kernel path and fp16 permission set, restoring the defaults after. */
function withSetting<T>(device: Device, path: KernelPath, fp16: boolean, fn: () => T): T {
  if (device.backend === "cuda") device.setKernelPath(path);
  device.fp16Accumulation = fp16;
  try {
    return fn();
  } finally {
    if (device.backend === "cuda") device.setKernelPath(0);
    device.fp16Accumulation = false;
  }
}

interface TimedRow {
  name: string;
  medianMs: number;
  tflops: number;
}

interface ShapeTiming {
  rows: TimedRow[];
  /** fp16 sums over fp32 sums on the same kernels, paired per round: median and IQR. */
  forwardSpeedup: { median: number; iqr: [number, number] };
  backwardSpeedup: { median: number; iqr: [number, number] };
  cublasSpeedup: { median: number; iqr: [number, number] } | null;
}

function benchShape(device: Device, timer: EventTimer, cublas: Cublas | null, s: Shape, a: Args): ShapeTiming {
  const { M, K, N } = s;
  const sm80: KernelPath = device.hopperKernels ? 80 : 0;
  const inp = inputs(device, s, 1);
  const t = (shape: number[]) => Tensor.empty(shape, dtype, { device });
  const [z, aSaved, bSaved, dx] = [t([M, N]), t([M, N]), t([M, N]), t([M, K])];
  const dw = t([K, 2 * N]);
  const [dwg, dwu] = dw.chunk(2, 1) as [Tensor, Tensor];
  const y = t([M, 2 * N]);
  const workspace = new Storage(device, backwardWorkspaceSize(inp.x, N));
  workspace.retain();
  fusedSwiglu(inp.x, inp.wg, inp.wu, { out: z, aOut: aSaved, bOut: bSaved });
  const forward = () => void fusedSwiglu(inp.x, inp.wg, inp.wu, { out: z });
  const backward = () => fusedSwigluBackward(inp.dz, inp.x, inp.wg, inp.wu, { aSaved, bSaved, dx, dwGate: dwg, dwUp: dwu, workspace });
  const cublasGemm = (accumulate: "fp32" | "fp16") => () =>
    cublas!.gemm({ dtype, M, N: 2 * N, K, a: devicePtr(inp.x), lda: K, b: devicePtr(inp.w), ldb: 2 * N, c: devicePtr(y), ldc: 2 * N, accumulate });
  const runs: { name: string; run: () => void; flops: number }[] = [
    { name: "fwd fp32 sums", run: () => withSetting(device, sm80, false, forward), flops: 4 * M * K * N },
    { name: "fwd fp16 sums", run: () => withSetting(device, sm80, true, forward), flops: 4 * M * K * N },
    { name: "fwd auto path (default)", run: () => withSetting(device, 0, false, forward), flops: 4 * M * K * N },
    { name: "bwd fp32 sums", run: () => withSetting(device, sm80, false, backward), flops: 8 * M * K * N },
    { name: "bwd fp16 sums", run: () => withSetting(device, sm80, true, backward), flops: 8 * M * K * N },
  ];
  if (cublas) {
    runs.push({ name: "cuBLAS x·[Wg|Wu] fp32 sums", run: cublasGemm("fp32"), flops: 4 * M * K * N });
    runs.push({ name: "cuBLAS x·[Wg|Wu] fp16 sums", run: cublasGemm("fp16"), flops: 4 * M * K * N });
  }
  try {
    const samples = timeInRounds(timer, runs, a.rounds, { warmup: 2, iters: a.iters });
    const rows = runs.map((r) => {
      const medianMs = quantile(samples.get(r.name)!.flat(), 0.5);
      return { name: r.name, medianMs, tflops: r.flops / (medianMs * 1e-3) / 1e12 };
    });
    const speedup = (fast: string, slow: string) => {
      const p = pairedRatio(samples.get(slow)!, samples.get(fast)!);
      return { median: p.median, iqr: p.iqr };
    };
    return {
      rows,
      forwardSpeedup: speedup("fwd fp16 sums", "fwd fp32 sums"),
      backwardSpeedup: speedup("bwd fp16 sums", "bwd fp32 sums"),
      cublasSpeedup: cublas ? speedup("cuBLAS x·[Wg|Wu] fp16 sums", "cuBLAS x·[Wg|Wu] fp32 sums") : null,
    };
  } finally {
    for (const u of [inp.x, inp.w, inp.dz, z, aSaved, bSaved, dx, dw, y]) u.dispose();
    workspace.release();
  }
}

interface ErrorRow {
  sums: "fp32" | "fp16";
  z: number;
  dx: number;
  dwGate: number;
  dwUp: number;
}

/** z and the gradients with fp32 and with fp16 sums on the sm_80 kernels, against a float32 run. */
function errors(device: Device, s: Shape): ErrorRow[] {
  const inp = inputs(device, s, 11);
  const run = (x: Tensor, wg: Tensor, wu: Tensor, dz: Tensor) => {
    const ctx = new SwiGLUContext();
    const z = SwiGLUFunction.forward(ctx, x, wg, wu, { saveForBackward: "preactivations" });
    const g = SwiGLUFunction.backward(ctx, dz);
    const out = { z: z.toFloat32(), dx: g.dx!.toFloat32(), dwGate: g.dwGate!.toFloat32(), dwUp: g.dwUp!.toFloat32() };
    for (const u of [z, g.dx, g.dwGate, g.dwUp]) u?.dispose();
    return out;
  };
  const f32 = [inp.x, inp.wg, inp.wu, inp.dz].map((u) => Tensor.fromFloat32(u.toFloat32(), u.shape, "float32", { device }));
  try {
    const truth = run(f32[0]!, f32[1]!, f32[2]!, f32[3]!);
    const sm80: KernelPath = device.hopperKernels ? 80 : 0;
    return (["fp32", "fp16"] as const).map((sums) => {
      const r = withSetting(device, sm80, sums === "fp16", () => run(inp.x, inp.wg, inp.wu, inp.dz));
      return { sums, z: relErr(r.z, truth.z), dx: relErr(r.dx, truth.dx), dwGate: relErr(r.dwGate, truth.dwGate), dwUp: relErr(r.dwUp, truth.dwUp) };
    });
  } finally {
    for (const u of [inp.x, inp.w, inp.dz, ...f32]) u.dispose();
  }
}

const fmtRatio = (r: { median: number; iqr: [number, number] }) => `${r.median.toFixed(3)}x (IQR ${r.iqr[0].toFixed(3)}..${r.iqr[1].toFixed(3)})`;

function main(): void {
  const a = parseArgs(process.argv.slice(2));
  const device = Device.open({ backend: a.cpuSmoke ? "cpu" : "auto" });
  const info = sysInfo(device);
  const opened = device.backend === "cuda" ? Cublas.open() : "CPU backend";
  const cublas = typeof opened === "string" ? null : opened;
  const timer = new EventTimer(device);
  const kernels = device.backend === "cpu" ? "the CPU backend, which keeps fp32 sums" : `the sm_80 kernels (kernel path ${device.hopperKernels ? 80 : "0"})`;
  console.log(`fp16 accumulation bench on ${info.gpuName ?? device.name}, ${dtype}; "fp32/fp16 sums" rows run on ${kernels}`);
  if (!cublas) console.log(`cuBLAS rows left out: ${opened}`);
  const timing: Record<string, ShapeTiming> = {};
  for (const text of a.shapes) {
    const s = parseShape(text);
    const r = benchShape(device, timer, cublas, s, a);
    timing[shapeKey(s)] = r;
    console.log(`\n${shapeKey(s)}:`);
    console.table(r.rows.map((row) => ({ run: row.name, ms: row.medianMs.toFixed(4), "TFLOP/s": row.tflops.toFixed(1) })));
    console.log(`fp16 sums over fp32 sums, paired over ${a.rounds} rounds: fwd ${fmtRatio(r.forwardSpeedup)}, bwd ${fmtRatio(r.backwardSpeedup)}` +
      (r.cublasSpeedup ? `, cuBLAS GEMM ${fmtRatio(r.cublasSpeedup)}` : ""));
  }
  const es = parseShape(a.errorShape);
  const err = errors(device, es);
  console.log(`\n${shapeKey(es)} relative Frobenius error against a float32 run of the same inputs:`);
  console.table(err.map((e) => ({ sums: e.sums, z: e.z.toExponential(2), dx: e.dx.toExponential(2), dWg: e.dwGate.toExponential(2), dWu: e.dwUp.toExponential(2) })));
  const json = a.json ?? (a.cpuSmoke ? null : join("bench/results", `fp16-accumulation-${deviceSlug(device)}-${info.date.slice(0, 10)}.json`));
  if (json) {
    mkdirSync(join(json, ".."), { recursive: true });
    Bun.write(json, JSON.stringify({ system: info, dtype, timing, error: { shape: shapeKey(es), results: err } }, null, 2));
    console.log(`wrote ${json}`);
  }
  cublas?.dispose();
  timer.dispose();
  device.dispose();
}

main();
