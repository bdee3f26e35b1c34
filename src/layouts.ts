// layouts.ts: the weight layouts the kernels take, each as [K, N] views of one allocation.
//
//   separate      gate [K, N] and up [K, N], two allocations (storage = gate's)
//   linear        nn.Linear style: storage [2N, K] (gate rows first); each view is the
//                 transpose of an [N, K] row block: strides [1, K]
//   packed        storage [K, 2N] (the seeds' Wf); gate = columns [0, N), up = [N, 2N)
//                 ("gate-up") or the other way round ("up-gate"): strides [2N, 1]
//   interleaved   storage [K, 2N] with gate in even columns and up in odd ones: strides [2N, 2]
import type { Device } from "./device.ts";
import { fail } from "./errors.ts";
import { Tensor, type DType } from "./tensor.ts";

export type Layout = "separate" | "linear" | "packed" | "packed-up-gate" | "interleaved";
export const LAYOUTS: readonly Layout[] = ["separate", "linear", "packed", "packed-up-gate", "interleaved"];

export interface WeightViews {
  /** [K, N] view. */
  gate: Tensor;
  /** [K, N] view. */
  up: Tensor;
  /** The allocation as one tensor ([K, 2N], [2N, K] or, for "separate", gate itself). */
  storage: Tensor;
  /** Second allocation of the "separate" layout (up itself), else null. */
  storage2: Tensor | null;
  layout: Layout;
}

export interface LayoutOptions {
  dtype?: DType;
  device?: Device;
}

/** Builds the [K, N] gate/up views of a storage tensor laid out as `layout`. */
export function viewsOf(layout: Exclude<Layout, "separate">, storage: Tensor, K: number, N: number): { gate: Tensor; up: Tensor } {
  const o = storage.offset;
  switch (layout) {
    case "linear":
      return { gate: storage.asStrided([K, N], [1, K], o), up: storage.asStrided([K, N], [1, K], o + N * K) };
    case "packed":
      return { gate: storage.asStrided([K, N], [2 * N, 1], o), up: storage.asStrided([K, N], [2 * N, 1], o + N) };
    case "packed-up-gate":
      return { gate: storage.asStrided([K, N], [2 * N, 1], o + N), up: storage.asStrided([K, N], [2 * N, 1], o) };
    case "interleaved":
      return { gate: storage.asStrided([K, N], [2 * N, 2], o), up: storage.asStrided([K, N], [2 * N, 2], o + 1) };
  }
}

/** Shape of the single allocation of a layout. */
export function storageShape(layout: Layout, K: number, N: number): number[] {
  if (layout === "separate") return [K, N];
  return layout === "linear" ? [2 * N, K] : [K, 2 * N];
}

/** Uninitialized weights in `layout`. */
export function weightsIn(layout: Layout, K: number, N: number, options: LayoutOptions = {}): WeightViews {
  if (!LAYOUTS.includes(layout)) fail("FSG_ERR_INVALID_ARGUMENT", `layout: expected one of ${LAYOUTS.join(", ")}, got ${String(layout)}`);
  const dtype = options.dtype ?? "float32";
  if (layout === "separate") {
    const gate = Tensor.empty([K, N], dtype, options);
    const up = Tensor.empty([K, N], dtype, options);
    return { gate, up, storage: gate, storage2: up, layout };
  }
  const storage = Tensor.empty(storageShape(layout, K, N), dtype, options);
  return { ...viewsOf(layout, storage, K, N), storage, storage2: null, layout };
}

export const weightsSeparate = (K: number, N: number, o?: LayoutOptions) => weightsIn("separate", K, N, o);
export const weightsLinear = (N: number, K: number, o?: LayoutOptions) => weightsIn("linear", K, N, o);
export const weightsPacked = (K: number, N: number, order: "gate-up" | "up-gate" = "gate-up", o?: LayoutOptions) =>
  weightsIn(order === "gate-up" ? "packed" : "packed-up-gate", K, N, o);
export const weightsInterleaved = (K: number, N: number, o?: LayoutOptions) => weightsIn("interleaved", K, N, o);

/** Disposes every tensor of a WeightViews. */
export function disposeWeights(w: WeightViews): void {
  w.gate.dispose();
  w.up.dispose();
  w.storage.dispose();
  w.storage2?.dispose();
}
