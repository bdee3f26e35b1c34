// async.ts: non-blocking completion for servers. Work is enqueued on a stream; these functions
// record an event behind it and poll fsg_event_query / fsg_stream_query from timers
// (setImmediate first, then setTimeout with a growing delay), so the event loop never blocks
// on the GPU and no JSCallback is ever called from a native thread.
//
//   await eventDone(event)            the work before event.record() has completed
//   await streamDone(stream)          everything enqueued on the stream so far has completed
//   await deviceDone(device)          everything on the device's current stream so far
//   await uploadAsync(tensor, raw)    host -> device copy; `raw` stays referenced until it is done
//   await toRawAsync(tensor)          device -> host copy of the elements (row-major)
//   await toFloat32Async(tensor)      the same, decoded to float32
//
// Every function takes `{ stream }` to enqueue on a given stream instead of the device's current
// one: several requests can be in flight, each on its own stream. On the CPU backend the work is
// done when the call returns, so the promises are already settled on the first query.
//
// Copies go in two steps: wait (polling) for the work already on the stream, then copy and wait
// for the copy. CUDA copies to or from pageable host memory may return only once the copy is done
// (the C ABI has no pinned host memory); without the first step they would block the thread
// until all earlier kernels on the stream finished. The synchronous path (tensor.toFloat32(),
// device.synchronize()) stays for scripts.
import type { Device, Event, Stream } from "./device.ts";
import { decode, rawArray, type RawArray } from "./dtype.ts";
import { check, fail, FusedSwiGLUError } from "./errors.ts";
import { hostPtr, lib } from "./ffi.ts";
import { expectRawOf, type Tensor } from "./tensor.ts";

/** Element arrays of the dtypes: Float32Array for float32, Uint16Array / Uint8Array bits otherwise. */
export type RawElements = RawArray;

export interface WaitOptions {
  /** Enqueue on (and wait for) this stream instead of the device's current stream. */
  stream?: Stream | null;
  /**
   * For this long (ms, default 2) polls run back to back on setImmediate: the event loop still
   * serves I/O and timers between them, and short GPU work is seen at once. After it, polls run
   * on timers (0 ms, then maxDelayMs).
   */
  spinMs?: number;
  /** Longest pause between two polls after the spin window, in ms (default 1). */
  maxDelayMs?: number;
  /** Reject with FSG_ERR_NOT_READY after this many ms (default: never). */
  timeoutMs?: number;
  /** Reject when aborted (the device work itself is not cancelled). */
  signal?: AbortSignal;
}

/** Timer polls at 0 ms after the spin window, before maxDelayMs. */
const ZERO_DELAY_POLLS = 8;

/** Host buffers that an enqueued copy may still read or write, with the copies' count. */
const inFlight = new Map<RawElements, number>();

function hold(buffer: RawElements): void {
  inFlight.set(buffer, (inFlight.get(buffer) ?? 0) + 1);
}

function release(buffer: RawElements): void {
  const n = (inFlight.get(buffer) ?? 1) - 1;
  if (n <= 0) inFlight.delete(buffer);
  else inFlight.set(buffer, n);
}

/** Number of host buffers held for copies still in flight (tests, leak checks). */
export function pendingHostBuffers(): number {
  return inFlight.size;
}

/**
 * Resolves once `ready()` returns true, checking it now, then on setImmediate for `spinMs`, then
 * on timers (0 ms a few times, then `maxDelayMs`). A throw from `ready()` rejects.
 */
export function pollUntil(ready: () => boolean, what: string, options: WaitOptions = {}): Promise<void> {
  try {
    if (ready()) return Promise.resolve();
  } catch (e) {
    return Promise.reject(e);
  }
  const maxDelay = Math.max(0, options.maxDelayMs ?? 1);
  const spinMs = Math.max(0, options.spinMs ?? 2);
  const start = performance.now();
  return new Promise<void>((resolve, reject) => {
    let timerPolls = 0;
    const tick = (): void => {
      try {
        if (ready()) return resolve();
        if (options.signal?.aborted) {
          return reject(new FusedSwiGLUError("FSG_ERR_NOT_READY", `${what}: aborted while the device work was pending`));
        }
        if (options.timeoutMs !== undefined && performance.now() - start > options.timeoutMs) {
          return reject(new FusedSwiGLUError("FSG_ERR_NOT_READY", `${what}: not complete after ${options.timeoutMs} ms`));
        }
        if (performance.now() - start < spinMs) {
          setImmediate(tick);
        } else {
          timerPolls++;
          setTimeout(tick, timerPolls <= ZERO_DELAY_POLLS ? 0 : maxDelay);
        }
      } catch (e) {
        reject(e);
      }
    };
    setImmediate(tick);
  });
}

/** Resolves when the work recorded before `event.record()` has completed. */
export function eventDone(event: Event, options: WaitOptions = {}): Promise<void> {
  return pollUntil(() => event.query(), "eventDone", options);
}

/** Resolves when everything enqueued on `stream` so far has completed. */
export function streamDone(stream: Stream, options: WaitOptions = {}): Promise<void> {
  return pollUntil(() => stream.query(), "streamDone", options);
}

/** Runs `fn` with `stream` current (when given) on `device`. */
function onStream<T>(device: Device, stream: Stream | null | undefined, fn: () => T): T {
  if (!stream) return fn();
  if (stream.device !== device) fail("FSG_ERR_DEVICE_MISMATCH", "stream: belongs to another device than the tensor");
  return device.withStream(stream, fn);
}

/**
 * Resolves when all work enqueued so far on the device's current stream (or `options.stream`)
 * has completed. Unlike streamDone, later work on the stream does not delay it.
 */
export async function deviceDone(device: Device, options: WaitOptions = {}): Promise<void> {
  device.assertOpen();
  const event = device.createEvent();
  try {
    onStream(device, options.stream, () => event.record());
    await eventDone(event, options);
  } finally {
    event.dispose();
  }
}

export interface UploadOptions extends WaitOptions {
  /**
   * Enqueue the copy at once instead of after the stream's earlier work, so that work enqueued
   * right after the call (without awaiting) reads the new values. For streams with nothing
   * pending (a server's per-batch stream); otherwise CUDA may block the thread until that work
   * is done. The promise still holds `raw` until the copy has completed.
   */
  enqueueNow?: boolean;
}

/**
 * Uploads `raw` (row-major elements) into the contiguous `tensor` and resolves when the copy has
 * completed; `raw` stays referenced until then (do not modify it before). Like downloads, it
 * first waits (polling) for the work already on the stream: CUDA stages copies from pageable
 * host memory and may block the thread until that work is done otherwise. The copy is then
 * enqueued after an await: enqueue work that reads `tensor` once the promise resolved (or pass
 * `enqueueNow`).
 */
export async function uploadAsync(tensor: Tensor, raw: RawElements, options: UploadOptions = {}): Promise<void> {
  tensor.assertLive("tensor");
  expectRawOf(tensor.dtype, raw);
  if (raw.length !== tensor.numel) fail("FSG_ERR_SHAPE", `raw: expected ${tensor.numel} elements, got ${raw.length}`);
  if (!tensor.isContiguous()) fail("FSG_ERR_LAYOUT", "uploadAsync: the tensor must be contiguous");
  if (raw.length === 0) return;
  const device = tensor.device;
  device.assertOpen();
  if (!options.enqueueNow) {
    hold(raw);
    try {
      await deviceDone(device, options); // the work before the copy
    } finally {
      release(raw);
    }
    tensor.assertLive("tensor");
  }
  const dst = tensor.storage.ptr + BigInt(tensor.byteOffset);
  onStream(device, options.stream, () =>
    check(lib.fsg_memcpy_h2d_async(device.handle, dst, hostPtr(raw), BigInt(raw.byteLength)), "fsg_memcpy_h2d_async"));
  await doneHolding(device, raw, options); // the copy itself
}

/**
 * Waits for the work enqueued so far (an event behind it) while `buffer` is held. If the wait
 * ends early (time-out, abort), the buffer stays held until the copy has really completed.
 */
async function doneHolding(device: Device, buffer: RawElements, options: WaitOptions): Promise<void> {
  hold(buffer);
  let event: Event | null = null;
  let givenUp = false;
  try {
    event = device.createEvent();
    const e = event;
    onStream(device, options.stream, () => e.record());
    await eventDone(e, options);
  } catch (err) {
    const e = event;
    if (e && err instanceof FusedSwiGLUError && err.code === "FSG_ERR_NOT_READY") {
      // Given up on, not finished: release in the background once the device is done with it.
      givenUp = true;
      void eventDone(e, { spinMs: 0, maxDelayMs: 10 }).catch(() => undefined).finally(() => {
        release(buffer);
        e.dispose();
      });
    }
    throw err;
  } finally {
    if (!givenUp) {
      release(buffer);
      event?.dispose();
    }
  }
}

/** Row-major gather of a strided view out of the elements [min, ...] read from its storage. */
function gather(t: Tensor, covering: RawElements, min: number): RawElements {
  const out = rawArray(t.dtype, t.numel);
  const nd = t.ndim;
  const idx = new Array<number>(nd).fill(0);
  let pos = t.offset - min;
  for (let i = 0; i < out.length; i++) {
    out[i] = covering[pos]!;
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      pos += t.strides[d]!;
      if (idx[d]! < t.shape[d]!) break;
      pos -= t.strides[d]! * t.shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Downloads the elements of `tensor` (any strides) in row-major order, without blocking the
 * event loop: waits for the work before it, then copies. The tensor must stay alive until the
 * promise settles.
 */
export async function toRawAsync(tensor: Tensor, options: WaitOptions = {}): Promise<RawElements> {
  tensor.assertLive("tensor");
  const device = tensor.device;
  const span = tensor.span();
  const count = span === null ? 0 : span.max - span.min + 1;
  const host = rawArray(tensor.dtype, count);
  if (span === null) return host;
  await deviceDone(device, options); // the work that produces the tensor
  tensor.assertLive("tensor");
  const src = tensor.storage.ptr + BigInt(span.min * tensor.itemSize);
  onStream(device, options.stream, () =>
    check(lib.fsg_memcpy_d2h_async(device.handle, hostPtr(host), src, BigInt(host.byteLength)), "fsg_memcpy_d2h_async"));
  await doneHolding(device, host, options); // the copy itself
  return tensor.isContiguous() ? host : gather(tensor, host, span.min);
}

/** The values of `tensor` as float32 (row-major), downloaded without blocking the event loop. */
export async function toFloat32Async(tensor: Tensor, options: WaitOptions = {}): Promise<Float32Array> {
  const dtype = tensor.dtype;
  return decode(dtype, await toRawAsync(tensor, options));
}
