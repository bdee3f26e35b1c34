// cpu-decode.ts: `bun bench/cpu-decode.ts` — the CPU backend's fused forward at decode sizes (a
// few rows against a Llama-sized layer), with packed [K, 2N] and with nn.Linear [N, K] weights.
// There the weights' bytes set the floor: weight bytes / the copy rate measured on the same
// backend (fsg_memcpy_d2d between filled 256 MiB buffers, read + write counted). Beside it, the
// library's unfused path (x·[Wg|Wu] by matmul, then the activation op) in the same run. Host wall
// time, median of --iters runs after one warm-up.
//
//   bun bench/cpu-decode.ts                                  M = 1,2,4,8,16, K = 4096, N = 14336, bf16
//   bun bench/cpu-decode.ts --ms 1,4 --k 1024 --n 2816 --dtype float16 --iters 5 --json out.json
//   bun bench/cpu-decode.ts --smoke                          one tiny shape (CI)
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Device, Tensor, fusedSwiglu, glu, matmul, type FloatDType } from "../src/index.ts";
import { arg } from "./args.ts";
import { copyD2D, devicePtr, randomRaw, upload } from "./data.ts";
import { sysInfo } from "./sysinfo.ts";
import { EventTimer } from "./timing.ts";

const smoke = process.argv.includes("--smoke");
const MS = (smoke ? "1,3" : arg("ms", "1,2,4,8,16")).split(",").map(Number);
const K = Number(smoke ? 64 : arg("k", "4096"));
const N = Number(smoke ? 96 : arg("n", "14336"));
const dtype = arg("dtype", "bfloat16") as FloatDType;
const ITERS = Number(smoke ? 2 : arg("iters", "7"));
const bytesPer = dtype === "float32" ? 4 : 2;

const device = Device.open({ backend: "cpu" });

// On the CPU backend an op is done when it returns and events record host time, so the harness's
// EventTimer measures wall time per run.
const timer = new EventTimer(device);
const medianMs = (run: () => void): number => timer.time(run, { warmup: 1, iters: ITERS }).median;

/** Copy rate of the backend in GB/s (bytes read + bytes written), between filled buffers. */
function copyRate(): number {
  const floats = smoke ? 1 << 18 : 64 << 20;
  const src = Tensor.full([floats], 1, "float32", { device });
  const dst = Tensor.full([floats], 2, "float32", { device });
  try {
    const ms = medianMs(() => copyD2D(device, devicePtr(dst), devicePtr(src), 4 * floats));
    return (8 * floats) / (ms * 1e6);
  } finally {
    src.dispose();
    dst.dispose();
  }
}

const rate = copyRate();
const floorMs = (2 * K * N * bytesPer) / (rate * 1e6);
console.log(`CPU decode bench on ${device.name}, ${dtype}, K=${K} N=${N}; ` +
  `copy rate ${rate.toFixed(1)} GB/s, weight-bytes floor ${floorMs.toFixed(2)} ms`);

/**
 * The weights in two layouts: packed [K, 2N] (row-major, gate then up) and nn.Linear's [N, K]
 * pair seen transposed; the unfused path multiplies x by a [K, 2N] view of the same bytes
 * (packed) or by each [K, N] view into the halves of y (linear).
 */
function weights(layout: "packed" | "linear") {
  if (layout === "packed") {
    const w = upload(randomRaw(dtype, 2 * K * N, 1 / Math.sqrt(K), 2), [K, 2 * N], dtype, device);
    const [wg, wu] = w.chunk(2, 1) as [Tensor, Tensor];
    return { wg, wu, unfused: (x: Tensor, y: Tensor) => void matmul(x, w, { out: y }), dispose: () => w.dispose() };
  }
  const g = upload(randomRaw(dtype, K * N, 1 / Math.sqrt(K), 2), [N, K], dtype, device);
  const u = upload(randomRaw(dtype, K * N, 1 / Math.sqrt(K), 3), [N, K], dtype, device);
  return {
    wg: g.t(), wu: u.t(),
    unfused: (x: Tensor, y: Tensor) => {
      const [ya, yb] = y.chunk(2, 1) as [Tensor, Tensor];
      matmul(x, g.t(), { out: ya });
      matmul(x, u.t(), { out: yb });
    },
    dispose: () => { g.dispose(); u.dispose(); },
  };
}

const rows = (["packed", "linear"] as const).flatMap((layout) => {
  const w = weights(layout);
  try {
    return MS.map((M) => {
      const x = upload(randomRaw(dtype, M * K, 1, M), [M, K], dtype, device);
      const z = Tensor.empty([M, N], dtype, { device });
      const y = Tensor.empty([M, 2 * N], dtype, { device });
      try {
        const fusedMs = medianMs(() => void fusedSwiglu(x, w.wg, w.wu, { out: z }));
        const unfusedMs = medianMs(() => {
          w.unfused(x, y);
          glu(y, { out: z });
        });
        return { layout, M, fusedMs, unfusedMs, weightGBs: (2 * K * N * bytesPer) / (fusedMs * 1e6), ofFloor: floorMs / fusedMs, vsUnfused: unfusedMs / fusedMs };
      } finally {
        for (const t of [x, z, y]) t.dispose();
      }
    });
  } finally {
    w.dispose();
  }
});
console.table(rows.map((r) => ({
  layout: r.layout, M: r.M, "fused ms": r.fusedMs.toFixed(2), "unfused ms": r.unfusedMs.toFixed(2), "weights GB/s": r.weightGBs.toFixed(2),
  "of floor": `${(100 * r.ofFloor).toFixed(0)}%`, "vs unfused": `${r.vsUnfused.toFixed(2)}x`,
})));
const json = smoke ? null : arg("json", join("bench/results", `cpu-decode-${new Date().toISOString().slice(0, 10)}.json`));
if (json) {
  mkdirSync(join(json, ".."), { recursive: true });
  Bun.write(json, JSON.stringify({ system: sysInfo(device), dtype, K, N, copyRateGBs: rate, floorMs, rows }, null, 2));
  console.log(`wrote ${json}`);
}
timer.dispose();
device.dispose();
