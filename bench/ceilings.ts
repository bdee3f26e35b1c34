// ceilings.ts: the two measured ceilings every case's floor is built from, in the same run:
//   copy bandwidth: fsg_memcpy_d2d_async of `copyBytes` (1 GiB on a GPU), bytes read + written / time;
//   matmul rate:    a square bf16/fp16 GEMM (8192^3 on a GPU) through cuBLAS when loaded, else
//                   through the library's own matmul (said in `source`).
// floor(case) = max(FLOPs / matmul rate, minimum bytes / copy bandwidth).
import { matmul, Tensor, type Device, type FloatDType } from "../src/index.ts";
import type { Cublas } from "./cublas.ts";
import { copyD2D, devicePtr, randomRaw, upload } from "./data.ts";
import type { EventTimer } from "./timing.ts";

export interface Ceilings {
  copyBytes: number;
  /** Bytes read + written per second / 1e9. */
  copyGBs: number;
  /** Per dtype: TFLOP/s and how it was measured. */
  matmul: Partial<Record<FloatDType, { tflops: number; size: number; source: string }>>;
}

export function measureCopy(device: Device, timer: EventTimer, bytes: number, iters: number): number {
  const src = Tensor.empty([bytes / 4], "float32", { device });
  const dst = Tensor.empty([bytes / 4], "float32", { device });
  try {
    src.fill(0); // contents do not matter for a copy; initialized so no tool complains
    const s = devicePtr(src);
    const d = devicePtr(dst);
    const st = timer.time(() => copyD2D(device, d, s, bytes), { warmup: 3, iters });
    return (2 * bytes) / (st.median * 1e-3) / 1e9;
  } finally {
    src.dispose();
    dst.dispose();
  }
}

export function measureMatmul(device: Device, timer: EventTimer, cublas: Cublas | null, dtype: FloatDType, n: number, iters: number) {
  const a = upload(randomRaw(dtype, n * n, 1, 11), [n, n], dtype, device);
  const b = upload(randomRaw(dtype, n * n, 1 / Math.sqrt(n), 12), [n, n], dtype, device);
  const c = Tensor.empty([n, n], dtype, { device });
  try {
    const run = cublas
      ? () => cublas.gemm({ dtype, M: n, N: n, K: n, a: devicePtr(a), lda: n, b: devicePtr(b), ldb: n, c: devicePtr(c), ldc: n })
      : () => void matmul(a, b, { out: c });
    const st = timer.time(run, { warmup: 3, iters });
    return { tflops: (2 * n ** 3) / (st.median * 1e-3) / 1e12, size: n, source: cublas ? "cuBLAS cublasGemmEx" : "library matmul (no cuBLAS)" };
  } finally {
    a.dispose();
    b.dispose();
    c.dispose();
  }
}

/** Floor in ms of a case: the larger of the compute and the memory time. */
export function floorMs(flops: number, bytes: number, c: Ceilings, dtype: FloatDType): number {
  const rate = c.matmul[dtype]?.tflops ?? c.matmul.bfloat16?.tflops ?? Infinity;
  return Math.max(flops / (rate * 1e12), bytes / (c.copyGBs * 1e9)) * 1e3;
}
