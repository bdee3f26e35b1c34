// graph.ts: CUDA graph replay vs direct launches at decode sizes (issue 5).
//
//   bun bench/graph.ts [--ms 1,8,32,128] [--k 4096] [--n 14336] [--iters 200] [--json path]
//
// For each M (bf16, packed [K, 2N] gate/up weights, auto kernel path) and each step:
//   fwd      fusedSwiglu into a preallocated z                                   (1 kernel)
//   mlp      fwd + the down projection y = z·Wd (Wd [N, K])                        (2 kernels)
//   fwdbwd   forward saving a, b + stored-mode backward (dx, dWg, dWu; workspace)  (5 kernels)
// run directly (the JS calls) and as a captured graph (replay()), three numbers each:
//   device ms/step  CUDA events around `iters` steps enqueued back to back, / iters: the GPU's
//                   time per step, host launch gaps included when the host is the slower side;
//   host us/step    wall time the host spends enqueueing those steps (before any wait), / iters;
//   latency ms      one step + synchronize, wall clock, median of 50: what one decode step waits.
// The graph's outputs are checked bit for bit against the direct calls' before timing.
// Results: console table and JSON (default bench/results/graph-<gpu>-<date>.json).
import { join } from "node:path";
import {
  Device, Storage, Tensor, backwardWorkspaceSize, fusedSwiglu, fusedSwigluBackward, matmul, weightsPacked,
} from "../src/index.ts";
import { arg } from "./args.ts";
import { deviceSlug, sysInfo } from "./sysinfo.ts";
import { stats } from "./timing.ts";

const MS = arg("ms", "1,8,32,128").split(",").map(Number);
const K = Number(arg("k", "4096"));
const N = Number(arg("n", "14336"));
const ITERS = Number(arg("iters", "200"));
const dtype = "bfloat16" as const;

const device = Device.open({ backend: "cuda" });
const opts = { device };
const start = device.createEvent();
const end = device.createEvent();

interface Row {
  M: number;
  step: string;
  mode: "direct" | "graph";
  nodes: number | null;
  deviceMsPerStep: number;
  hostUsPerStep: number;
  latencyMs: number;
}
const rows: Row[] = [];

function measure(run: () => void): { deviceMsPerStep: number; hostUsPerStep: number; latencyMs: number } {
  for (let i = 0; i < 10; i++) run();
  device.synchronize();
  start.record();
  const t0 = performance.now();
  for (let i = 0; i < ITERS; i++) run();
  const t1 = performance.now();
  end.record();
  end.synchronize();
  const deviceMsPerStep = start.elapsedMs(end) / ITERS;
  const lat: number[] = [];
  for (let i = 0; i < 50; i++) {
    const a = performance.now();
    run();
    device.synchronize();
    lat.push(performance.now() - a);
  }
  return { deviceMsPerStep, hostUsPerStep: ((t1 - t0) * 1000) / ITERS, latencyMs: stats(lat).median };
}

// Constant weights: the timing does not depend on the values, and filling is fast.
const w = weightsPacked(K, N, "gate-up", { dtype, device });
w.storage.fill(0.5 / Math.sqrt(K));
const wd = Tensor.full([N, K], 0.5 / Math.sqrt(N), dtype, opts);

for (const M of MS) {
  const x = Tensor.randn([M, K], dtype, { device, seed: M });
  const dz = Tensor.randn([M, N], dtype, { device, seed: M + 1 });
  const [z, a, b] = [0, 1, 2].map(() => Tensor.empty([M, N], dtype, opts));
  const y = Tensor.empty([M, K], dtype, opts);
  const dx = Tensor.empty([M, K], dtype, opts);
  const [dwg, dwu] = [0, 1].map(() => Tensor.empty([K, N], dtype, opts));
  const ws = new Storage(device, backwardWorkspaceSize(x, N));
  ws.retain();
  const steps: Record<string, { run: () => void; outputs: Tensor[] }> = {
    fwd: { run: () => fusedSwiglu(x, w.gate, w.up, { out: z! }), outputs: [z!] },
    mlp: {
      run: () => {
        fusedSwiglu(x, w.gate, w.up, { out: z! });
        matmul(z!, wd, { out: y });
      },
      outputs: [y],
    },
    fwdbwd: {
      run: () => {
        fusedSwiglu(x, w.gate, w.up, { out: z!, aOut: a, bOut: b });
        fusedSwigluBackward(dz, x, w.gate, w.up, { aSaved: a, bSaved: b, dx, dwGate: dwg, dwUp: dwu, workspace: ws });
      },
      outputs: [dx, dwg!, dwu!],
    },
  };
  for (const [name, s] of Object.entries(steps)) {
    s.run();
    const want = s.outputs.map((t) => t.toRaw());
    const g = device.captureGraph(s.run);
    for (const t of s.outputs) t.fill(Number.NaN);
    g.replay();
    s.outputs.forEach((t, i) => {
      const got = t.toRaw();
      if (!got.every((v, j) => v === want[i]![j])) throw new Error(`${name} M=${M}: graph output differs from the direct call's`);
    });
    rows.push({ M, step: name, mode: "direct", nodes: null, ...measure(s.run) });
    rows.push({ M, step: name, mode: "graph", nodes: g.nodes, ...measure(() => g.replay()) });
    g.dispose();
  }
  ws.release();
  for (const t of [x, dz, z, a, b, y, dx, dwg, dwu]) t!.dispose();
}

console.log(`${device.name}, K=${K} N=${N} ${dtype}, ${ITERS} steps back to back; latency = one step + synchronize (median of 50)`);
console.log("M     step    mode    nodes  device ms/step  host us/step  latency ms");
for (const r of rows) {
  console.log(
    `${String(r.M).padEnd(5)} ${r.step.padEnd(7)} ${r.mode.padEnd(7)} ${String(r.nodes ?? "").padStart(5)}  ` +
      `${r.deviceMsPerStep.toFixed(4).padStart(14)}  ${r.hostUsPerStep.toFixed(1).padStart(12)}  ${r.latencyMs.toFixed(4).padStart(10)}`,
  );
}
const json = arg("json", join(import.meta.dir, "results", `graph-${deviceSlug(device)}-${new Date().toISOString().slice(0, 10)}.json`));
await Bun.write(json, JSON.stringify({ sys: sysInfo(device), K, N, dtype, iters: ITERS, rows }, null, 2) + "\n");
console.log(`wrote ${json}`);
