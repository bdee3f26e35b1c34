// lib-ab.ts: one side of an A/B between two builds of the library (a kernel change against the
// build before it). Each process times, with the library at $FUSED_SWIGLU_LIB, the fused forward
// (plain, gpt-oss, GEGLU with erf, bf16 saves, fp8 saves), the recompute backward (SwiGLU, GEGLU
// with erf, gpt-oss), the stored-mode backward from bf16 and fp8 saves, and the activation op and
// its backward on y [M, 2N] (the backward is the stored-mode backward's elementwise pass; SwiGLU,
// GEGLU, gpt-oss; and from y's fp8 copy), at Mx4096x14336 bf16 (M from $FSG_AB_M, default 8192;
// CUDA events, 3 x 20 launches after 3 warm-ups each, the median), and prints one JSON line. A
// second argument, a comma-separated list of the names below, times only those. Alternate the two
// libraries in separate processes, several times, so clock drift hits both:
//
//   for r in 1 2 3 4; do
//     FUSED_SWIGLU_LIB=/tmp/base/libfusedswiglu.so bun bench/lib-ab.ts base >> ab.jsonl
//     FUSED_SWIGLU_LIB=$PWD/build/libfusedswiglu.so bun bench/lib-ab.ts new >> ab.jsonl
//   done
//
// Process to process, a forward's median moved by up to 3% (GLU variants step 12): read a change
// below that only where every pair agrees. Compare one op between libraries, not two ops of one
// process: on an H100 the later ops of a process run nearer the 700 W power cap, at clocks down to
// 1350 MHz (GLU variants step 24). Ops run in the order of the list; to compare two ops, reverse
// it in every other process.
import {
  Device, GEGLU, GPT_OSS, Storage, Tensor, backwardWorkspaceSize, disposeFp8, emptyFp8, fusedSwiglu, fusedSwigluBackward,
  glu, quantizeFp8, swigluBackward,
} from "../src/index.ts";
import type { KernelPath } from "../src/device.ts";
import { randomRaw, separateLayer, upload } from "./data.ts";
import { EventTimer } from "./timing.ts";

// $FSG_AB_M: the rows of x (default 8192), e.g. decode-sized calls that take the small-M kernels.
const [M, K, N] = [Number(process.env.FSG_AB_M ?? 8192), 4096, 14336];
const dtype = "bfloat16" as const;
const device = Device.open({ backend: "cuda" });
// $FSG_KERNEL_PATH (0 auto, 1 small-M, 80, 90): time one kernel family (Device.setKernelPath).
if (process.env.FSG_KERNEL_PATH) device.setKernelPath(Number(process.env.FSG_KERNEL_PATH) as KernelPath);
const { x, wg, wu } = separateLayer(M, K, N, dtype, device);
const dz = upload(randomRaw(dtype, M * N, 1, 4), [M, N], dtype, device);
const z = Tensor.empty([M, N], dtype, { device });
const a16 = Tensor.empty([M, N], dtype, { device });
const b16 = Tensor.empty([M, N], dtype, { device });
const a8 = emptyFp8([M, N], device);
const b8 = emptyFp8([M, N], device);
const only = process.argv[3]?.split(",");
// The activation ops' y and dy [M, 2N] (0.9 GB): allocated only when one of them is timed.
const timesGlu = !only || only.some((name) => name.startsWith("glu"));
const y = timesGlu ? upload(randomRaw(dtype, M * 2 * N, 1, 5), [M, 2 * N], dtype, device) : null;
const dy = timesGlu ? Tensor.empty([M, 2 * N], dtype, { device }) : null;
const y8 = y ? quantizeFp8(y) : null;  // the fp8 copy of y (gluBwd8*)
const dx = Tensor.empty([M, K], dtype, { device });
const dwGate = Tensor.empty([K, N], dtype, { device });
const dwUp = Tensor.empty([K, N], dtype, { device });
const workspace = new Storage(device, backwardWorkspaceSize(x, N));
workspace.retain();
const timer = new EventTimer(device);

const runs: Record<string, () => void> = {
  fwd: () => void fusedSwiglu(x, wg, wu, { out: z }),
  gptoss: () => void fusedSwiglu(x, wg, wu, { out: z, activation: GPT_OSS }),
  geglu: () => void fusedSwiglu(x, wg, wu, { out: z, activation: GEGLU }),
  save16: () => void fusedSwiglu(x, wg, wu, { out: z, aOut: a16, bOut: b16 }),
  save8: () => void fusedSwiglu(x, wg, wu, { out: z, aOut: a8.data, bOut: b8.data, aScale: a8.scale, bScale: b8.scale }),
  bwd: () => fusedSwigluBackward(dz, x, wg, wu, { dx, dwGate, dwUp, workspace }),
  bwdGeglu: () => fusedSwigluBackward(dz, x, wg, wu, { dx, dwGate, dwUp, workspace, activation: GEGLU }),
  bwdGptoss: () => fusedSwigluBackward(dz, x, wg, wu, { dx, dwGate, dwUp, workspace, activation: GPT_OSS }),
  bwdSaved16: () => fusedSwigluBackward(dz, x, wg, wu, { aSaved: a16, bSaved: b16, dx, dwGate, dwUp, workspace }),
  bwdSaved8: () =>
    fusedSwigluBackward(dz, x, wg, wu, {
      aSaved: a8.data, bSaved: b8.data, aScale: a8.scale, bScale: b8.scale, dx, dwGate, dwUp, workspace,
    }),
  glu: () => void glu(y!, { out: z }),
  gluGeglu: () => void glu(y!, { out: z, activation: GEGLU }),
  gluGptoss: () => void glu(y!, { out: z, activation: GPT_OSS }),
  gluBwd: () => void swigluBackward(dz, y!, { dy: dy! }),
  gluBwdGeglu: () => void swigluBackward(dz, y!, { dy: dy!, activation: GEGLU }),
  gluBwdGptoss: () => void swigluBackward(dz, y!, { dy: dy!, activation: GPT_OSS }),
  gluBwd8: () => void swigluBackward(dz, y8!.data, { yScale: y8!.scale, dy: dy! }),
  gluBwd8Gptoss: () => void swigluBackward(dz, y8!.data, { yScale: y8!.scale, dy: dy!, activation: GPT_OSS }),
};
// The stored-mode backward (bwdSaved*) reads what a forward saved: save once before timing it.
if (!only || only.some((name) => name.startsWith("bwdSaved"))) {
  runs.save16!();
  runs.save8!();
}
// Ops run in the order listed (all of them, in the order above, without a list).
const names = only ?? Object.keys(runs);
const unknown = names.filter((name) => !(name in runs));
if (unknown.length) throw new Error(`lib-ab: unknown op(s) ${unknown.join(", ")}; known: ${Object.keys(runs).join(", ")}`);
const medians: Record<string, number> = {};
for (const name of names) {
  const run = runs[name]!;
  const samples: number[] = [];
  for (let r = 0; r < 3; ++r) samples.push(...timer.time(run, { warmup: 3, iters: 20 }).samples);
  samples.sort((a, b) => a - b);
  medians[name] = samples[samples.length >> 1]!;
}
console.log(JSON.stringify({ label: process.argv[2] ?? "", ...medians }));

for (const t of [x, wg, wu, dz, z, a16, b16, dx, dwGate, dwUp]) t.dispose();
y?.dispose();
if (y8) disposeFp8(y8);
dy?.dispose();
disposeFp8(a8);
disposeFp8(b8);
workspace.release();
timer.dispose();
device.dispose();
