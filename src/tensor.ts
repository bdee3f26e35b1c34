// tensor.ts: Tensor (shape, dtype, strides in elements, offset) over a refcounted Storage that
// owns one fsg_malloc allocation. Views share the storage; nothing here launches a kernel.
//
// Dispose: `tensor.dispose()` / `using` drops this tensor's reference; the allocation is freed
// (stream-ordered) when the last tensor viewing it is disposed or collected (a
// FinalizationRegistry is the backstop, not the normal path). Disposing twice is a no-op; any
// other use of a disposed tensor throws FusedSwiGLUError FSG_ERR_INVALID_ARGUMENT.
import { Descriptor } from "./descriptor.ts";
import { defaultDevice, type Device } from "./device.ts";
import { decode, DTYPES, encode, isDType, rawArray, type DType, type RawArray } from "./dtype.ts";
import { check, fail } from "./errors.ts";
import { hostPtr, lib } from "./ffi.ts";

export type { DType, FloatDType } from "./dtype.ts";

export interface TensorOptions {
  device?: Device;
}

/** One device allocation, freed when its last tensor lets go. */
export class Storage {
  readonly device: Device;
  /** Device pointer (host pointer on the CPU backend). */
  readonly ptr: bigint;
  readonly bytes: number;
  #refs = 0;
  #freed = false;

  constructor(device: Device, bytes: number) {
    // A size past 2^53 cannot be exact in a number, and BigInt() of one past 2^64 would wrap in
    // the FFI's u64: refuse both before anything is allocated.
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      fail(bytes > Number.MAX_SAFE_INTEGER ? "FSG_ERR_TOO_LARGE" : "FSG_ERR_INVALID_ARGUMENT",
        `bytes: expected an integer from 0 to 2^53 - 1, got ${bytes}`);
    }
    device._storageOpened();
    const out = new BigUint64Array(1);
    try {
      // Never ask for 0 bytes: empty tensors still get a valid (unused) pointer.
      check(lib.fsg_malloc(device.handle, BigInt(Math.max(bytes, 1)), hostPtr(out)), "fsg_malloc");
    } catch (e) {
      device._storageClosed();
      throw e;
    }
    this.device = device;
    this.ptr = out[0]!;
    this.bytes = bytes;
  }

  get freed(): boolean {
    return this.#freed;
  }

  get refs(): number {
    return this.#refs;
  }

  retain(): void {
    this.#refs++;
  }

  release(): void {
    if (this.#freed || --this.#refs > 0) return;
    try {
      check(lib.fsg_free(this.device.handle, this.ptr), "fsg_free");
    } catch (e) {
      // Refused (e.g. during a graph capture): still allocated, so a later release() frees it.
      this.#refs++;
      throw e;
    }
    this.#freed = true;
    this.device._storageClosed();
  }
}

const collected = new FinalizationRegistry<Storage>((storage) => storage.release());

function checkShape(shape: readonly number[], what = "shape"): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    fail("FSG_ERR_SHAPE", `${what}: expected non-negative integers, got [${String(shape)}]`);
  }
}

function checkDType(dtype: unknown): asserts dtype is DType {
  if (!isDType(dtype)) {
    fail("FSG_ERR_DTYPE", `dtype: expected "float32", "float16", "bfloat16", "float8_e4m3fn" or "float8_e8m0fnu", got ${String(dtype)}`);
  }
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Compact row-major strides of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

function normDim(dim: number, ndim: number): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(d) || d < 0 || d >= ndim) fail("FSG_ERR_INVALID_ARGUMENT", `dim: ${dim} is out of range for rank ${ndim}`);
  return d;
}

/** Deterministic PRNG (mulberry32) for randn/uniform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}


export class Tensor {
  readonly storage: Storage;
  readonly shape: readonly number[];
  /** In elements. */
  readonly strides: readonly number[];
  /** Offset of element [0,...,0] in the storage, in elements. */
  readonly offset: number;
  readonly dtype: DType;
  #disposed = false;
  #descriptor: Descriptor | null = null;

  /** Internal: a view of `storage`. Use the static constructors or the view methods. */
  constructor(storage: Storage, shape: readonly number[], strides: readonly number[], offset: number, dtype: DType) {
    if (storage.freed) fail("FSG_ERR_INVALID_ARGUMENT", "storage was already freed");
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze([...strides]);
    this.offset = offset;
    this.dtype = dtype;
    storage.retain();
    collected.register(this, storage, this);
  }

  // ---- creation ----

  /** Uninitialized tensor (contents are whatever the allocator left). */
  static empty(shape: readonly number[], dtype: DType = "float32", options: TensorOptions = {}): Tensor {
    checkShape(shape);
    checkDType(dtype);
    const device = options.device ?? defaultDevice();
    const bytes = numelOf(shape) * DTYPES[dtype].bytes;
    if (!Number.isSafeInteger(bytes)) {
      fail("FSG_ERR_TOO_LARGE", `shape: [${shape.join(", ")}] of ${dtype} is ${bytes} bytes, past 2^53 - 1`);
    }
    const storage = new Storage(device, bytes);
    return new Tensor(storage, shape, contiguousStrides(shape), 0, dtype);
  }

  static zeros(shape: readonly number[], dtype: DType = "float32", options: TensorOptions = {}): Tensor {
    return Tensor.empty(shape, dtype, options).fill(0);
  }

  static full(shape: readonly number[], value: number, dtype: DType = "float32", options: TensorOptions = {}): Tensor {
    return Tensor.empty(shape, dtype, options).fill(value);
  }

  /** Uploads float32 values, rounded to `dtype` on the host (round-to-nearest-even). */
  static fromFloat32(data: Float32Array | readonly number[], shape: readonly number[], dtype: DType = "float32", options: TensorOptions = {}): Tensor {
    checkShape(shape);
    checkDType(dtype);
    if (data.length !== numelOf(shape)) {
      fail("FSG_ERR_SHAPE", `data: expected ${numelOf(shape)} values for shape [${shape.join(", ")}], got ${data.length}`);
    }
    return Tensor.fromRaw(encode(dtype, data), shape, dtype, options);
  }

  /** Uploads raw elements: Float32Array for float32, Uint16Array (bit patterns) for float16/bfloat16. */
  static fromRaw(raw: RawArray, shape: readonly number[], dtype: DType, options: TensorOptions = {}): Tensor {
    checkShape(shape);
    checkDType(dtype);
    expectRawOf(dtype, raw);
    if (raw.length !== numelOf(shape)) {
      fail("FSG_ERR_SHAPE", `raw: expected ${numelOf(shape)} elements for shape [${shape.join(", ")}], got ${raw.length}`);
    }
    const t = Tensor.empty(shape, dtype, options);
    t.#writeContiguous(raw);
    return t;
  }

  /** Normal(0, scale^2) values from a seeded host PRNG, rounded to `dtype`. */
  static randn(shape: readonly number[], dtype: DType = "float32", options: TensorOptions & { seed?: number; scale?: number } = {}): Tensor {
    checkShape(shape);
    const rand = mulberry32(options.seed ?? 0);
    const scale = options.scale ?? 1;
    const n = numelOf(shape);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u1 = Math.max(rand(), 1e-12);
      const u2 = rand();
      const r = Math.sqrt(-2 * Math.log(u1));
      data[i] = r * Math.cos(2 * Math.PI * u2) * scale;
      if (i + 1 < n) data[i + 1] = r * Math.sin(2 * Math.PI * u2) * scale;
    }
    return Tensor.fromFloat32(data, shape, dtype, options);
  }

  /** Uniform(low, high) values from a seeded host PRNG, rounded to `dtype`. */
  static uniform(shape: readonly number[], low: number, high: number, dtype: DType = "float32", options: TensorOptions & { seed?: number } = {}): Tensor {
    checkShape(shape);
    const rand = mulberry32(options.seed ?? 0);
    const data = new Float32Array(numelOf(shape));
    for (let i = 0; i < data.length; i++) data[i] = low + (high - low) * rand();
    return Tensor.fromFloat32(data, shape, dtype, options);
  }

  // ---- properties ----

  get device(): Device {
    return this.storage.device;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get itemSize(): number {
    return DTYPES[this.dtype].bytes;
  }

  get byteOffset(): number {
    return this.offset * this.itemSize;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Row-major compact (dims of size 1 may have any stride). */
  isContiguous(): boolean {
    let expected = 1;
    for (let i = this.ndim - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expected) return false;
      expected *= this.shape[i]!;
    }
    return true;
  }

  /** Smallest and largest storage index (elements) this view touches; null when empty. */
  span(): { min: number; max: number } | null {
    if (this.numel === 0) return null;
    let min = this.offset;
    let max = this.offset;
    for (let i = 0; i < this.ndim; i++) {
      const reach = this.strides[i]! * (this.shape[i]! - 1);
      if (reach < 0) min += reach;
      else max += reach;
    }
    return { min, max };
  }

  /** Throws FSG_ERR_INVALID_ARGUMENT naming `name` when disposed. */
  assertLive(name = "tensor"): void {
    if (this.#disposed) fail("FSG_ERR_INVALID_ARGUMENT", `tensor '${name}' was disposed`);
  }

  /** The fsg_tensor descriptor of this view (cached; it lives as long as the tensor). */
  descriptor(name = "tensor"): Descriptor {
    this.assertLive(name);
    this.#descriptor ??= new Descriptor({
      data: this.storage.ptr,
      deviceType: this.device.deviceType,
      deviceId: this.device.ordinal,
      dtype: DTYPES[this.dtype],
      shape: this.shape,
      strides: this.strides,
      byteOffset: this.byteOffset,
    });
    return this.#descriptor;
  }

  // ---- views (share the storage, no copy) ----

  /** Views `shape`/`strides` (elements) from absolute storage `offset`. Bounds are checked. */
  asStrided(shape: readonly number[], strides: readonly number[], offset = this.offset): Tensor {
    this.assertLive();
    checkShape(shape);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      fail("FSG_ERR_INVALID_ARGUMENT", `offset: expected a non-negative integer (elements), got ${offset}`);
    }
    if (strides.length !== shape.length || strides.some((s) => !Number.isSafeInteger(s))) {
      fail("FSG_ERR_INVALID_ARGUMENT", `strides: expected ${shape.length} integers, got [${String(strides)}]`);
    }
    if (numelOf(shape) > 0) {
      let min = offset;
      let max = offset;
      shape.forEach((d, i) => {
        const reach = strides[i]! * (d - 1);
        if (reach < 0) min += reach;
        else max += reach;
      });
      const capacity = this.storage.bytes / this.itemSize;
      if (min < 0 || max >= capacity) {
        fail("FSG_ERR_INVALID_ARGUMENT", `asStrided: view reaches elements [${min}, ${max}] outside the storage's [0, ${capacity})`);
      }
    }
    return new Tensor(this.storage, shape, strides, offset, this.dtype);
  }

  /** Another reference to the same view (disposed independently). */
  view(): Tensor {
    return this.asStrided(this.shape, this.strides, this.offset);
  }

  /** Swaps two dims (default: the two of a 2-D tensor). */
  transpose(dim0 = 0, dim1 = 1): Tensor {
    this.assertLive();
    const a = normDim(dim0, this.ndim);
    const b = normDim(dim1, this.ndim);
    const shape = [...this.shape];
    const strides = [...this.strides];
    [shape[a], shape[b]] = [shape[b]!, shape[a]!];
    [strides[a], strides[b]] = [strides[b]!, strides[a]!];
    return this.asStrided(shape, strides, this.offset);
  }

  /** Transpose of a 2-D tensor. */
  t(): Tensor {
    if (this.ndim !== 2) fail("FSG_ERR_SHAPE", `t(): expected a 2-D tensor, got rank ${this.ndim}`);
    return this.transpose(0, 1);
  }

  /** Elements [start, start+length) along `dim`. */
  slice(dim: number, start: number, length: number): Tensor {
    this.assertLive();
    const d = normDim(dim, this.ndim);
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > this.shape[d]!) {
      fail("FSG_ERR_INVALID_ARGUMENT", `slice: [${start}, ${start + length}) is outside dim ${d} of size ${this.shape[d]}`);
    }
    const shape = [...this.shape];
    shape[d] = length;
    return this.asStrided(shape, this.strides, this.offset + start * this.strides[d]!);
  }

  /** `n` equal slices along `dim` (e.g. chunk(2, -1) splits packed [K, 2N] into two [K, N]). */
  chunk(n: number, dim = -1): Tensor[] {
    this.assertLive();
    const d = normDim(dim, this.ndim);
    const size = this.shape[d]!;
    if (!Number.isInteger(n) || n < 1 || size % n !== 0) fail("FSG_ERR_SHAPE", `chunk: dim ${d} of size ${size} does not split into ${n}`);
    return Array.from({ length: n }, (_, i) => this.slice(d, (i * size) / n, size / n));
  }

  /** Same elements, another shape; only for contiguous tensors (one -1 is inferred). */
  reshape(shape: readonly number[]): Tensor {
    this.assertLive();
    const known = shape.filter((d) => d !== -1);
    const inferred = shape.length - known.length === 1 ? this.numel / Math.max(1, numelOf(known)) : undefined;
    const full = shape.map((d) => (d === -1 ? inferred ?? -1 : d));
    checkShape(full);
    if (numelOf(full) !== this.numel) fail("FSG_ERR_SHAPE", `reshape: [${this.shape.join(", ")}] has ${this.numel} elements, [${shape.join(", ")}] does not`);
    if (!this.isContiguous()) fail("FSG_ERR_LAYOUT", `reshape: the tensor is not contiguous (strides [${this.strides.join(", ")}]); copy it with contiguous() first`);
    return this.asStrided(full, contiguousStrides(full), this.offset);
  }

  // ---- data movement ----

  #rawArray(n: number): RawArray {
    return rawArray(this.dtype, n);
  }

  #readSpan(startElement: number, count: number): RawArray {
    const host = this.#rawArray(count);
    if (count === 0) return host;
    const dev = this.device;
    dev.assertOpen();
    const src = this.storage.ptr + BigInt(startElement * this.itemSize);
    check(lib.fsg_memcpy_d2h_async(dev.handle, hostPtr(host), src, BigInt(host.byteLength)), "fsg_memcpy_d2h_async");
    dev.synchronize();
    return host;
  }

  #writeSpan(startElement: number, host: RawArray): void {
    if (host.length === 0) return;
    const dev = this.device;
    dev.assertOpen();
    const dst = this.storage.ptr + BigInt(startElement * this.itemSize);
    check(lib.fsg_memcpy_h2d_async(dev.handle, dst, hostPtr(host), BigInt(host.byteLength)), "fsg_memcpy_h2d_async");
    dev.retainUntilSync(host);
  }

  #writeContiguous(raw: RawArray): void {
    this.#writeSpan(this.offset, raw);
  }

  /** Calls fn(storageIndex, logicalIndex) for every element, row-major. */
  #forEachIndex(fn: (storageIndex: number, logical: number) => void): void {
    const n = this.numel;
    if (n === 0) return;
    const nd = this.ndim;
    const idx = new Array<number>(nd).fill(0);
    let pos = this.offset;
    for (let i = 0; i < n; i++) {
      fn(pos, i);
      for (let d = nd - 1; d >= 0; d--) {
        idx[d]!++;
        pos += this.strides[d]!;
        if (idx[d]! < this.shape[d]!) break;
        pos -= this.strides[d]! * this.shape[d]!;
        idx[d] = 0;
      }
    }
  }

  /** Raw elements in row-major order (Float32Array or Uint16Array bit patterns). Synchronizes. */
  toRaw(): RawArray {
    this.assertLive();
    if (this.isContiguous()) return this.#readSpan(this.offset, this.numel);
    const span = this.span();
    const out = this.#rawArray(this.numel);
    if (span === null) return out;
    const covering = this.#readSpan(span.min, span.max - span.min + 1);
    this.#forEachIndex((s, i) => (out[i] = covering[s - span.min]!));
    return out;
  }

  /** Values as float32, row-major, whatever the strides. Synchronizes the device. */
  toFloat32(): Float32Array {
    return decode(this.dtype, this.toRaw());
  }

  /** Values as a nested-free plain array (float32), handy for small tensors. */
  toArray(): number[] {
    return Array.from(this.toFloat32());
  }

  /** Overwrites the viewed elements with raw values (row-major). Strided views read-modify-write their span. */
  writeRaw(raw: RawArray): this {
    this.assertLive();
    if (raw.length !== this.numel) fail("FSG_ERR_SHAPE", `raw: expected ${this.numel} elements, got ${raw.length}`);
    expectRawOf(this.dtype, raw);
    if (this.isContiguous()) {
      this.#writeContiguous(raw);
      return this;
    }
    const span = this.span();
    if (span === null) return this;
    const covering = this.#readSpan(span.min, span.max - span.min + 1);
    this.#forEachIndex((s, i) => (covering[s - span.min] = raw[i]!));
    this.#writeSpan(span.min, covering);
    return this;
  }

  /** Overwrites the viewed elements with float32 values rounded to the dtype. */
  writeFloat32(data: Float32Array | readonly number[]): this {
    return this.writeRaw(encode(this.dtype, data));
  }

  /** Sets every element to `value` (NaN allowed: handy to poison outputs). Returns this. */
  fill(value: number): this {
    this.assertLive();
    this.device.assertOpen();
    if (Object.is(value, 0) && this.isContiguous() && this.numel > 0) {
      const dev = this.device;
      const dst = this.storage.ptr + BigInt(this.byteOffset);
      check(lib.fsg_memset_async(dev.handle, dst, 0, BigInt(this.numel * this.itemSize)), "fsg_memset_async");
      return this;
    }
    const raw = encode(this.dtype, [value]);
    const all = this.#rawArray(this.numel);
    all.fill(raw[0]!);
    return this.writeRaw(all);
  }

  /** A contiguous copy on the same device (through the host). */
  contiguous(): Tensor {
    return Tensor.fromRaw(this.toRaw(), this.shape, this.dtype, { device: this.device });
  }

  /** A contiguous copy on `device` (through the host). */
  to(device: Device): Tensor {
    return Tensor.fromRaw(this.toRaw(), this.shape, this.dtype, { device });
  }

  // ---- lifetime ----

  /** Drops this view's reference to the storage. A second call is a no-op. */
  dispose(): void {
    if (this.#disposed) return;
    // First: a free the library refuses (during a graph capture) throws and leaves this tensor
    // live, to dispose again later.
    this.storage.release();
    this.#disposed = true;
    this.#descriptor = null;
    collected.unregister(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(", ")}], strides [${this.strides.join(", ")}], offset ${this.offset}, ${this.device.backend})`;
  }
}

/** Descriptor address of an optional tensor argument (0n = NULL). */
/** Throws unless `raw` is the host array type of `dtype`'s elements (Float32Array, Uint16Array, Uint8Array). */
export function expectRawOf(dtype: DType, raw: RawArray): void {
  const want = rawArray(dtype, 0);
  if (raw.constructor !== want.constructor) {
    fail("FSG_ERR_DTYPE", `raw: a ${dtype} tensor takes a ${want.constructor.name}, got ${raw.constructor.name}`);
  }
}

export function descOf(t: Tensor | null | undefined, name: string): Descriptor | null {
  return t ? t.descriptor(name) : null;
}

/** Allocates a tensor with the same shape, dtype and stride pattern as `t` (a dense permutation or span). */
export function emptyLikeLayout(t: Tensor, device: Device = t.device): Tensor {
  const span = t.span();
  if (span === null) return Tensor.empty(t.shape, t.dtype, { device });
  const base = Tensor.empty([span.max - span.min + 1], t.dtype, { device });
  try {
    return base.asStrided(t.shape, t.strides, t.offset - span.min);
  } finally {
    base.dispose();
  }
}
