// bench.ts: `bun run bench` — kernel times (CUDA events, median of >= 100 runs over rotated input
// sets), end-to-end JS call times (tinybench), measured ceilings and floors, cuBLAS baselines,
// accuracy against a float64 host reference, memory, then a console table, JSON and an SVG plot.
//
//   bun bench/bench.ts                          all shapes, bf16 + fp16, every op
//   bun bench/bench.ts --quick                  2 shapes, bf16 (under a minute on a GPU)
//   bun bench/bench.ts --shapes 8192x4096x14336,1x4096x14336 --dtype bf16 --op fwd,bwd-store
//   bun bench/bench.ts --cpu-smoke              one tiny shape, few runs: exits 0 on the CPU backend (CI)
//   bun bench/bench.ts --decode-sweep           fwd, bf16, dense M = 1..256 at K=4096 N=14336 (--shapes,
//                                               --dtype override), JSON + an SVG of the fraction of copy
//                                               bandwidth (weights' bytes / time) against M
//   bun bench/bench.ts --m-sweep                the same over M = 1..8192 (denser at the kernel
//                                               crossovers); the SVG shows the fraction of the floor
//                                               (compute or memory, whichever is larger), log M axis
//   bun bench/bench.ts --shapes 8192x4096x14336 --op fwd --rounds 7 --iters 30
//                                               the implementations of each op timed in 7 interleaved
//                                               rounds (rotated order, --iters runs each per round);
//                                               speed-ups also paired round by round (median, IQR),
//                                               which cancels the clock drift between rounds
// Other flags: --json <path> --plot <path> --out-dir <dir> --iters <n> --warmup <n> --no-e2e
//   --dtype float32 (reference only) --backend cpu (force the CPU backend on a GPU machine)
// On the CPU backend only tiny shapes run (larger ones are replaced, and it says so).
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Device, Tensor, type FloatDType } from "../src/index.ts";
import { OPS, ShapeBench, flopsOf, memoryOf, minBytesOf, parseShape, shapeKey, BYTES, type Op, type Shape } from "./cases.ts";
import { floorMs, measureCopy, measureMatmul, type Ceilings } from "./ceilings.ts";
import { Cublas } from "./cublas.ts";
import { copyD2D, devicePtr } from "./data.ts";
import { writeDecodePlot, writePlot } from "./plot.ts";
import { TOLERANCE } from "./reference.ts";
import { printShapeTable, writeJson, type CaseResult, type MemoryResult, type Results } from "./report.ts";
import { deviceSlug, sysInfo } from "./sysinfo.ts";
import { EventTimer, pairedRatio, stats, timeEndToEnd, timeInRounds } from "./timing.ts";

const FULL_SHAPES = [
  "1x4096x14336", "16x4096x14336", "128x4096x14336", "2048x4096x14336", "8192x4096x14336",
  "8192x4096x11008", "4096x2048x5632", "16384x1024x2816",
];
const QUICK_SHAPES = ["16x4096x14336", "2048x4096x14336"];
/** --decode-sweep: dense M (denser around the kernel crossovers), Llama-3-8B layer. */
const DECODE_SWEEP_MS = [
  1, 2, 4, 8, 12, 16, 17, 20, 24, 28, 32, 40, 48, 56, 64, 72, 80, 96, 112, 120, 128, 129, 136, 144, 160, 176, 192,
  208, 224, 240, 256,
];
/** --m-sweep: every kernel family's range up to the large-M shapes, denser at the crossovers (16/17, 256/257). */
const M_SWEEP_MS = [
  1, 4, 8, 16, 17, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 257, 288, 320, 384, 448, 512, 640, 768, 1024, 1280,
  1536, 2048, 3072, 4096, 6144, 8192,
];
const CPU_SHAPES = ["1x128x256", "16x128x256", "64x256x512"];
const CPU_SMOKE_SHAPES = ["16x64x96"];
/** Largest M·K·N run on the CPU backend. */
const CPU_MAX_WORK = 2 ** 24;

const DTYPE_ALIASES: Record<string, FloatDType> = {
  bf16: "bfloat16", bfloat16: "bfloat16", fp16: "float16", f16: "float16", float16: "float16", half: "float16",
  fp32: "float32", f32: "float32", float32: "float32",
};

interface Args {
  quick: boolean;
  cpuSmoke: boolean;
  decodeSweep: boolean;
  mSweep: boolean;
  shapes: string[] | null;
  dtypes: FloatDType[] | null;
  ops: Op[] | null;
  json: string | null;
  plot: string | null;
  outDir: string | null;
  iters: number | null;
  warmup: number | null;
  rounds: number;
  e2e: boolean;
  backend: "auto" | "cpu" | "cuda";
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, cpuSmoke: false, decodeSweep: false, mSweep: false, shapes: null, dtypes: null, ops: null, json: null, plot: null, outDir: null, iters: null, warmup: null, rounds: 4, e2e: true, backend: "auto" };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith("--")) throw new Error(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const [flag, inline] = f.includes("=") ? [f.slice(0, f.indexOf("=")), f.slice(f.indexOf("=") + 1)] : [f, undefined];
    const take = () => inline ?? value(i++, flag);
    switch (flag) {
      case "--quick": a.quick = true; break;
      case "--cpu-smoke": a.cpuSmoke = true; break;
      case "--decode-sweep": a.decodeSweep = true; break;
      case "--m-sweep": a.decodeSweep = a.mSweep = true; break;
      case "--no-e2e": a.e2e = false; break;
      case "--shapes": a.shapes = take().split(",").filter(Boolean); break;
      case "--dtype": a.dtypes = take().split(",").map((d) => {
        const t = DTYPE_ALIASES[d.trim()];
        if (!t) throw new Error(`--dtype: unknown '${d}' (bf16, fp16, fp32)`);
        return t;
      }); break;
      case "--op": a.ops = take().split(",").map((o) => {
        if (!(OPS as readonly string[]).includes(o)) throw new Error(`--op: unknown '${o}' (${OPS.join(", ")})`);
        return o as Op;
      }); break;
      case "--json": a.json = take(); break;
      case "--plot": a.plot = take(); break;
      case "--out-dir": a.outDir = take(); break;
      case "--iters": a.iters = Number(take()); break;
      case "--warmup": a.warmup = Number(take()); break;
      case "--rounds": {
        a.rounds = Number(take());
        if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error("--rounds: expected a whole number >= 1");
        break;
      }
      case "--backend": a.backend = take() as Args["backend"]; break;
      case "--help": case "-h":
        console.log("usage: see the header comment of bench/bench.ts");
        process.exit(0);
      default: throw new Error(`unknown flag ${f} (see the header of bench/bench.ts)`);
    }
  }
  return a;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const device = Device.open({ backend: args.cpuSmoke && args.backend === "auto" ? "auto" : args.backend });
  const cpu = device.backend === "cpu";
  const notes: string[] = [];
  const say = (s: string) => {
    console.log(s);
    notes.push(s);
  };

  // ---- what to run ----
  const decodeShapes = (args.mSweep ? M_SWEEP_MS : DECODE_SWEEP_MS).map((m) => `${m}x4096x14336`);
  let shapeTexts = args.shapes ?? (args.cpuSmoke ? CPU_SMOKE_SHAPES : args.quick ? QUICK_SHAPES : args.decodeSweep ? decodeShapes : FULL_SHAPES);
  if (cpu) {
    const tooBig = shapeTexts.filter((t) => { const s = parseShape(t); return s.M * s.K * s.N > CPU_MAX_WORK; });
    if (tooBig.length > 0 || !args.shapes) {
      shapeTexts = args.cpuSmoke ? CPU_SMOKE_SHAPES : shapeTexts.filter((t) => !tooBig.includes(t));
      if (shapeTexts.length === 0) shapeTexts = CPU_SHAPES;
      say(`CPU backend (${device.name}): tiny shapes only (${shapeTexts.join(", ")})` +
        (tooBig.length ? `; skipped ${tooBig.join(", ")}` : "") + ". Timings here say nothing about the GPU.");
    }
  }
  const shapes: Shape[] = shapeTexts.map(parseShape);
  const dtypes: FloatDType[] = args.dtypes ?? (args.quick || args.cpuSmoke || args.decodeSweep ? ["bfloat16"] : ["bfloat16", "float16"]);
  const ops: Op[] = args.ops ?? (args.decodeSweep ? ["fwd"] : [...OPS]);
  if (args.decodeSweep) args.e2e = false;
  const iters = args.iters ?? (args.cpuSmoke ? 10 : 100);
  const warmup = args.warmup ?? (args.cpuSmoke ? 2 : cpu ? 3 : 10);
  const e2eTime = args.cpuSmoke ? 20 : args.quick ? 100 : 200;
  const rotateBytes = cpu ? 0 : 256 * 2 ** 20;

  // ---- baselines and ceilings ----
  let cublas: Cublas | null = null;
  let cublasInfo: Results["cublas"];
  if (cpu) {
    cublasInfo = { skipped: "CPU backend: cuBLAS baselines skipped" };
    say("cuBLAS: skipped (CPU backend)");
  } else {
    const c = Cublas.open();
    if (typeof c === "string") {
      cublasInfo = { skipped: c };
      say(`cuBLAS: skipped (${c})`);
    } else {
      cublas = c;
      cublasInfo = { path: c.path, version: c.version };
      console.log(`cuBLAS ${c.version} from ${c.path}`);
    }
  }
  const system = sysInfo(device);
  console.log(`device: ${device.name} (${device.backend}, cc ${device.computeCapability}), driver ${system.driver ?? "?"}, CUDA ${system.cuda ?? "?"}, Bun ${Bun.version}`);
  const timer = new EventTimer(device);
  const copyBytes = cpu ? 64 * 2 ** 20 : 2 ** 30;
  const ceilings: Ceilings = { copyBytes, copyGBs: measureCopy(device, timer, copyBytes, cpu ? 5 : 20), matmul: {} };
  for (const dt of dtypes) {
    const n = cpu ? 256 : 8192;
    try {
      ceilings.matmul[dt] = measureMatmul(device, timer, cublas, dt, n, cpu ? 3 : 20);
    } catch (e) {
      say(`matmul ceiling ${dt}: failed (${(e as Error).message})`);
    }
  }
  console.log(`ceilings: copy ${ceilings.copyGBs.toFixed(0)} GB/s (read+write, ${copyBytes / 2 ** 20} MiB), matmul ` +
    Object.entries(ceilings.matmul).map(([d, m]) => `${d} ${m!.tflops.toFixed(1)} TFLOP/s (${m!.size}^3, ${m!.source})`).join(", "));

  // Head start before each timed loop: ~0.3 ms of copies so the host gets ahead of the GPU.
  const scratch = cpu ? null : Tensor.empty([64 * 2 ** 20], "float32", { device });
  const headStart = scratch
    ? () => {
        const half = scratch.numel * 2;
        for (let k = 0; k < 3; k++) copyD2D(device, devicePtr(scratch) + BigInt(half), devicePtr(scratch), half);
      }
    : undefined;
  scratch?.fill(0);

  // ---- cases ----
  const cases: CaseResult[] = [];
  const memory: MemoryResult[] = [];
  let failures = 0;
  for (const dtype of dtypes) {
    for (const shape of shapes) {
      let sb: ShapeBench;
      try {
        // The sweep checks 2 sampled rows per shape (the float64 reference of a row costs ~0.3 s here).
        sb = new ShapeBench({ device, shape, dtype, cublas, rotateBytes, sampleRows: args.decodeSweep ? 2 : undefined });
      } catch (e) {
        say(`${shapeKey(shape)} ${dtype}: setup failed: ${(e as Error).message}`);
        failures++;
        continue;
      }
      const shapeCases: CaseResult[] = [];
      const mem: MemoryResult = { shape, dtype, ...memoryOf(shape, dtype, sb.workspaceBytes), method: "computed from allocations" };
      memory.push(mem);
      for (const op of ops) {
        const runnables = sb.runnables(op);
        const checked = new Map<string, Pick<CaseResult, "checks" | "maxError" | "pass">>();
        for (const r of runnables) {
          try {
            const checks = r.check?.() ?? [];
            const maxError = checks.length ? Math.max(...checks.map((c) => c.normwise)) : null;
            const pass = maxError === null ? null : maxError <= TOLERANCE[dtype];
            if (pass === false) {
              failures++;
              console.error(`CHECK FAILED: ${shapeKey(shape)} ${dtype} ${op} ${r.impl}: ` + checks.map((c) => `${c.name} ${c.normwise.toExponential(2)}`).join(", "));
            }
            checked.set(r.impl, { checks, maxError, pass });
          } catch (e) {
            failures++;
            say(`${shapeKey(shape)} ${dtype} ${op} ${r.impl}: failed: ${(e as Error).message}`);
          }
        }
        const timed = timeInRounds(
          timer, runnables.filter((r) => checked.has(r.impl)).map((r) => ({ name: r.impl, run: r.run })), args.rounds,
          { warmup, iters, headStart },
          (impl, e) => {
            failures++;
            say(`${shapeKey(shape)} ${dtype} ${op} ${impl}: failed: ${(e as Error).message}`);
          },
        );
        const flops = flopsOf(op, shape);
        const minBytes = minBytesOf(op, shape, dtype);
        const floor = floorMs(flops, minBytes, ceilings, dtype);
        const readsWeights = !op.startsWith("act");
        const opCases: CaseResult[] = [];
        for (const r of runnables) {
          const rounds = timed.get(r.impl);
          if (!rounds) continue;
          const st = stats(rounds.flat());
          opCases.push({
            shape, dtype, op, impl: r.impl, sets: sb.nSets,
            kernelMs: st,
            e2eMs: null, flops, minBytes, floorMs: floor, fractionOfFloor: floor / st.median,
            tflops: flops > 0 ? flops / (st.median * 1e-3) / 1e12 : null,
            gbs: minBytes / (st.median * 1e-3) / 1e9,
            // Weights read once: the forward's traffic (the backward also writes dW, fwdbwd reads W twice).
            weightGBs: shape.M <= 128 && readsWeights && !op.startsWith("fwdbwd") && op.startsWith("fwd")
              ? (2 * shape.K * shape.N * BYTES[dtype]) / (st.median * 1e-3) / 1e9 : null,
            speedup: {}, ...checked.get(r.impl)!,
          });
        }
        if (args.e2e && opCases.length > 0) {
          const ok = runnables.filter((r) => opCases.some((c) => c.impl === r.impl));
          try {
            const e2e = await timeEndToEnd(ok.map((r) => ({ name: r.impl, run: r.run })), device, { timeMs: e2eTime, minIters: 10 });
            for (const c of opCases) c.e2eMs = e2e.get(c.impl) ?? null;
          } catch (e) {
            say(`${shapeKey(shape)} ${dtype} ${op}: end-to-end timing failed: ${(e as Error).message}`);
          }
        }
        const fused = opCases.find((c) => c.impl === "fused");
        if (fused) {
          const baselines = opCases.filter((c) => c !== fused);
          for (const c of baselines) fused.speedup[c.impl] = c.kernelMs.median / fused.kernelMs.median;
          if (args.rounds > 1 && baselines.length > 0) {
            fused.pairedSpeedup = Object.fromEntries(baselines.map((c) => [c.impl, pairedRatio(timed.get(c.impl)!, timed.get("fused")!)]));
          }
        }
        shapeCases.push(...opCases);
      }
      printShapeTable(shapeCases, mem);
      cases.push(...shapeCases);
      sb.dispose();
      device.synchronize();
    }
  }
  scratch?.dispose();
  timer.dispose();

  // ---- files ----
  const date = new Date().toISOString().slice(0, 10);
  const outDir = args.outDir ?? (args.cpuSmoke ? join(tmpdir(), "fused-swiglu-bench") : join(import.meta.dir, "results"));
  const jsonPath = args.json ?? join(outDir, `${deviceSlug(device)}-${date}${args.mSweep ? "-m-sweep" : args.decodeSweep ? "-decode-sweep" : ""}.json`);
  const plotPath = args.plot ?? jsonPath.replace(/\.json$/, "") + ".svg";
  const results: Results = {
    system, cublas: cublasInfo, ceilings,
    settings: { shapes: shapes.map(shapeKey), dtypes, ops, iters, warmup, rounds: args.rounds, rotateBytes, e2eTimeMs: args.e2e ? e2eTime : null, tolerance: TOLERANCE, weightLayout: "packed [K, 2N], gate columns first" },
    notes, cases, memory,
  };
  writeJson(jsonPath, results);
  console.log(`\nresults: ${jsonPath}`);
  if (args.decodeSweep) {
    if (writeDecodePlot(plotPath, results)) console.log(`plot: ${plotPath}`);
    else console.log("plot: skipped (no fwd case)");
  } else if (writePlot(plotPath, results)) console.log(`plot: ${plotPath}`);
  else console.log("plot: skipped (no case at K=4096, N=14336)");
  cublas?.dispose();
  if (failures > 0) console.error(`${failures} check(s) or case(s) failed`);
  return failures > 0 ? 1 : 0;
}

process.exit(await main());
