// examples.test.ts: the demo (the project's main job) and the benchmark harness keep working.
// They run as subprocesses on the CPU backend with tiny shapes; their speed is never asserted.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const root = join(import.meta.dir, "..");

function runBun(args: string[]): { exitCode: number; output: string } {
  const proc = Bun.spawnSync([process.execPath, ...args], { cwd: root, stdout: "pipe", stderr: "pipe", env: process.env });
  return { exitCode: proc.exitCode ?? -1, output: proc.stdout.toString() + proc.stderr.toString() };
}

describe("examples", () => {
  test("the demo verifies itself on the CPU backend", () => {
    const { exitCode, output } = runBun(["examples/demo.ts", "--backend", "cpu", "--m", "17", "--k", "96", "--n", "80"]);
    expect(output).toContain("PASS");
    expect(output).not.toContain("FAIL");
    expect(exitCode).toBe(0);
  });

  test("the README's quick start runs", () => {
    const { exitCode, output } = runBun(["examples/quickstart.ts", "--small"]);
    expect(output).toContain("grads: wGate, wUp, bGate, bUp");
    expect(output).toContain("recompute-mode grads: dx, dwGate, dwUp, dbGate, dbUp");
    expect(exitCode).toBe(0);
  });

  test("the benchmark harness runs end to end (--cpu-smoke)", () => {
    const { exitCode, output } = runBun(["bench/bench.ts", "--cpu-smoke"]);
    if (exitCode !== 0) console.error(output);
    expect(exitCode).toBe(0);
  });

  test("the benchmark harness times in interleaved rounds and pairs the speed-ups (--cpu-smoke --rounds 2)", () => {
    const { exitCode, output } = runBun(["bench/bench.ts", "--cpu-smoke", "--rounds", "2", "--no-e2e", "--op", "fwd"]);
    if (exitCode !== 0) console.error(output);
    expect(exitCode).toBe(0);
    expect(output).toMatch(/fwd fused, paired over 2 rounds: vs lib-unfused \d+\.\d+x \(IQR \d+\.\d+\.\.\d+\.\d+\)/);
  });

  test("the options bench (variants, fp8 saves) runs end to end (--cpu-smoke)", () => {
    const { exitCode, output } = runBun(["bench/options.ts", "--cpu-smoke"]);
    if (exitCode !== 0) console.error(output);
    expect(exitCode).toBe(0);
    expect(output).toContain("fp8 store keeps");
  });

  test("the CPU decode bench runs end to end (--smoke)", () => {
    const { exitCode, output } = runBun(["bench/cpu-decode.ts", "--smoke"]);
    if (exitCode !== 0) console.error(output);
    expect(exitCode).toBe(0);
    expect(output).toMatch(/copy rate [\d.]+ GB\/s, weight-bytes floor/);
  });

  test("the fp16-accumulation bench (times, paired speed-ups, errors) runs end to end (--cpu-smoke)", () => {
    const { exitCode, output } = runBun(["bench/fp16-accumulation.ts", "--cpu-smoke"]);
    if (exitCode !== 0) console.error(output);
    expect(exitCode).toBe(0);
    expect(output).toMatch(/fp16 sums over fp32 sums, paired over 2 rounds: fwd \d+\.\d+x \(IQR [\d.]+\.\.[\d.]+\), bwd \d+\.\d+x/);
    expect(output).toContain("relative Frobenius error against a float32 run");
  });
});
