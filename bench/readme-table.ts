// readme-table.ts: prints a markdown table from the newest bench.ts results JSON in bench/results
// (or the file given; the other benches' JSONs there are skipped): per shape and dtype, the fused time and TFLOP/s of fwd, bwd-store and
// fwdbwd-store, fraction of floor, and the speed-up over the cuBLAS (or library) unfused path.
//   bun bench/readme-table.ts [results.json]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { CaseResult, Results } from "./report.ts";

/** A bench.ts results file (options, graph, load and the other benches write other shapes). */
function isBenchResults(path: string): boolean {
  try {
    const r = JSON.parse(readFileSync(path, "utf8")) as Partial<Results>;
    return Array.isArray(r.cases) && r.settings !== undefined && r.ceilings !== undefined && r.system !== undefined;
  } catch {
    return false;
  }
}

function newest(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => join(dir, f)).filter(isBenchResults);
  if (files.length === 0) throw new Error(`no bench.ts results JSON in ${dir}: run \`bun run bench\` first`);
  return files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
}

const path = process.argv[2] ?? newest(join(import.meta.dir, "results"));
const r = JSON.parse(readFileSync(path, "utf8")) as Results;
const OPS = ["fwd", "bwd-store", "fwdbwd-store"] as const;
const DT: Record<string, string> = { bfloat16: "bf16", float16: "fp16", float32: "fp32" };
// Samples per median: iters per round times rounds (files from before --rounds have none: 1).
const iters = Number(r.settings.iters);
const rounds = Number(r.settings.rounds ?? 1);

console.log(`Measured on ${r.system.gpuName ?? r.system.device} (driver ${r.system.driver ?? "?"}, CUDA ${r.system.cuda ?? "?"}), ${r.system.date.slice(0, 10)}; ` +
  `ceilings: copy ${r.ceilings.copyGBs.toFixed(0)} GB/s, matmul ${Object.entries(r.ceilings.matmul).map(([d, m]) => `${DT[d] ?? d} ${m!.tflops.toFixed(0)} TFLOP/s`).join(", ")}. ` +
  `Kernel time: median of ${iters * rounds} runs (CUDA events${rounds > 1 ? `, ${rounds} rounds in rotated order` : ""}).\n`);
console.log("| M x K x N | dtype | op | fused ms | TFLOP/s | of floor | vs cuBLAS unfused | vs cuBLAS GEMM only | vs library unfused | rel. err |");
console.log("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
for (const c of r.cases) {
  if (c.impl !== "fused" || !(OPS as readonly string[]).includes(c.op)) continue;
  const sp = (impl: string) => (c.speedup[impl] ? `${c.speedup[impl]!.toFixed(2)}x` : "-");
  console.log(`| ${c.shape.M} x ${c.shape.K} x ${c.shape.N} | ${DT[c.dtype] ?? c.dtype} | ${c.op} | ${c.kernelMs.median.toFixed(3)} | ` +
    `${c.tflops === null ? "-" : c.tflops.toFixed(0)} | ${(100 * c.fractionOfFloor).toFixed(0)}% | ${sp("cublas-unfused")} | ${sp("cublas-gemm")} | ` +
    `${sp("lib-unfused")} | ${c.maxError === null ? "-" : c.maxError.toExponential(1)} |`);
}
