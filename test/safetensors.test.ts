// safetensors.test.ts: the loader against files the tests build themselves: round trips of
// every dtype, a Llama-style layer loaded by names as transposed views (no copies), and every
// malformed input (truncated file, bad header length, invalid JSON, unknown dtype, offsets beyond
// the file, overlapping entries, wrong shape or dtype for the layer): a SafetensorsError with a
// clear message, never a crash or an out-of-bounds read. A fuzz corrupts header bytes at random.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Device } from "../src/device.ts";
import { encode, roundTo } from "../src/dtype.ts";
import { FusedSwiGLUError } from "../src/errors.ts";
import {
  encodeSafetensors, loadSwiGLUMLP, loadTensor, openSafetensors, parseSafetensors, SafetensorsError, writeSafetensors,
  type TensorToWrite,
} from "../src/safetensors.ts";
import { mulberry32, Tensor, type FloatDType } from "../src/tensor.ts";
import { f64, nextSeed, randomValues } from "./helpers.ts";
import { gemmRef, swigluForwardRef, transposeRef } from "./reference.ts";

const dir = mkdtempSync(join(tmpdir(), "fsg-safetensors-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const device = Device.open({ backend: "cpu" });
let fileCounter = 0;
const path = (): string => join(dir, `f${fileCounter++}.safetensors`);

/** Writes raw bytes as a file and returns its path. */
function rawFile(bytes: Uint8Array): string {
  const p = path();
  writeFileSync(p, bytes);
  return p;
}

/** An image with a hand-written header (no validation on the way out). */
function withHeader(header: unknown, dataBytes: number, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  return out;
}

/** Runs `fn` and returns the SafetensorsError it throws (fails the test otherwise). */
function errorOf(fn: () => unknown): SafetensorsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    expect(e).toBeInstanceOf(FusedSwiGLUError);
    return e as SafetensorsError;
  }
  throw new Error("expected a SafetensorsError, nothing was thrown");
}

const tensorOf = (dtype: FloatDType, shape: number[], values: Float32Array): TensorToWrite => ({ dtype, shape, data: encode(dtype, values) });

/** A Llama-style layer file: model.layers.{i}.mlp.*_proj.weight in [out, in] storage. */
function llamaLayer(K: number, N: number, dtype: FloatDType, layers = [0]): { path: string; values: Record<string, Float32Array> } {
  const tensors: Record<string, TensorToWrite> = {};
  const values: Record<string, Float32Array> = {};
  for (const i of layers) {
    for (const [name, shape, scale] of [["gate_proj", [N, K], 1 / Math.sqrt(K)], ["up_proj", [N, K], 1 / Math.sqrt(K)], ["down_proj", [K, N], 1 / Math.sqrt(N)]] as const) {
      const key = `model.layers.${i}.mlp.${name}.weight`;
      values[key] = Float32Array.from(randomValues(shape[0] * shape[1], 2 * scale));
      tensors[key] = tensorOf(dtype, [...shape], values[key]);
    }
  }
  tensors["model.norm.weight"] = tensorOf(dtype, [K], randomValues(K));
  const p = path();
  writeSafetensors(p, tensors, { format: "pt" });
  return { path: p, values };
}

describe("safetensors: reading", () => {
  test("round trip of every dtype, metadata, aligned and unaligned data", () => {
    for (const dtype of ["float32", "float16", "bfloat16"] as FloatDType[]) {
      const v = randomValues(6 * 7);
      const bytes = encodeSafetensors({ a: tensorOf(dtype, [6, 7], v), b: tensorOf(dtype, [3], randomValues(3)) }, { k: "v" });
      const f = parseSafetensors(bytes);
      expect(f.dataStart % 8).toBe(0); // the writer pads the header
      expect(f.metadata).toEqual({ k: "v" });
      expect([...f.entries.keys()]).toEqual(["a", "b"]);
      using t = loadTensor(f, "a", { device, dtype, shape: [6, 7] });
      expect(t.toRaw()).toEqual(encode(dtype, v));
      using b = loadTensor(openSafetensors(rawFile(bytes)), "b", { device });
      expect(b.shape).toEqual([3]);
    }
    // An odd header length puts float32 data at an unaligned offset: it is copied, not misread.
    const v = randomValues(5);
    const header = JSON.stringify({ x: { dtype: "F32", shape: [5], data_offsets: [0, 20] } }) + " ";
    const img = withHeader(header, 20);
    img.set(new Uint8Array(v.buffer), img.length - 20);
    using t = loadTensor(parseSafetensors(img), "x", { device });
    expect(t.toFloat32()).toEqual(v);
  });

  test("empty tensors, zero-size spans and tensors of other dtypes are fine until loaded as weights", () => {
    const f = parseSafetensors(withHeader({
      e: { dtype: "F32", shape: [0, 4], data_offsets: [0, 0] },
      i: { dtype: "I32", shape: [2], data_offsets: [0, 8] },
    }, 8));
    expect(f.entries.get("e")!.shape).toEqual([0, 4]);
    expect(errorOf(() => loadTensor(f, "i", { device })).message).toMatch(/'i' is I32; the kernels take F32, F16 or BF16/);
  });

  const cases: [string, () => Uint8Array, RegExp][] = [
    ["an empty file", () => new Uint8Array(0), /truncated: 0 bytes/],
    ["a file shorter than the length field", () => new Uint8Array(5), /truncated: 5 bytes/],
    ["a header length of 0", () => withHeader("", 0, 0), /bad header length 0/],
    ["a header length of 2^53", () => withHeader("{}", 0, 2 ** 53), /bad header length 9007199254740992/],
    ["a header length beyond the file", () => withHeader("{}", 0, 1000), /truncated: the header claims 1000 bytes but only 2 follow/],
    ["invalid JSON", () => withHeader('{"a": {"dtype": "F32",', 0), /not valid JSON/],
    ["invalid UTF-8", () => {
      const b = withHeader('{"a":1}', 0);
      b[10] = 0xff;
      return b;
    }, /not valid UTF-8/],
    ["a JSON array", () => withHeader([1, 2], 0), /must be a JSON object/],
    ["an entry that is not an object", () => withHeader({ a: 5 }, 0), /entry 'a': expected an object/],
    ["an unknown dtype", () => withHeader({ a: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, 16), /entry 'a': unknown dtype "F128"/],
    ["a negative dim", () => withHeader({ a: { dtype: "F32", shape: [-1, 4], data_offsets: [0, 16] } }, 16), /shape: expected non-negative integers/],
    ["a fractional dim", () => withHeader({ a: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, 4), /shape: expected non-negative integers/],
    ["missing data_offsets", () => withHeader({ a: { dtype: "F32", shape: [1] } }, 4), /data_offsets: expected \[begin, end\]/],
    ["end before begin", () => withHeader({ a: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, 8), /end 4 is before begin 8/],
    ["a span that does not match the shape", () => withHeader({ a: { dtype: "BF16", shape: [3, 3], data_offsets: [0, 16] } }, 16), /= 18 bytes, but data_offsets span 16 bytes/],
    ["a huge shape", () => withHeader({ a: { dtype: "F64", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8), /too large/],
    ["offsets beyond the file", () => withHeader({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 12), /reach beyond the data section of 12 bytes/],
    ["a truncated data section", () => llamaImage().subarray(0, llamaImage().length - 1), /reach beyond the data section/],
    ["overlapping entries", () => withHeader({
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [2], data_offsets: [12, 20] },
    }, 20), /entries 'a' \[0, 16\) and 'b' \[12, 20\) overlap/],
    ["bad __metadata__", () => withHeader({ __metadata__: { a: 1 } }, 0), /__metadata__ must be an object of strings/],
  ];
  for (const [name, build, message] of cases) {
    test(`rejects ${name}`, () => {
      const bytes = build();
      expect(errorOf(() => parseSafetensors(bytes)).message).toMatch(message);
      const p = rawFile(bytes);
      const e = errorOf(() => openSafetensors(p));
      expect(e.message).toMatch(message);
      expect(e.message).toContain(p);
    });
  }

  test("a missing file is an error that names it", () => {
    expect(errorOf(() => openSafetensors(join(dir, "nope.safetensors"))).message).toMatch(/nope\.safetensors: cannot open/);
  });

  test("fuzz: corrupted headers throw SafetensorsError or parse, never anything else", () => {
    const good = llamaImage();
    const headerEnd = 8 + Number(new DataView(good.buffer).getBigUint64(0, true));
    const rand = mulberry32(nextSeed());
    for (let trial = 0; trial < 400; trial++) {
      const b = good.slice();
      const flips = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < flips; i++) b[Math.floor(rand() * headerEnd)] = Math.floor(rand() * 256);
      const cut = rand() < 0.2 ? Math.floor(rand() * b.length) : b.length;
      try {
        const f = parseSafetensors(b.subarray(0, cut));
        for (const e of f.entries.values()) expect(f.dataStart + e.end).toBeLessThanOrEqual(cut);
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsError);
      }
    }
  });
});

let llamaCache: Uint8Array | null = null;
/** A small valid Llama layer image for the truncation and fuzz cases. */
function llamaImage(): Uint8Array {
  if (llamaCache) return llamaCache;
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of ["gate_proj", "up_proj"]) tensors[`mlp.${name}.weight`] = tensorOf("bfloat16", [12, 8], randomValues(96));
  tensors["mlp.down_proj.weight"] = tensorOf("bfloat16", [8, 12], randomValues(96));
  llamaCache = encodeSafetensors(tensors);
  return llamaCache;
}

describe("safetensors: loading a Llama-style MLP", () => {
  for (const dtype of ["float32", "bfloat16"] as FloatDType[]) {
    test(`${dtype}: layer by index, [out,in] weights as transposed views, matches the reference`, () => {
      const [K, N, M] = [48, 80, 9];
      const { path: p, values } = llamaLayer(K, N, dtype, [0, 1]);
      using mlp = loadSwiGLUMLP(p, { layer: 1, device, K, N, dtype });
      expect(mlp.gate.shape).toEqual([K, N]);
      expect(mlp.gate.strides).toEqual([1, K]); // the stored [N, K] seen transposed: no copy
      expect(mlp.down.shape).toEqual([N, K]);
      expect(mlp.down.strides).toEqual([1, N]);
      using x = Tensor.fromFloat32(randomValues(M * K), [M, K], dtype, { device });
      using y = mlp.forward(x);
      const held = (key: string): Float64Array => Float64Array.from(roundTo(dtype, values[key]!));
      const wg = transposeRef(held("model.layers.1.mlp.gate_proj.weight"), N, K);
      const wu = transposeRef(held("model.layers.1.mlp.up_proj.weight"), N, K);
      const wd = transposeRef(held("model.layers.1.mlp.down_proj.weight"), K, N);
      const { z } = swigluForwardRef({ x: f64(x), wGate: wg, wUp: wu, M, K, N });
      const zr = Float64Array.from(roundTo(dtype, z));
      expect(y.toFloat32()).toBeAllClose(gemmRef(zr, wd, M, N, K), { rtol: dtype === "float32" ? 1e-5 : 3e-2 });
    });
  }

  test("a prefix the caller gives", () => {
    const p = path();
    writeFileSync(p, llamaImage());
    using mlp = loadSwiGLUMLP(p, { device, prefix: "" });
    expect([mlp.K, mlp.N, mlp.dtype]).toEqual([8, 12, "bfloat16"]);
  });

  test("names that are not there: the message lists the candidates", () => {
    const { path: p } = llamaLayer(16, 24, "float32", [3]);
    const e = errorOf(() => loadSwiGLUMLP(p, { device }));
    expect(e.message).toMatch(/no tensor named 'mlp\.gate_proj\.weight'; entries ending in 'mlp\.gate_proj\.weight': model\.layers\.3\.mlp\.gate_proj\.weight/);
    expect(errorOf(() => loadSwiGLUMLP(p, { device, layer: 4 })).message).toMatch(/model\.layers\.4\.mlp\.gate_proj\.weight/);
  });

  test("wrong shapes or dtypes for the layer", () => {
    const { path: p } = llamaLayer(16, 24, "bfloat16");
    const e1 = errorOf(() => loadSwiGLUMLP(p, { device, layer: 0, K: 32 }));
    expect(e1.message).toMatch(/expected K \(in features\) = 32, the file stores \[24, 16\]/);
    expect(e1.code).toBe("FSG_ERR_SHAPE");
    expect(errorOf(() => loadSwiGLUMLP(p, { device, layer: 0, N: 25 })).message).toMatch(/expected N \(hidden features\) = 25/);
    const e2 = errorOf(() => loadSwiGLUMLP(p, { device, layer: 0, dtype: "float16" }));
    expect(e2.message).toMatch(/expected F16, the file stores BF16/);
    expect(e2.code).toBe("FSG_ERR_DTYPE");
    // down_proj stored [N, K] instead of [K, N]; up_proj of another dtype; a rank-3 gate
    const bad = (over: Record<string, TensorToWrite>): string => {
      const t: Record<string, TensorToWrite> = {
        "mlp.gate_proj.weight": tensorOf("float32", [24, 16], randomValues(384)),
        "mlp.up_proj.weight": tensorOf("float32", [24, 16], randomValues(384)),
        "mlp.down_proj.weight": tensorOf("float32", [16, 24], randomValues(384)),
        ...over,
      };
      const q = path();
      writeSafetensors(q, t);
      return q;
    };
    expect(errorOf(() => loadSwiGLUMLP(bad({ "mlp.down_proj.weight": tensorOf("float32", [24, 16], randomValues(384)) }), { device })).message)
      .toMatch(/'mlp\.down_proj\.weight': expected shape \[16, 24\], the file stores \[24, 16\]/);
    expect(errorOf(() => loadSwiGLUMLP(bad({ "mlp.up_proj.weight": tensorOf("bfloat16", [24, 16], randomValues(384)) }), { device })).message)
      .toMatch(/'mlp\.up_proj\.weight' is BF16 but 'mlp\.gate_proj\.weight' is F32/);
    expect(errorOf(() => loadSwiGLUMLP(bad({ "mlp.gate_proj.weight": tensorOf("float32", [2, 12, 16], randomValues(384)) }), { device })).message)
      .toMatch(/expected \[N, K\] \(\[out, in\]\), got \[2, 12, 16\]/);
  });

  test("writeSafetensors refuses data that does not fit its shape", () => {
    expect(() => encodeSafetensors({ a: { dtype: "F32", shape: [3], data: new Float32Array(2) } })).toThrow(/8 bytes do not hold F32 \[3\]/);
  });
});
