// report.ts: the results' shape, the console table per shape and dtype, and the JSON file.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { FloatDType } from "../src/index.ts";
import type { CheckResult, Impl, Op, Shape } from "./cases.ts";
import type { Ceilings } from "./ceilings.ts";
import type { SysInfo } from "./sysinfo.ts";
import type { E2EStats, PairedRatio, Stats } from "./timing.ts";

export interface CaseResult {
  shape: Shape;
  dtype: FloatDType;
  op: Op;
  impl: Impl;
  /** Rotated input sets the timed runs cycled through. */
  sets: number;
  kernelMs: Stats;
  e2eMs: E2EStats | null;
  flops: number;
  minBytes: number;
  floorMs: number;
  /** floorMs / kernel median: 1 = at the floor. */
  fractionOfFloor: number;
  tflops: number | null;
  /** minimum bytes / kernel median. */
  gbs: number;
  /** Weight bytes / kernel median, for M <= 128 (the weight-streaming regime). */
  weightGBs: number | null;
  /** Baseline median / this median, for the fused implementation (key: baseline impl). */
  speedup: Record<string, number>;
  /** With --rounds > 1: the same paired round by round (baseline over fused in each round). */
  pairedSpeedup?: Record<string, PairedRatio>;
  checks: CheckResult[];
  /** Largest normwise relative error of the checks (null: not checked). */
  maxError: number | null;
  pass: boolean | null;
}

export interface MemoryResult {
  shape: Shape;
  dtype: FloatDType;
  savedStore: number;
  savedRecompute: number;
  savedUnfused: number;
  peakStore: number;
  peakRecompute: number;
  peakUnfused: number;
  workspaceBytes: number;
  method: string;
}

export interface Results {
  system: SysInfo;
  cublas: { path: string; version: number } | { skipped: string };
  ceilings: Ceilings;
  settings: Record<string, unknown>;
  notes: string[];
  cases: CaseResult[];
  memory: MemoryResult[];
}

const fmt = (v: number | null | undefined, digits = 3): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return v === Infinity ? "inf" : "-";
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(1);
  return v.toPrecision(digits);
};

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")).join("\n");
}

/** The console table of one shape and dtype. */
export function printShapeTable(cases: CaseResult[], memory: MemoryResult | undefined): void {
  if (cases.length === 0) return;
  const { shape, dtype } = cases[0]!;
  console.log(`\n== ${shape.M}x${shape.K}x${shape.N} (MxKxN) ${dtype}, ${cases[0]!.sets} rotated input set(s) ==`);
  const showW = shape.M <= 128;
  const head = ["op", "impl", "ms med", "min", "max", "TFLOP/s", showW ? "GB/s W" : "GB/s", "floor", "vs lib-unf", "vs cuBLAS-unf", "vs GEMM", "rel err", "e2e ms"];
  const rows = [head];
  for (const c of cases) {
    rows.push([
      c.op, c.impl, fmt(c.kernelMs.median), fmt(c.kernelMs.min), fmt(c.kernelMs.max), fmt(c.tflops),
      fmt(showW ? c.weightGBs ?? c.gbs : c.gbs, 4), `${(100 * c.fractionOfFloor).toFixed(0)}%`,
      c.speedup["lib-unfused"] ? `${c.speedup["lib-unfused"].toFixed(2)}x` : "",
      c.speedup["cublas-unfused"] ? `${c.speedup["cublas-unfused"].toFixed(2)}x` : "",
      c.speedup["cublas-gemm"] ? `${c.speedup["cublas-gemm"].toFixed(2)}x` : "",
      c.maxError === null ? "" : `${fmt(c.maxError, 2)}${c.pass ? "" : " FAIL"}`,
      fmt(c.e2eMs?.median),
    ]);
  }
  console.log(table(rows));
  for (const c of cases) {
    const paired = Object.entries(c.pairedSpeedup ?? {});
    if (paired.length === 0) continue;
    const parts = paired.map(([impl, r]) => `vs ${impl} ${r.median.toFixed(3)}x (IQR ${r.iqr[0].toFixed(3)}..${r.iqr[1].toFixed(3)})`);
    console.log(`${c.op} ${c.impl}, paired over ${paired[0]![1].perRound.length} rounds: ${parts.join(", ")}`);
  }
  if (memory) {
    console.log(
      `memory kept for backward: store ${mib(memory.savedStore)}, recompute ${mib(memory.savedRecompute)}, ` +
        `unfused ${mib(memory.savedUnfused)}; peak fwd+bwd (${memory.method}): store ${mib(memory.peakStore)}, ` +
        `recompute ${mib(memory.peakRecompute)}, unfused ${mib(memory.peakUnfused)}`,
    );
  }
}

export function writeJson(path: string, results: Results): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(results, null, 1)}\n`);
}
