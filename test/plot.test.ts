// The benchmark's decode / M-sweep plot (bench/plot.ts) from a synthetic result set: a sweep up to
// 256 rows plots the fraction of copy bandwidth on a linear M axis with the 80% target line; a
// sweep past 256 (--m-sweep) plots each case's fraction of the floor on a log M axis.
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeDecodePlot } from "../bench/plot.ts";
import type { CaseResult, Results } from "../bench/report.ts";

const K = 4096, N = 14336, COPY_GBS = 3000;

function fwdCase(M: number, impl: "fused" | "cublas-unfused", ms: number, fractionOfFloor: number): CaseResult {
  const stats = { median: ms, min: ms, max: ms, mean: ms, n: 1 };
  return {
    shape: { M, K, N }, dtype: "bfloat16", op: "fwd", impl, sets: 1, kernelMs: stats, e2eMs: null,
    flops: 4 * M * K * N, minBytes: 0, floorMs: ms * fractionOfFloor, fractionOfFloor, tflops: null, gbs: 0,
    weightGBs: null, speedup: {}, checks: [], maxError: null, pass: true,
  } as CaseResult;
}

function results(ms: number[]): Results {
  const cases = ms.flatMap((M) => [fwdCase(M, "fused", 0.1 + M / 1e5, 0.9), fwdCase(M, "cublas-unfused", 0.12 + M / 1e5, 0.7)]);
  return {
    system: { device: "synthetic GPU", gpuName: "synthetic GPU", date: "2026-11-23T00:00:00Z" },
    ceilings: { copyBytes: 1 << 30, copyGBs: COPY_GBS, matmul: {} },
    cases,
  } as unknown as Results;
}

function plot(ms: number[]): string {
  const dir = mkdtempSync(join(tmpdir(), "fsg-plot-"));
  try {
    const path = join(dir, "p.svg");
    expect(writeDecodePlot(path, results(ms))).toBe(true);
    return readFileSync(path, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const circles = (svg: string) => svg.match(/<circle /g)?.length ?? 0;

test("decode sweep (M <= 256): copy-bandwidth fraction, linear M axis, the 80% target", () => {
  const svg = plot([1, 16, 17, 128, 256]);
  expect(svg).toContain("fraction of copy bandwidth");
  expect(svg).toContain("80% target");
  expect(svg).not.toContain("log scale");
  expect(circles(svg)).toBe(10); // 5 M x 2 implementations
});

test("M sweep (past 256): fraction of the floor on a log M axis with power-of-two ticks", () => {
  const ms = [1, 16, 256, 257, 2048, 8192];
  const svg = plot(ms);
  expect(svg).toContain("fraction of the floor");
  expect(svg).toContain("log scale");
  expect(svg).not.toContain("80% target");
  expect(circles(svg)).toBe(12);
  for (const tick of [1, 2, 1024, 8192]) expect(svg).toContain(`>${tick}</text>`);
  // log axis: M = 1 at the left edge, 8192 at the right, 2^k evenly spaced between.
  const xOf = (m: number) => Number(new RegExp(`<text x="([0-9.]+)"[^>]*>${m}</text>`).exec(svg)![1]);
  expect(xOf(4) - xOf(2)).toBeCloseTo(xOf(2048) - xOf(1024), 6);
});
