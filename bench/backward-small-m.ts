// backward-small-m.ts: where the backward's time goes at decode sizes, per kernel path (issue 5).
//
//   bun bench/backward-small-m.ts [--ms 1,8,32,128] [--k 4096] [--n 14336] [--paths 80,90,0,1]
//                                 [--layout packed|linear] [--json path]
//
// bf16, packed [K, 2N] (or nn.Linear [2N, K]) weights, stored mode (dx, dWg, dWu, no bias), caller
// workspace. For each M and kernel path (80: the sm_80 GEMMs, "before"; 90: the sm_90a GEMMs; 0:
// auto; 1: the small-M kernels forced), CUDA event medians of 30 runs of:
//   total      fsg_swiglu_backward (glu backward + dX + 2 dW)
//   recompute  the same in recompute mode (the small-M dual GEMM recomputes dA, dB)
//   dX         [dA | dB] [M, 2N] · (packed W)^T [2N, K]: one product over the concatenated
//              reduction, the bytes and shape of the backward's dX GEMM
//   dW         x^T [K, M] · dA [M, N] -> [K, N] (laid out like the weights), one of the two
//   glu        the elementwise backward alone ([dA | dB] from dz and the saved a, b)
// and the memory floor of the stored-mode backward: weights read once (2KN elements) + both
// weight gradients written once (2KN) at the measured device-to-device copy rate.
import { join } from "node:path";
import {
  Device, Storage, Tensor, backwardWorkspaceSize, fusedSwiglu, fusedSwigluBackward, matmul, swigluBackward,
  weightGradsLike, weightsIn, type KernelPath,
} from "../src/index.ts";
import { measureCopy } from "./ceilings.ts";
import { arg } from "./args.ts";
import { deviceSlug, sysInfo } from "./sysinfo.ts";
import { EventTimer } from "./timing.ts";

const MS = arg("ms", "1,8,32,128").split(",").map(Number);
const K = Number(arg("k", "4096"));
const N = Number(arg("n", "14336"));
const PATHS = arg("paths", "80,90,0,1").split(",").map(Number) as KernelPath[];
const LAYOUT = arg("layout", "packed") as "packed" | "linear";
const dtype = "bfloat16" as const;
const device = Device.open({ backend: "cuda" });
const opts = { dtype, device };
const timer = new EventTimer(device);
const time = (run: () => void) => timer.time(() => run(), { warmup: 5, iters: 30 }).median;

const copyGBps = measureCopy(device, timer, 1 << 30, 10);
const floorMs = ((4 * K * N * 2) / (copyGBps * 1e9)) * 1e3;
console.log(`${device.name}: copy ${copyGBps.toFixed(0)} GB/s; K=${K} N=${N} ${dtype}; floor (read W + write dW) ${floorMs.toFixed(4)} ms`);

const w = weightsIn(LAYOUT, K, N, opts);
w.storage.fill(0.5 / Math.sqrt(K));
const wT = LAYOUT === "packed" ? w.storage.t() : w.storage.view(); // [2N, K], the concatenated W^T
const { dwGate: dwg, dwUp: dwu } = weightGradsLike(w.gate, w.up); // laid out like the weights

interface Row {
  M: number; path: number; totalMs: number; recomputeMs: number; dxMs: number; dwMs: number; gluMs: number; restMs: number; floorPct: number;
}
const rows: Row[] = [];
for (const M of MS) {
  const x = Tensor.randn([M, K], dtype, { device, seed: M });
  const dz = Tensor.randn([M, N], dtype, { device, seed: M + 1 });
  const a = Tensor.empty([M, N], dtype, { device });
  const b = Tensor.empty([M, N], dtype, { device });
  fusedSwiglu(x, w.gate, w.up, { aOut: a, bOut: b }).dispose();
  const dx = Tensor.empty([M, K], dtype, { device });
  const ws = new Storage(device, backwardWorkspaceSize(x, N));
  ws.retain();
  const wsT = new Tensor(ws, [M, 2 * N], [2 * N, 1], 0, dtype); // [dA | dB]
  const dA = wsT.asStrided([M, N], [2 * N, 1], 0);
  const y = Tensor.empty([M, 2 * N], dtype, { device });
  y.fill(0.25);
  const xT = x.t();
  for (const path of PATHS) {
    device.setKernelPath(path);
    const totalMs = time(() => fusedSwigluBackward(dz, x, w.gate, w.up, { aSaved: a, bSaved: b, dx, dwGate: dwg, dwUp: dwu, workspace: ws }));
    const recomputeMs = time(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx, dwGate: dwg, dwUp: dwu, workspace: ws }));
    const dxMs = time(() => matmul(wsT, wT, { out: dx }));
    const dwMs = time(() => matmul(xT, dA, { out: dwg }));
    const gluMs = time(() => swigluBackward(dz, y, { dy: wsT }));
    const restMs = totalMs - dxMs - 2 * dwMs - gluMs;
    const row = { M, path, totalMs, recomputeMs, dxMs, dwMs, gluMs, restMs, floorPct: (100 * floorMs) / totalMs };
    rows.push(row);
    console.log(
      `M=${String(M).padEnd(4)} path ${String(path).padEnd(3)} total ${totalMs.toFixed(4)} ms (${row.floorPct.toFixed(0)}% of floor)` +
        `  recompute ${recomputeMs.toFixed(4)}  dX ${dxMs.toFixed(4)}  dW ${dwMs.toFixed(4)} (x2)  glu ${gluMs.toFixed(4)}  rest ${restMs.toFixed(4)}`,
    );
  }
  device.setKernelPath(0);
  for (const t of [x, dz, a, b, dx, wsT, dA, xT, y]) t.dispose();
  ws.release();
}
const json = arg("json", join(import.meta.dir, "results", `backward-small-m-${LAYOUT}-${deviceSlug(device)}-${new Date().toISOString().slice(0, 10)}.json`));
await Bun.write(json, JSON.stringify({ sys: sysInfo(device), K, N, dtype, layout: LAYOUT, copyGBps, floorMs, rows }, null, 2) + "\n");
console.log(`wrote ${json}`);
