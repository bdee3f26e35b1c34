// graph.ts: CUDA graphs (fsg_graph_* in fused_swiglu.h). A decode step is the same few kernels on
// the same buffers every time: record it once, then replay it with one launch instead of paying
// the FFI, argument checks and several launches per call.
//
//   const g = device.captureGraph(() => {
//     fusedSwiglu(x, wGate, wUp, { out: z });          // recorded, not run
//     matmul(z, wDown, { out: y });
//   }, { retain: [x, z, y] });
//   x.writeFloat32(nextRows); g.replay(); y.toFloat32(); // runs on the device's current stream
//   g.dispose();
//
// Inside the callback only launches on preallocated buffers are allowed: anything that allocates
// (an op without `out`, a backward without `workspace`), frees, copies from or to host arrays or
// waits for the device throws FSG_ERR_INVALID_ARGUMENT naming the call; the capture is then
// abandoned and the device works normally again. The callback must be synchronous.
// The graph reads and writes the captured buffers wherever they are: keep them allocated while
// it lives (`retain` holds them until dispose()). CPU devices: FSG_ERR_INVALID_ARGUMENT.
import type { Device } from "./device.ts";
import { check, fail, Status } from "./errors.ts";
import { hostPtr, lib } from "./ffi.ts";
import type { Storage, Tensor } from "./tensor.ts";

export interface CaptureOptions {
  /** Tensors the graph reads or writes: kept allocated until the graph is disposed. */
  retain?: Tensor[];
}

/** What a graph holds, shared with its finalizer. */
interface GraphState {
  device: Device;
  handle: bigint;
  storages: Storage[];
  destroyed: boolean;
}

function destroy(state: GraphState): void {
  if (state.destroyed) return;
  state.destroyed = true;
  try {
    check(lib.fsg_graph_destroy(state.device.handle, state.handle), "fsg_graph_destroy");
  } finally {
    for (const s of state.storages) s.release();
    state.device._storageClosed(); // the context outlives its graphs, as it does its tensors
  }
}

const collected = new FinalizationRegistry<GraphState>(destroy);

/** A captured, instantiated CUDA graph. */
export class Graph {
  readonly device: Device;
  /** Nodes recorded (kernels, copies, memsets). */
  readonly nodes: number;
  #state: GraphState;

  /** @internal use Device.captureGraph / captureGraph. */
  constructor(device: Device, handle: bigint, retain: Tensor[]) {
    const nodes = new BigUint64Array(1);
    check(lib.fsg_graph_node_count(handle, hostPtr(nodes)), "fsg_graph_node_count");
    this.nodes = Number(nodes[0]);
    device._storageOpened();
    this.device = device;
    this.#state = { device, handle, storages: retain.map((t) => t.storage), destroyed: false };
    for (const s of this.#state.storages) s.retain();
    collected.register(this, this.#state, this);
  }

  get disposed(): boolean {
    return this.#state.destroyed;
  }

  /** Enqueues the recorded work on the device's current stream (asynchronous, like the ops). */
  replay(): void {
    if (this.#state.destroyed) fail("FSG_ERR_INVALID_ARGUMENT", "graph was disposed");
    this.device.assertOpen();
    check(lib.fsg_graph_launch(this.device.handle, this.#state.handle), "fsg_graph_launch");
  }

  /** Frees the graph and releases the retained tensors. Calling it again is a no-op. */
  dispose(): void {
    if (this.#state.destroyed) return;
    collected.unregister(this);
    destroy(this.#state);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Records the device work `fn` enqueues (without running it) into a Graph. See the header. */
export function captureGraph(device: Device, fn: () => void, options: CaptureOptions = {}): Graph {
  device.assertOpen();
  const retain = options.retain ?? [];
  retain.forEach((t, i) => t.assertLive(`retain[${i}]`));
  check(lib.fsg_graph_begin(device.handle), "fsg_graph_begin");
  const out = new BigUint64Array(1);
  // Ends the capture without keeping it: after a throw, or a callback that was not synchronous.
  const abandon = (): void => {
    if (lib.fsg_graph_end(device.handle, hostPtr(out)) === Status.FSG_OK) lib.fsg_graph_destroy(device.handle, out[0]!);
  };
  let result: unknown;
  try {
    result = fn();
  } catch (e) {
    abandon();
    throw e;
  }
  if (result !== null && typeof result === "object" && typeof (result as { then?: unknown }).then === "function") {
    abandon();
    fail("FSG_ERR_INVALID_ARGUMENT", "captureGraph: fn returned a promise; the capture records only what fn enqueues before it returns, so fn must be synchronous");
  }
  check(lib.fsg_graph_end(device.handle, hostPtr(out)), "fsg_graph_end");
  try {
    return new Graph(device, out[0]!, retain);
  } catch (e) {
    lib.fsg_graph_destroy(device.handle, out[0]!);
    throw e;
  }
}
