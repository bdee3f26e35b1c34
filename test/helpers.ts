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

const firstSeed = Number(process.env.FSG_TEST_SEED ?? 1000);
let seedCounter = firstSeed;
/** A fresh seed for every draw: no two inputs of a run are the same (FSG_TEST_SEED moves the start). */
export const nextSeed = (): number => seedCounter++;
/** Where a draw's seed comes from: nextSeed, or a case's own sequence (caseSeeds). */
export type Seeds = () => number;
/**
 * A case's own seed sequence, the same wherever the case runs: the kernel paths of one case then
 * read equal inputs and share one float64 reference (cachedReference). Far from nextSeed's range,
 * and moved by FSG_TEST_SEED too.
 */
export function caseSeeds(caseId: number): Seeds {
  let s = firstSeed + 1_000_000 + 1000 * caseId;
  return () => s++;
}

/** Random normal values (never all zeros) of `shape`, rounded to dtype on the device. */
export function randn(shape: number[], dtype: FloatDType, device: Device, scale = 1, seeds: Seeds = nextSeed): Tensor {
  return Tensor.randn(shape, dtype, { device, seed: seeds(), scale });
}

/** Host float32 random values. */
export function randomValues(n: number, scale = 1, seeds: Seeds = nextSeed): Float32Array {
  const r = mulberry32(seeds());
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

const referenceCache = new Map<string, { inputs: Float64Array[]; value: unknown }>();
const kReferenceCacheEntries = 4;
/**
 * compute(), or its value from an earlier call with the same key whose inputs were equal element
 * by element (checked on every hit; unequal inputs recompute and replace the entry). key null:
 * no caching. For the large cases that every kernel path runs on caseSeeds inputs: their float64
 * references took about a third of the GPU suite's time.
 */
export function cachedReference<T>(key: string | null, inputs: (Float64Array | null)[], compute: () => T): T {
  if (key === null) return compute();
  const present = inputs.filter((a): a is Float64Array => a !== null);
  const hit = referenceCache.get(key);
  const equal = (a: Float64Array, b: Float64Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  if (hit && hit.inputs.length === present.length && hit.inputs.every((a, i) => equal(a, present[i]!))) return hit.value as T;
  const value = compute();
  referenceCache.delete(key);
  referenceCache.set(key, { inputs: present, value });
  if (referenceCache.size > kReferenceCacheEntries) referenceCache.delete(referenceCache.keys().next().value!);
  return value;
}

/** Device values as float64 (row-major, any strides). */
export const f64 = (t: Tensor): Float64Array => Float64Array.from(t.toFloat32());

/** Fills an output with NaN so that anything not written shows. */
export function poison<T extends Tensor>(t: T): T {
  t.fill(Number.NaN);
  return t;
}

/** Weights of `layout` with fresh random contents (scale ~ 1/sqrt(K)). */
export function randomWeights(layout: Layout, K: number, N: number, dtype: FloatDType, device: Device, seeds: Seeds = nextSeed): WeightViews {
  const w = weightsIn(layout, K, N, { dtype, device });
  const scale = 1 / Math.sqrt(K);
  w.storage.writeFloat32(randomValues(numelOf(storageShape(layout, K, N)), 2 * scale, seeds));
  w.storage2?.writeFloat32(randomValues(K * N, 2 * scale, seeds));
  return w;
}

export interface Backend {
  label: string;
  enabled: boolean;
  /** A CUDA device (any kernel path); false for the CPU backend. */
  cuda: boolean;
  open: () => Device;
}

// Whether the sm_90a kernels run on device 0 (a compute capability 9.0 GPU and a library built
// with 90a: Device.hopperKernels).
function cudaHopperKernels(): boolean {
  if (!hasCuda) return false;
  const d = Device.open({ backend: "cuda" });
  const hopper = d.hopperKernels;
  d.dispose();
  return hopper;
}

function cudaWithPath(path: KernelPath): () => Device {
  return () => {
    const d = Device.open({ backend: "cuda" });
    d.setKernelPath(path);
    return d;
  };
}

const hopperKernels = cudaHopperKernels();

/** Every backend and, on CUDA, every kernel family forced, so each path passes every test. */
export const BACKENDS: Backend[] = [
  { label: "cpu backend", enabled: true, cuda: false, open: () => Device.open({ backend: "cpu" }) },
  { label: "cuda backend (auto kernel path)", enabled: hasCuda, cuda: true, open: cudaWithPath(0) },
  { label: "cuda backend (sm_80 path forced)", enabled: hasCuda, cuda: true, open: cudaWithPath(80) },
  { label: "cuda backend (small-M path forced)", enabled: hasCuda, cuda: true, open: cudaWithPath(1) },
  { label: "cuda backend (sm_90a path forced)", enabled: hopperKernels, cuda: true, open: cudaWithPath(90) },
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
