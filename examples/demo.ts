// demo.ts: `bun run demo` — one Llama-3-8B-sized SwiGLU layer (x [4096, 4096], N = 14336, bf16)
// forward and backward on the GPU with the fused kernels, checked against a float64 host
// reference on sampled rows (z, dx) and columns (dWg, dWu), timed with CUDA events next to the
// library's unfused path (two matmuls + the activation op). Exits 1 if a check fails.
//
//   bun examples/demo.ts [--m 4096] [--k 4096] [--n 14336] [--dtype bf16|fp16|fp32] [--backend cpu]
// On the CPU backend the default is x [64, 1024], N = 2816.
import {
  Device, fusedSwiglu, fusedSwigluBackward, glu, matmul, swigluBackward, Tensor, type FloatDType,
} from "../src/index.ts";
import { poison, randomRaw } from "../bench/data.ts";
import {
  decodeAll, ErrorAccumulator, reader, referenceCols, referenceRows, sampleIndices, TOLERANCE, type Raw,
} from "../bench/reference.ts";
import { EventTimer } from "../bench/timing.ts";

// ---- arguments ----
const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
};
const DTYPES: Record<string, FloatDType> = { bf16: "bfloat16", bfloat16: "bfloat16", fp16: "float16", float16: "float16", fp32: "float32", float32: "float32" };
const device = Device.open({ backend: (flag("backend") as "cpu" | "cuda" | undefined) ?? "auto" });
const gpu = device.backend === "cuda";
const M = Number(flag("m") ?? (gpu ? 4096 : 64));
const K = Number(flag("k") ?? (gpu ? 4096 : 1024));
const N = Number(flag("n") ?? (gpu ? 14336 : 2816));
const dtype = DTYPES[flag("dtype") ?? "bf16"];
if (!dtype || ![M, K, N].every((v) => Number.isInteger(v) && v > 0)) {
  console.error("usage: bun examples/demo.ts [--m M] [--k K] [--n N] [--dtype bf16|fp16|fp32] [--backend cpu|cuda]");
  process.exit(2);
}
const t0 = performance.now();
console.log(`fused-swiglu demo on ${device.name} (${device.backend}): x [${M}, ${K}], Wg/Wu [${K}, ${N}], ${dtype}`);

// ---- inputs (random, never zeros: x ~ N(0,1), W ~ N(0, 1/K), dz ~ N(0,1)) ----
const xRaw = randomRaw(dtype, M * K, 1, 1);
const wgRaw = randomRaw(dtype, K * N, 1 / Math.sqrt(K), 2);
const wuRaw = randomRaw(dtype, K * N, 1 / Math.sqrt(K), 3);
const dzRaw = randomRaw(dtype, M * N, 1, 4);
const opts = { device };
const x = Tensor.fromRaw(xRaw, [M, K], dtype, opts);
const wg = Tensor.fromRaw(wgRaw, [K, N], dtype, opts);
const wu = Tensor.fromRaw(wuRaw, [K, N], dtype, opts);
const dz = Tensor.fromRaw(dzRaw, [M, N], dtype, opts);
const z = Tensor.empty([M, N], dtype, opts);
const a = Tensor.empty([M, N], dtype, opts);
const b = Tensor.empty([M, N], dtype, opts);
const dx = Tensor.empty([M, K], dtype, opts);
const dwg = Tensor.empty([K, N], dtype, opts);
const dwu = Tensor.empty([K, N], dtype, opts);
// the unfused path's buffers: y = [x·Wg | x·Wu] packed [M, 2N], dy likewise
const y = Tensor.empty([M, 2 * N], dtype, opts);
const [ya, yb] = y.chunk(2, 1) as [Tensor, Tensor];
const dy = Tensor.empty([M, 2 * N], dtype, opts);
const [dya, dyb] = dy.chunk(2, 1) as [Tensor, Tensor];
const xt = x.t();
const wgt = wg.t();
const wut = wu.t();
device.synchronize();

const fused = {
  forward: () => void fusedSwiglu(x, wg, wu, { out: z, aOut: a, bOut: b }),
  backwardStored: () => fusedSwigluBackward(dz, x, wg, wu, { aSaved: a, bSaved: b, dx, dwGate: dwg, dwUp: dwu }),
  backwardRecompute: () => fusedSwigluBackward(dz, x, wg, wu, { dx, dwGate: dwg, dwUp: dwu }),
};
const unfused = {
  forward: () => {
    matmul(x, wg, { out: ya });
    matmul(x, wu, { out: yb });
    glu(y, { out: z });
  },
  backward: () => {
    swigluBackward(dz, y, { dy });
    matmul(dya, wgt, { out: dx });
    matmul(dyb, wut, { out: dx, accumulate: true });
    matmul(xt, dya, { out: dwg });
    matmul(xt, dyb, { out: dwu });
  },
};

// ---- checks against the float64 host reference ----
const rows = sampleIndices(M, 6);
const cols = sampleIndices(N, 4);
const problem = {
  dtype, M, K, N, x: xRaw, dz: dzRaw,
  wg: { raw: wgRaw, rs: N, cs: 1, off: 0 }, wu: { raw: wuRaw, rs: N, cs: 1, off: 0 },
};
const tr = performance.now();
const rowRef = referenceRows(problem, rows);
const colRef = referenceCols(problem, cols);
const refSeconds = (performance.now() - tr) / 1e3;

const readRow = (t: Tensor, r: number): Float64Array => {
  const v = t.slice(0, r, 1);
  try {
    return decodeAll(dtype, v.toRaw() as Raw);
  } finally {
    v.dispose();
  }
};
const readCols = (t: Tensor, cs: number[]): Float64Array[] => {
  const raw = t.toRaw() as Raw;
  const rd = reader(dtype);
  return cs.map((c) => Float64Array.from({ length: K }, (_, k) => rd(raw, k * N + c)));
};

interface Check { what: string; normwise: number; maxRel: number; pass: boolean }
const checks: Check[] = [];
const record = (what: string, pairs: [ArrayLike<number>, ArrayLike<number>][]) => {
  const e = new ErrorAccumulator();
  for (const [o, r] of pairs) e.add(o, r);
  checks.push({ what, normwise: e.normwise, maxRel: e.maxRelative, pass: e.normwise <= TOLERANCE[dtype] });
};
const poisonAll = () => [z, a, b, dx, dwg, dwu].forEach(poison);

const checkGrads = (label: string) => {
  record(`${label} dx (${rows.length} rows)`, rowRef.map((r) => [readRow(dx, r.row), r.dx]));
  const g = readCols(dwg, cols);
  const u = readCols(dwu, cols);
  record(`${label} dWg (${cols.length} cols)`, colRef.map((c, i) => [g[i]!, c.dwg]));
  record(`${label} dWu (${cols.length} cols)`, colRef.map((c, i) => [u[i]!, c.dwu]));
};

try {
  poisonAll();
  fused.forward();
  device.synchronize();
  record(`fused forward z (${rows.length} rows)`, rowRef.map((r) => [readRow(z, r.row), r.z]));
  record("fused forward saved a, b", rowRef.flatMap((r) => [[readRow(a, r.row), r.a], [readRow(b, r.row), r.b]] as [Float64Array, Float64Array][]));
  fused.backwardStored();
  device.synchronize();
  checkGrads("fused backward (stored)");
  [dx, dwg, dwu].forEach(poison);
  fused.backwardRecompute();
  device.synchronize();
  checkGrads("fused backward (recompute)");
  poisonAll();
  unfused.forward();
  unfused.backward();
  device.synchronize();
  record(`unfused forward z (${rows.length} rows)`, rowRef.map((r) => [readRow(z, r.row), r.z]));
  checkGrads("unfused backward");
} catch (e) {
  console.error(`run failed: ${(e as Error).message}`);
  process.exit(1);
}

// ---- timing (CUDA events; host time on the CPU backend) ----
const timer = new EventTimer(device);
const iters = gpu ? 20 : 5;
const warmup = gpu ? 3 : 1;
const fwdFlops = 4 * M * K * N;
const timed = [
  { name: "fused forward (+ save a, b)", run: fused.forward, flops: fwdFlops },
  { name: "fused backward, stored a, b", run: fused.backwardStored, flops: 2 * fwdFlops },
  { name: "fused backward, recompute", run: fused.backwardRecompute, flops: 2 * fwdFlops },
  { name: "unfused forward (2 matmul + act)", run: unfused.forward, flops: fwdFlops },
  { name: "unfused backward (act bwd + 4 matmul)", run: unfused.backward, flops: 2 * fwdFlops },
].map((t) => ({ ...t, ms: timer.time(() => t.run(), { warmup, iters }).median }));
timer.dispose();

// ---- report ----
const pad = (s: string, n: number) => s.padEnd(n);
console.log(`\naccuracy (normwise relative error on sampled values, bound ${TOLERANCE[dtype]}; reference took ${refSeconds.toFixed(1)} s)`);
for (const c of checks) {
  console.log(`  ${pad(c.what, 44)} ${c.normwise.toExponential(2)}  (max-abs/max-ref ${c.maxRel.toExponential(2)})  ${c.pass ? "PASS" : "FAIL"}`);
}
console.log(`\ntiming (median of ${iters} runs after ${warmup} warm-up, ${gpu ? "CUDA events" : "host time (CPU backend)"})`);
console.log(`  ${pad("", 40)} ${"ms".padStart(9)} ${"TFLOP/s".padStart(9)}`);
for (const t of timed) {
  console.log(`  ${pad(t.name, 40)} ${t.ms.toFixed(3).padStart(9)} ${(t.flops / (t.ms * 1e-3) / 1e12).toFixed(gpu ? 1 : 4).padStart(9)}`);
}
const f = timed[0]!.ms, u = timed[3]!.ms, fb = timed[1]!.ms, ub = timed[4]!.ms;
console.log(`  fused vs unfused: forward ${(u / f).toFixed(2)}x, backward ${(ub / fb).toFixed(2)}x, forward+backward ${((u + ub) / (f + fb)).toFixed(2)}x`);
const failed = checks.filter((c) => !c.pass).length;
console.log(`\n${failed === 0 ? "PASS" : `FAIL (${failed} check(s))`} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
for (const t of [x, wg, wu, dz, z, a, b, dx, dwg, dwu, y, ya, yb, dy, dya, dyb, xt, wgt, wut]) t.dispose();
process.exit(failed === 0 ? 0 : 1);
