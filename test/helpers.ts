// helpers.ts: shared test plumbing: fresh seeded inputs, layouts, poisoning, and running one
// suite body on every backend (CPU always; CUDA, and CUDA with each kernel family forced, when a GPU
// is there: those describe blocks skip visibly otherwise).
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { Device, type KernelPath } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { FusedSwiGLUError } from "../src/errors.ts";
import { storageShape, weightsIn, type Layout, type WeightViews } from "../src/layouts.ts";
import { mulberry32, numelOf, Tensor } from "../src/tensor.ts";
import { hasCuda } from "./setup.ts";

export { hasCuda };

/** Relative Frobenius tolerance per dtype (against a reference fed the same rounded inputs). */
export const RTOL: Record<FloatDType, number> = { float32: 1e-5, float16: 2e-3, bfloat16: 1.5e-2 };
export const DTYPE_LIST: FloatDType[] = ["float32", "float16", "bfloat16"];

let seedCounter = Number(process.env.FSG_TEST_SEED ?? 1000);
/** A fresh seed for every draw: no two inputs of a run are the same (FSG_TEST_SEED moves the start). */
export const nextSeed = (): number => seedCounter++;

/** Random normal values (never all zeros) of `shape`, rounded to dtype on the device. */
export function randn(shape: number[], dtype: FloatDType, device: Device, scale = 1): Tensor {
  return Tensor.randn(shape, dtype, { device, seed: nextSeed(), scale });
}

/** Host float32 random values. */
export function randomValues(n: number, scale = 1): Float32Array {
  const r = mulberry32(nextSeed());
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

/** Device values as float64 (row-major, any strides). */
export const f64 = (t: Tensor): Float64Array => Float64Array.from(t.toFloat32());

/** Fills an output with NaN so that anything not written shows. */
export function poison<T extends Tensor>(t: T): T {
  t.fill(Number.NaN);
  return t;
}

/** Weights of `layout` with fresh random contents (scale ~ 1/sqrt(K)). */
export function randomWeights(layout: Layout, K: number, N: number, dtype: FloatDType, device: Device): WeightViews {
  const w = weightsIn(layout, K, N, { dtype, device });
  const scale = 1 / Math.sqrt(K);
  w.storage.writeFloat32(randomValues(numelOf(storageShape(layout, K, N)), 2 * scale));
  w.storage2?.writeFloat32(randomValues(K * N, 2 * scale));
  return w;
}

export interface Backend {
  label: string;
  enabled: boolean;
  /** A CUDA device (any kernel path); false for the CPU backend. */
  cuda: boolean;
  open: () => Device;
}

function cudaComputeCapability(): number {
  if (!hasCuda) return 0;
  const d = Device.open({ backend: "cuda" });
  const cc = d.computeCapability;
  d.dispose();
  return cc;
}

function cudaWithPath(path: KernelPath): () => Device {
  return () => {
    const d = Device.open({ backend: "cuda" });
    d.setKernelPath(path);
    return d;
  };
}

const cc = cudaComputeCapability();

/** Every backend and, on CUDA, every kernel family forced, so each path passes every test. */
export const BACKENDS: Backend[] = [
  { label: "cpu backend", enabled: true, cuda: false, open: () => Device.open({ backend: "cpu" }) },
  { label: "cuda backend (auto kernel path)", enabled: hasCuda, cuda: true, open: cudaWithPath(0) },
  { label: "cuda backend (sm_80 path forced)", enabled: hasCuda, cuda: true, open: cudaWithPath(80) },
  { label: "cuda backend (small-M path forced)", enabled: hasCuda, cuda: true, open: cudaWithPath(1) },
  { label: "cuda backend (sm_90a path forced)", enabled: cc === 90, cuda: true, open: cudaWithPath(90) },
];

/** Runs `body` once per backend inside describe.if(enabled). The device opens in beforeAll. */
export function forEachBackend(name: string, body: (device: () => Device, backend: Backend) => void): void {
  for (const backend of BACKENDS) {
    describe.if(backend.enabled)(`${name} [${backend.label}]`, () => {
      let device: Device | null = null;
      beforeAll(() => {
        device = backend.open();
      });
      afterAll(() => device?.dispose());
      body(() => device!, backend);
    });
  }
}

/** Disposes every tensor given (null/undefined skipped). */
export function disposeAll(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

/** Runs fn, expecting a FusedSwiGLUError with `code` whose message contains every `names`. */
export function expectError(fn: () => unknown, code: string, ...names: string[]): FusedSwiGLUError {
  let caught: unknown = null;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(FusedSwiGLUError);
  const err = caught as FusedSwiGLUError;
  expect(err.code).toBe(code);
  expect(err.name).toBe("FusedSwiGLUError");
  for (const n of names) expect(err.message).toContain(n);
  return err;
}
