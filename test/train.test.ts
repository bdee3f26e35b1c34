// train.test.ts: training can never silently break. Runs `examples/train-mnist.ts --quick` (one
// epoch on 1,000 real MNIST digits, fused and unfused SwiGLU side by side) as a subprocess on the
// CPU backend, and on CUDA when a GPU is present, and checks its JSON: both losses decrease, the
// two modes' per-step losses agree (fp32: relative difference < 1e-4), accuracy is far above
// chance, and the table and plot were written.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunResult } from "../examples/train-mnist.ts";
import { hasCuda } from "./helpers.ts";

const root = join(import.meta.dir, "..");
const outDir = mkdtempSync(join(tmpdir(), "fsg-mnist-"));
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

function quickRun(backend: "cpu" | "cuda"): { exitCode: number; output: string; result: RunResult | null } {
  const out = join(outDir, backend);
  const proc = Bun.spawnSync([process.execPath, "examples/train-mnist.ts", "--quick", "--backend", backend, "--out", out], {
    cwd: root, stdout: "pipe", stderr: "pipe", env: process.env,
  });
  const output = proc.stdout.toString() + proc.stderr.toString();
  // mnist-cpu-float32-quick.json on the CPU backend, mnist-<gpu name>-float32-quick.json on CUDA
  const path = existsSync(out) ? Array.from(new Bun.Glob("mnist-*-float32-quick.json").scanSync(out)).map((f) => join(out, f))[0] : undefined;
  const result = path ? (JSON.parse(readFileSync(path, "utf8")) as RunResult) : null;
  return { exitCode: proc.exitCode ?? -1, output, result };
}

const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;

for (const backend of ["cpu", "cuda"] as const) {
  describe.if(backend === "cpu" || hasCuda)(`MNIST --quick [${backend} backend]`, () => {
    let run: ReturnType<typeof quickRun> | null = null;
    const get = () => (run ??= quickRun(backend));

    test("runs, passes its own checks and writes the table, JSON and plot", () => {
      const { exitCode, output, result } = get();
      if (exitCode !== 0) console.error(output);
      expect(exitCode).toBe(0);
      expect(result).not.toBeNull();
      expect(result!.system.backend).toBe(backend);
      expect(result!.checks.length).toBeGreaterThanOrEqual(5);
      expect(result!.checks.every((c) => c.pass)).toBe(true);
      for (const f of result!.files) expect(existsSync(f)).toBe(true);
      const svg = readFileSync(result!.files.find((f) => f.endsWith(".svg"))!, "utf8");
      expect(svg.startsWith("<svg")).toBe(true);
      expect(svg).toContain("fused");
      expect(output).toContain("| epoch |");
    });

    test("both modes learn: the training loss falls and held-out accuracy is far above chance", () => {
      const r = get().result!;
      for (const mode of ["fused", "unfused"] as const) {
        const losses = r.modes[mode].stepLosses;
        expect(losses.length).toBe(20);
        expect(losses.every(Number.isFinite)).toBe(true);
        expect(losses[0]!).toBeGreaterThan(1.8); // about ln(10) at the start
        expect(mean(losses.slice(-5))).toBeLessThan(0.6 * mean(losses.slice(0, 5)));
        expect(r.modes[mode].epochs[0]!.testAccuracy).toBeGreaterThan(0.7);
      }
    });

    test("fused and unfused per-step losses agree (fp32 relative difference < 1e-4)", () => {
      const { fused, unfused } = get().result!.modes;
      expect(fused.stepLosses.length).toBe(unfused.stepLosses.length);
      fused.stepLosses.forEach((f, i) => {
        const u = unfused.stepLosses[i]!;
        expect(Math.abs(f - u) / u).toBeLessThan(1e-4);
      });
    });

    test("the fused layer keeps less for backward than the unfused one", () => {
      const { fused, unfused } = get().result!.modes;
      expect(fused.saved.intermediate).toBe(0); // --save input: pre-activations are recomputed
      expect(unfused.saved.intermediate).toBe(50 * 2 * 64 * 4); // the packed [B, 2H] fp32 buffer
      expect(fused.saved.input).toBe(50 * 784 * 4);
    });
  });
}
