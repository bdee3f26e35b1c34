// device.ts: Device (an fsg_context: a backend, a device and a current stream), Stream, Event.
import { check, fail, Status } from "./errors.ts";
import { hostPtr, lib } from "./ffi.ts";
import { DEVICE_CPU, DEVICE_CUDA } from "./descriptor.ts";
import { captureGraph, type CaptureOptions, type Graph } from "./graph.ts";

/** Kernel families, see Device.setKernelPath. */
export type KernelPath = 0 | 1 | 80 | 90;

export type Backend = "auto" | "cuda" | "cpu";
const BACKEND_CODE: Record<Backend, number> = { auto: 0, cuda: 1, cpu: 2 };

export interface DeviceOptions {
  /** "auto" (default): CUDA when the device exists and has compute capability 8.0 or newer, else the CPU backend. */
  backend?: Backend;
  /** CUDA device ordinal (default 0). */
  ordinal?: number;
  /** Allow fp16 accumulation in the GEMMs of float16 calls (default false); see Device.fp16Accumulation. */
  fp16Accumulation?: boolean;
}

/** Number of CUDA devices the library sees (0 without GPU or driver). */
export function cudaDeviceCount(): number {
  const out = new Int32Array(1);
  check(lib.fsg_cuda_device_count(hostPtr(out)), "fsg_cuda_device_count");
  return out[0]!;
}

/**
 * The GPU code the loaded library carries (FSG_CUDA_ARCHS at build time), e.g.
 * "sm_80 sm_86 sm_89 sm_90a compute_90": SASS per architecture, and the PTX that newer GPUs
 * JIT-compile on first use.
 */
export function cudaArchs(): string {
  return lib.fsg_cuda_archs();
}

/**
 * True when the CUDA backend opens on device 0: a GPU of compute capability 8.0 or newer, a
 * driver new enough for the library's CUDA runtime, and code in the library that the GPU runs
 * (cudaArchs()). (cudaDeviceCount() also counts older GPUs, which the kernels cannot run on.)
 */
export function hasCuda(): boolean {
  if (cudaDeviceCount() === 0) return false;
  const out = new BigUint64Array(1);
  if (lib.fsg_context_create(BACKEND_CODE.cuda, 0, hostPtr(out)) !== Status.FSG_OK) return false;
  check(lib.fsg_context_destroy(out[0]!), "fsg_context_destroy");
  return true;
}

/** A backend bound to one device; all work of its tensors is enqueued on its current stream. */
export class Device {
  /** fsg_context* as BigInt. */
  readonly handle: bigint;
  readonly backend: "cuda" | "cpu";
  readonly ordinal: number;
  /** Device name, e.g. "NVIDIA H100 80GB HBM3" or "CPU (2 threads)". */
  readonly name: string;
  /** major*10+minor on CUDA, 0 on the CPU backend. */
  readonly computeCapability: number;
  /**
   * True when the sm_90a (Hopper wgmma/TMA) kernels run here: compute capability 9.0 and a
   * library built with 90a (cudaArchs()). Without them kernel path 0 takes the sm_80 kernels and
   * setKernelPath(90) throws.
   */
  readonly hopperKernels: boolean;
  #stream: Stream | null = null;
  #liveStorages = 0;
  #closing = false;
  #destroyed = false;
  /** Host buffers that async copies may still read or write; released at synchronize(). */
  #inFlight: NodeJS.TypedArray[] = [];
  #inFlightBytes = 0;

  private constructor(handle: bigint, ordinal: number) {
    this.handle = handle;
    const out = new Int32Array(1);
    check(lib.fsg_context_backend(handle, hostPtr(out)), "fsg_context_backend");
    this.backend = out[0] === BACKEND_CODE.cuda ? "cuda" : "cpu";
    this.ordinal = this.backend === "cuda" ? ordinal : 0;
    check(lib.fsg_context_compute_capability(handle, hostPtr(out)), "fsg_context_compute_capability");
    this.computeCapability = out[0]!;
    check(lib.fsg_context_sm90_kernels(handle, hostPtr(out)), "fsg_context_sm90_kernels");
    this.hopperKernels = out[0] === 1;
    const buf = new Uint8Array(256);
    check(lib.fsg_context_device_name(handle, hostPtr(buf), BigInt(buf.length)), "fsg_context_device_name");
    const end = buf.indexOf(0);
    this.name = new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
  }

  /** Opens a context. Throws FSG_ERR_NO_DEVICE for backend "cuda" without a GPU, or on one older than compute capability 8.0. */
  static open(options: DeviceOptions = {}): Device {
    const backend = options.backend ?? "auto";
    const code = BACKEND_CODE[backend];
    if (code === undefined) fail("FSG_ERR_INVALID_ARGUMENT", `backend: expected "auto", "cuda" or "cpu", got ${String(backend)}`);
    const ordinal = options.ordinal ?? 0;
    if (!Number.isSafeInteger(ordinal) || ordinal < 0 || ordinal > 0x7fffffff) {
      fail("FSG_ERR_INVALID_ARGUMENT", `ordinal: expected an integer from 0 to 2^31 - 1, got ${ordinal}`);
    }
    const fp16Accumulation = options.fp16Accumulation ?? false;
    if (typeof fp16Accumulation !== "boolean") fail("FSG_ERR_INVALID_ARGUMENT", `fp16Accumulation: expected a boolean, got ${String(fp16Accumulation)}`);
    const out = new BigUint64Array(1);
    check(lib.fsg_context_create(code, ordinal, hostPtr(out)), "fsg_context_create");
    const device = new Device(out[0]!, ordinal);
    if (fp16Accumulation) device.fp16Accumulation = true;
    return device;
  }

  /** DLPack device of this context's tensors. */
  get deviceType(): number {
    return this.backend === "cuda" ? DEVICE_CUDA : DEVICE_CPU;
  }

  get disposed(): boolean {
    return this.#closing;
  }

  /** Allocations of this device not yet freed (tensor storages, workspaces): a leak shows here. */
  get liveStorages(): number {
    return this.#liveStorages;
  }

  /** Throws when the device was disposed. */
  assertOpen(): void {
    if (this.#closing) fail("FSG_ERR_INVALID_ARGUMENT", `device '${this.name}' was disposed`);
  }

  /** Waits for all work on the current stream; releases host buffers held for async copies. */
  synchronize(): void {
    this.assertOpen();
    check(lib.fsg_context_synchronize(this.handle), "fsg_context_synchronize");
    this.#inFlight = [];
    this.#inFlightBytes = 0;
  }

  /** Free and total device memory in bytes (both 0 on the CPU backend). */
  memInfo(): { free: number; total: number } {
    this.assertOpen();
    const free = new BigUint64Array(1);
    const total = new BigUint64Array(1);
    check(lib.fsg_context_mem_info(this.handle, hostPtr(free), hostPtr(total)), "fsg_context_mem_info");
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /** CPU backend worker threads (0: hardware concurrency). Ignored on CUDA. */
  setNumThreads(threads: number): void {
    this.assertOpen();
    check(lib.fsg_context_set_num_threads(this.handle, threads), "fsg_context_set_num_threads");
  }

  /**
   * Chooses the kernel family on CUDA (tests, benchmarks): 0 auto, 1 the small-M (decode)
   * kernels wherever they apply, 80 always the sm_80 mma.sync kernels, 90 the sm_90a wgmma
   * kernels wherever they apply (only where hopperKernels). Ignored on the CPU backend.
   */
  setKernelPath(path: KernelPath): void {
    this.assertOpen();
    check(lib.fsg_context_set_kernel_path(this.handle, path), "fsg_context_set_kernel_path");
  }

  /**
   * fp16 accumulation (fattorib's FastAccumFusedSwiGLU), off by default. When true, the GEMMs of
   * float16 calls may keep their running sums in fp16: the sm_80 mma.sync kernels do (every GPU
   * before Hopper, where GeForce cards run it at twice the fp32-accumulate rate, and kernel path
   * 80); the Hopper, small-M and CPU kernels, bfloat16 and float32 calls accumulate in fp32
   * regardless. Each sum is rounded to fp16 once per 16 terms of K: README, "fp16 accumulation".
   */
  get fp16Accumulation(): boolean {
    this.assertOpen();
    const out = new Int32Array(1);
    check(lib.fsg_context_fp16_accumulation(this.handle, hostPtr(out)), "fsg_context_fp16_accumulation");
    return out[0] === 1;
  }

  set fp16Accumulation(allow: boolean) {
    this.assertOpen();
    if (typeof allow !== "boolean") fail("FSG_ERR_INVALID_ARGUMENT", `fp16Accumulation: expected a boolean, got ${String(allow)}`);
    check(lib.fsg_context_set_fp16_accumulation(this.handle, allow ? 1 : 0), "fsg_context_set_fp16_accumulation");
  }

  /** The stream work is enqueued on (null: the default stream). */
  get stream(): Stream | null {
    return this.#stream;
  }

  set stream(s: Stream | null) {
    this.assertOpen();
    if (s !== null && s.device !== this) fail("FSG_ERR_DEVICE_MISMATCH", "stream: belongs to another device");
    if (s !== null && s.disposed) fail("FSG_ERR_INVALID_ARGUMENT", "stream: the stream was disposed");
    check(lib.fsg_context_set_stream(this.handle, s?.handle ?? 0n), "fsg_context_set_stream");
    this.#stream = s;
  }

  /** Runs `fn` with `stream` as the current stream, then restores the previous one. */
  withStream<T>(stream: Stream, fn: () => T): T {
    const previous = this.#stream;
    this.stream = stream;
    try {
      return fn();
    } finally {
      if (!this.#closing) this.stream = previous;
    }
  }

  createStream(): Stream {
    return Stream.create(this);
  }

  createEvent(): Event {
    return Event.create(this);
  }

  /**
   * Records the work `fn` enqueues on this device (without running it) into a CUDA graph, to be
   * replayed with graph.replay(). `fn` must be synchronous and only launch ops on buffers that
   * exist before the capture (`out`, `workspace`); see src/graph.ts. CUDA only.
   */
  captureGraph(fn: () => void, options?: CaptureOptions): Graph {
    return captureGraph(this, fn, options);
  }

  /** Keeps `buffer` referenced until the next synchronize() (an async copy may still use it). */
  retainUntilSync(buffer: NodeJS.TypedArray): void {
    if (this.backend === "cpu") return; // the CPU backend copies before returning
    this.#inFlight.push(buffer);
    this.#inFlightBytes += buffer.byteLength;
    if (this.#inFlightBytes > 256 * 1024 * 1024) this.synchronize();
  }

  /**
   * @internal bookkeeping: the context lives until its last allocation, stream, event and graph
   * is freed (they are destroyed through it).
   */
  _storageOpened(): void {
    this.assertOpen();
    this.#liveStorages++;
  }

  /** @internal */
  _storageClosed(): void {
    this.#liveStorages--;
    if (this.#closing && this.#liveStorages === 0) this.#destroy();
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    check(lib.fsg_context_destroy(this.handle), "fsg_context_destroy");
  }

  /**
   * Closes the device. The context is destroyed once every tensor allocated on it is disposed
   * (or collected); new work on it throws. Calling it again is a no-op.
   */
  dispose(): void {
    if (this.#closing) return;
    if (this === defaultDeviceInstance) defaultDeviceInstance = null;
    this.#closing = true;
    if (this.#liveStorages === 0) this.#destroy();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Device(${this.backend}:${this.ordinal} "${this.name}")`;
  }
}

let defaultDeviceInstance: Device | null = null;

/** The device tensors go to when none is named: Device.open({ backend: "auto" }), made once. */
export function defaultDevice(): Device {
  defaultDeviceInstance ??= Device.open({ backend: "auto" });
  return defaultDeviceInstance;
}

/**
 * Creates a stream or event through its fsg_*_create(ctx, out) and returns the handle. The device's
 * context stays alive until destroyNative releases it (it is destroyed through the context).
 */
function createNative(device: Device, create: (ctx: bigint, out: bigint) => number, name: string): bigint {
  device.assertOpen();
  const out = new BigUint64Array(1);
  check(create(device.handle, hostPtr(out)), name);
  device._storageOpened();
  return out[0]!;
}

/** Destroys what createNative made through its fsg_*_destroy(ctx, handle), then lets the context go. */
function destroyNative(device: Device, destroy: (ctx: bigint, handle: bigint) => number, handle: bigint, name: string): void {
  try {
    check(destroy(device.handle, handle), name);
  } finally {
    device._storageClosed();
  }
}

/** An fsg_*_query status: true when the work is done, false while it is pending. */
function isDone(status: number, name: string): boolean {
  if (status === Status.FSG_ERR_NOT_READY) return false;
  check(status, name);
  return true;
}

/**
 * A native object owned by a device context (a stream or an event): its handle, and once disposed,
 * a typed error on use instead of a call with a dangling handle.
 */
abstract class DeviceObject {
  readonly device: Device;
  readonly handle: bigint;
  #destroyed = false;
  readonly #kind: string;

  protected constructor(device: Device, handle: bigint, kind: string) {
    this.device = device;
    this.handle = handle;
    this.#kind = kind;
  }

  protected assertLive(): void {
    if (this.#destroyed) fail("FSG_ERR_INVALID_ARGUMENT", `${this.#kind} was disposed`);
  }

  /** True once dispose() ran: the handle is gone, and passing the object on is an error. */
  get disposed(): boolean {
    return this.#destroyed;
  }

  /** Marks the object disposed; false when it already was (dispose() then does nothing). */
  protected markDisposed(): boolean {
    if (this.#destroyed) return false;
    this.#destroyed = true;
    return true;
  }

  abstract dispose(): void;

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A CUDA stream (on the CPU backend, work is done when the call returns). */
export class Stream extends DeviceObject {
  private constructor(device: Device, handle: bigint) {
    super(device, handle, "stream");
  }

  static create(device: Device): Stream {
    return new Stream(device, createNative(device, lib.fsg_stream_create, "fsg_stream_create"));
  }

  /** True when all work enqueued on the stream has completed. */
  query(): boolean {
    this.assertLive();
    return isDone(lib.fsg_stream_query(this.device.handle, this.handle), "fsg_stream_query");
  }

  synchronize(): void {
    this.assertLive();
    check(lib.fsg_stream_synchronize(this.device.handle, this.handle), "fsg_stream_synchronize");
  }

  /** Destroys the stream (the device goes back to the default stream if this one was current). */
  dispose(): void {
    if (!this.markDisposed()) return;
    if (this.device.stream === this && !this.device.disposed) this.device.stream = null;
    destroyNative(this.device, lib.fsg_stream_destroy, this.handle, "fsg_stream_destroy");
  }
}

/** A CUDA event (host time on the CPU backend). */
export class Event extends DeviceObject {
  private constructor(device: Device, handle: bigint) {
    super(device, handle, "event");
  }

  static create(device: Device): Event {
    return new Event(device, createNative(device, lib.fsg_event_create, "fsg_event_create"));
  }

  /** Records the event on the device's current stream. Returns this. */
  record(): this {
    this.assertLive();
    check(lib.fsg_event_record(this.device.handle, this.handle), "fsg_event_record");
    return this;
  }

  /** True when the work before the record has completed. */
  query(): boolean {
    this.assertLive();
    return isDone(lib.fsg_event_query(this.device.handle, this.handle), "fsg_event_query");
  }

  synchronize(): void {
    this.assertLive();
    check(lib.fsg_event_synchronize(this.device.handle, this.handle), "fsg_event_synchronize");
  }

  /** Milliseconds from this (recorded earlier) to `end`. */
  elapsedMs(end: Event): number {
    this.assertLive();
    if (end.disposed) fail("FSG_ERR_INVALID_ARGUMENT", "end: the event was disposed");
    const out = new Float32Array(1);
    check(lib.fsg_event_elapsed_ms(this.device.handle, this.handle, end.handle, hostPtr(out)), "fsg_event_elapsed_ms");
    return out[0]!;
  }

  dispose(): void {
    if (this.markDisposed()) destroyNative(this.device, lib.fsg_event_destroy, this.handle, "fsg_event_destroy");
  }
}
