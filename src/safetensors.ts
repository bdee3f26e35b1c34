// safetensors.ts: reading and writing the safetensors format, and loading a Llama-style MLP
// block from it.
//
//   [u64 little-endian n][n bytes of UTF-8 JSON header][data section]
//   header: { "<name>": { "dtype": "BF16", "shape": [N, K], "data_offsets": [begin, end] }, ...,
//             "__metadata__": { "<key>": "<string>" } }       offsets relative to the data section
//
// Files are memory-mapped with Bun.mmap (read into memory where mapping fails, e.g. empty files).
// Every entry is validated before any byte of it is read: a known dtype, non-negative integer
// dims, shape product × element size = the byte span, the span inside the data section, no two
// spans overlapping, a sane header length, no truncation. Anything malformed is a
// SafetensorsError (a FusedSwiGLUError) naming the file, the entry and what was wrong.
//
// Llama checkpoints store nn.Linear weights [out, in]: gate_proj/up_proj [N, K], down_proj
// [K, N]. loadSwiGLUMLP uploads each as stored and uses the transposed views ([K, N] and [N, K])
// directly: no host or device copy of a weight is made.
import { readFileSync, statSync, writeFileSync } from "node:fs";
import type { Device } from "./device.ts";
import { defaultDevice } from "./device.ts";
import { FusedSwiGLUError, type StatusCode } from "./errors.ts";
import { SwiGLUMLP } from "./mlp.ts";
import type { FloatDType } from "./dtype.ts";
import { Tensor, type DType } from "./tensor.ts";

/** Every failure to read, validate or load a safetensors file. */
export class SafetensorsError extends FusedSwiGLUError {
  /** The file (or "<buffer>") the error is about. */
  readonly source: string;

  constructor(source: string, message: string, code: StatusCode = "FSG_ERR_INVALID_ARGUMENT") {
    super(code, `safetensors ${source}: ${message}`);
    this.source = source;
  }
}

/** Bytes per element of every dtype the format defines. */
const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_BYTES;

/** The formats' dtypes the kernels take. */
const TO_DTYPE: Partial<Record<SafetensorsDType, DType>> = { F32: "float32", F16: "float16", BF16: "bfloat16" };
const FROM_DTYPE: Record<FloatDType, SafetensorsDType> = { float32: "F32", float16: "F16", bfloat16: "BF16" };

/** The largest header the reference implementation accepts (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte span within the data section: [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  /** Path, or "<buffer>". */
  source: string;
  /** The whole file (memory-mapped when read from disk). */
  bytes: Uint8Array;
  /** Offset of the data section in `bytes`. */
  dataStart: number;
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isDim = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function parseEntry(source: string, name: string, raw: unknown, dataBytes: number): SafetensorsEntry {
  const bad = (what: string): never => {
    throw new SafetensorsError(source, `entry '${name}': ${what}`);
  };
  if (!isObject(raw)) return bad(`expected an object with dtype, shape and data_offsets, got ${JSON.stringify(raw)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    return bad(`unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every(isDim)) return bad(`shape: expected non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim)) {
    return bad(`data_offsets: expected [begin, end] of non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) bad(`data_offsets: end ${end} is before begin ${begin}`);
  const itemBytes = DTYPE_BYTES[dtype as SafetensorsDType];
  let numel = 1;
  for (const d of shape as number[]) {
    numel *= d;
    if (!Number.isSafeInteger(numel * itemBytes)) bad(`shape ${JSON.stringify(shape)} is too large`);
  }
  if (numel * itemBytes !== end - begin) {
    bad(`shape ${JSON.stringify(shape)} × ${itemBytes} bytes (${dtype}) = ${numel * itemBytes} bytes, but data_offsets span ${end - begin} bytes`);
  }
  if (end > dataBytes) bad(`data_offsets [${begin}, ${end}) reach beyond the data section of ${dataBytes} bytes (truncated file?)`);
  return { name, dtype: dtype as SafetensorsDType, shape: [...(shape as number[])], begin, end };
}

/** Parses and validates a whole safetensors image. Reads nothing outside `bytes`. */
export function parseSafetensors(bytes: Uint8Array, source = "<buffer>"): SafetensorsFile {
  if (bytes.length < 8) {
    throw new SafetensorsError(source, `truncated: ${bytes.length} bytes, the file must start with an 8-byte header length`);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength < 2n || headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(source, `bad header length ${headerLength} (expected 2 to ${MAX_HEADER_BYTES} bytes of JSON)`);
  }
  const n = Number(headerLength);
  if (8 + n > bytes.length) {
    throw new SafetensorsError(source, `truncated: the header claims ${n} bytes but only ${bytes.length - 8} follow the length`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError(source, "the header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(source, `the header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) throw new SafetensorsError(source, "the header must be a JSON object of tensor entries");
  const dataStart = 8 + n;
  const dataBytes = bytes.length - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  const metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isObject(raw) || !Object.values(raw).every((v) => typeof v === "string")) {
        throw new SafetensorsError(source, "__metadata__ must be an object of strings");
      }
      Object.assign(metadata, raw);
      continue;
    }
    entries.set(name, parseEntry(source, name, raw, dataBytes));
  }
  const sorted = [...entries.values()].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) {
      throw new SafetensorsError(source, `entries '${prev.name}' [${prev.begin}, ${prev.end}) and '${cur.name}' [${cur.begin}, ${cur.end}) overlap`);
    }
  }
  return { source, bytes, dataStart, entries, metadata };
}

/** Memory-maps (or reads) a file and validates it. */
export function openSafetensors(path: string): SafetensorsFile {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new SafetensorsError(path, `cannot open (${(e as Error).message})`);
  }
  let bytes: Uint8Array;
  try {
    bytes = size > 0 ? Bun.mmap(path, { shared: false }) : new Uint8Array(0);
  } catch {
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (e) {
      throw new SafetensorsError(path, `cannot read (${(e as Error).message})`);
    }
  }
  return parseSafetensors(bytes, path);
}

/** The entry `name`, or a SafetensorsError listing similar names. */
export function entryOf(file: SafetensorsFile, name: string): SafetensorsEntry {
  const e = file.entries.get(name);
  if (e) return e;
  const tail = name.split(".").slice(-3).join(".");
  const similar = [...file.entries.keys()].filter((k) => k.endsWith(tail)).slice(0, 5);
  const hint = similar.length > 0 ? `; entries ending in '${tail}': ${similar.join(", ")} (set the prefix)` : `; the file has ${file.entries.size} entries`;
  throw new SafetensorsError(file.source, `no tensor named '${name}'${hint}`);
}

export interface LoadTensorOptions {
  device?: Device;
  /** Expected dtype (a mismatch throws FSG_ERR_DTYPE; nothing is converted). */
  dtype?: DType;
  /** Expected shape (a mismatch throws FSG_ERR_SHAPE). */
  shape?: readonly number[];
}

/** Uploads one entry as stored (row-major, its own shape) to the device. */
export function loadTensor(file: SafetensorsFile, name: string, options: LoadTensorOptions = {}): Tensor {
  const e = entryOf(file, name);
  const dtype = TO_DTYPE[e.dtype];
  if (!dtype) throw new SafetensorsError(file.source, `'${name}' is ${e.dtype}; the kernels take F32, F16 or BF16`, "FSG_ERR_DTYPE");
  if (options.dtype && options.dtype !== dtype) {
    throw new SafetensorsError(file.source, `'${name}': expected ${FROM_DTYPE[options.dtype as FloatDType]}, the file stores ${e.dtype}`, "FSG_ERR_DTYPE");
  }
  if (options.shape && (options.shape.length !== e.shape.length || options.shape.some((d, i) => d !== e.shape[i]))) {
    throw new SafetensorsError(file.source, `'${name}': expected shape [${options.shape.join(", ")}], the file stores [${e.shape.join(", ")}]`, "FSG_ERR_SHAPE");
  }
  const start = file.bytes.byteOffset + file.dataStart + e.begin;
  const item = DTYPE_BYTES[e.dtype];
  const count = (e.end - e.begin) / item;
  // Aligned spans are viewed in place (the mapping itself); unaligned ones are copied first.
  const buffer = start % item === 0 ? file.bytes.buffer : file.bytes.slice(file.dataStart + e.begin, file.dataStart + e.end).buffer;
  const at = start % item === 0 ? start : 0;
  const raw = dtype === "float32" ? new Float32Array(buffer, at, count) : new Uint16Array(buffer, at, count);
  return Tensor.fromRaw(raw, e.shape, dtype, { device: options.device });
}

export interface LoadMLPOptions {
  device?: Device;
  /** Names are `${prefix}mlp.gate_proj.weight` etc. (default "", or "model.layers.{layer}." when layer is given). */
  prefix?: string;
  /** Llama decoder layer index: prefix "model.layers.{layer}.". */
  layer?: number;
  /** Expected dtype of all three weights (default: whatever the file stores, the same for all three). */
  dtype?: DType;
  /** Expected input features (hidden_size). */
  K?: number;
  /** Expected hidden features (intermediate_size). */
  N?: number;
  residual?: boolean;
}

/** Loads gate_proj, up_proj and down_proj ([out, in] each) as a SwiGLUMLP using transposed views. */
export function loadSwiGLUMLP(fileOrPath: SafetensorsFile | string, options: LoadMLPOptions = {}): SwiGLUMLP {
  const file = typeof fileOrPath === "string" ? openSafetensors(fileOrPath) : fileOrPath;
  const prefix = options.prefix ?? (options.layer !== undefined ? `model.layers.${options.layer}.` : "");
  const names = { gate: `${prefix}mlp.gate_proj.weight`, up: `${prefix}mlp.up_proj.weight`, down: `${prefix}mlp.down_proj.weight` };
  const gateE = entryOf(file, names.gate);
  const upE = entryOf(file, names.up);
  const downE = entryOf(file, names.down);
  if (gateE.shape.length !== 2) {
    throw new SafetensorsError(file.source, `'${names.gate}': expected [N, K] ([out, in]), got [${gateE.shape.join(", ")}]`, "FSG_ERR_SHAPE");
  }
  const [N, K] = gateE.shape as [number, number];
  if (options.K !== undefined && options.K !== K) {
    throw new SafetensorsError(file.source, `'${names.gate}': expected K (in features) = ${options.K}, the file stores [${N}, ${K}]`, "FSG_ERR_SHAPE");
  }
  if (options.N !== undefined && options.N !== N) {
    throw new SafetensorsError(file.source, `'${names.gate}': expected N (hidden features) = ${options.N}, the file stores [${N}, ${K}]`, "FSG_ERR_SHAPE");
  }
  const dtype = options.dtype ?? TO_DTYPE[gateE.dtype];
  for (const e of [upE, downE]) {
    if (e.dtype !== gateE.dtype && !options.dtype) {
      throw new SafetensorsError(file.source, `'${e.name}' is ${e.dtype} but '${gateE.name}' is ${gateE.dtype}`, "FSG_ERR_DTYPE");
    }
  }
  const device = options.device ?? defaultDevice();
  const owned: Tensor[] = [];
  try {
    const load = (name: string, shape: number[]): Tensor => {
      const t = loadTensor(file, name, { device, dtype, shape });
      owned.push(t);
      return t;
    };
    const gateStored = load(names.gate, [N, K]);
    const upStored = load(names.up, [N, K]);
    const downStored = load(names.down, [K, N]);
    const views = [gateStored.t(), upStored.t(), downStored.t()] as const;
    owned.push(...views);
    device.synchronize(); // the uploads read the mapping: finish them before it may go away
    return new SwiGLUMLP({ gate: views[0], up: views[1], down: views[2], residual: options.residual ?? false, owned });
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

/** One tensor to write: raw little-endian bytes (or a typed array) of `dtype` and `shape`. */
export interface TensorToWrite {
  dtype: SafetensorsDType | DType;
  shape: readonly number[];
  data: ArrayBufferView;
}

/** The safetensors image of `tensors` (in the given order; header padded to 8 bytes). */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = (t.dtype in FROM_DTYPE ? FROM_DTYPE[t.dtype as FloatDType] : t.dtype) as SafetensorsDType;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = t.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[dtype] ?? 1);
    if (!(dtype in DTYPE_BYTES) || bytes.length !== expected) {
      throw new SafetensorsError("<writer>", `'${name}': ${bytes.length} bytes do not hold ${dtype} [${t.shape.join(", ")}] (${expected} bytes)`);
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20); // space padding
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes `tensors` as a safetensors file at `path`. */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}
