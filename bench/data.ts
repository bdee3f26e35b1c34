// data.ts: random inputs, fast enough for Llama-sized tensors (10^8 elements): a table of 4096
// normal draws (no zeros), encoded once in the target dtype, indexed by a xorshift stream. Every
// element is an independent draw from that discretized normal: never zeros, never constant.
import { check } from "../src/errors.ts";
import { lib } from "../src/ffi.ts";
import { f32ToBf16Bits, f32ToF16Bits, Tensor, type Device, type FloatDType } from "../src/index.ts";
import type { Raw } from "./reference.ts";

const TABLE = 4096;

/** `n` raw elements of `dtype`, ~ Normal(0, scale^2), deterministic in `seed`. */
export function randomRaw(dtype: FloatDType, n: number, scale: number, seed: number): Raw {
  let s = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const table = new Float32Array(TABLE);
  for (let i = 0; i < TABLE; i += 2) {
    const u1 = (next() + 1) / 4294967297;
    const u2 = next() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    table[i] = r * Math.cos(2 * Math.PI * u2) * scale;
    table[i + 1] = r * Math.sin(2 * Math.PI * u2) * scale;
  }
  for (let i = 0; i < TABLE; i++) if (Math.abs(table[i]!) < 1e-3 * scale) table[i] = (i % 2 ? -1e-3 : 1e-3) * scale;
  if (dtype === "float32") {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = table[next() & (TABLE - 1)]!;
    return out;
  }
  const enc = dtype === "bfloat16" ? f32ToBf16Bits : f32ToF16Bits;
  const bits = new Uint16Array(TABLE);
  for (let i = 0; i < TABLE; i++) bits[i] = enc(table[i]!);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = bits[next() & (TABLE - 1)]!;
  return out;
}

/** A device tensor holding `raw` (uploaded asynchronously; the device keeps `raw` alive). */
export function upload(raw: Raw, shape: number[], dtype: FloatDType, device: Device): Tensor {
  return Tensor.fromRaw(raw, shape, dtype, { device });
}

/**
 * A layer's inputs with separate [K, N] gate and up weights: x [M, K] in +-1, weights scaled by
 * 1/sqrt(K), drawn with seeds seed, seed + 1, seed + 2.
 */
export function separateLayer(
  M: number, K: number, N: number, dtype: FloatDType, device: Device, seed = 1,
): { x: Tensor; wg: Tensor; wu: Tensor } {
  return {
    x: upload(randomRaw(dtype, M * K, 1, seed), [M, K], dtype, device),
    wg: upload(randomRaw(dtype, K * N, 1 / Math.sqrt(K), seed + 1), [K, N], dtype, device),
    wu: upload(randomRaw(dtype, K * N, 1 / Math.sqrt(K), seed + 2), [K, N], dtype, device),
  };
}

/** Poisons a contiguous tensor with NaN (all bytes 0xFF: NaN in f32, f16 and bf16), async. */
export function poison(t: Tensor): void {
  if (!t.isContiguous()) return void t.fill(NaN);
  const ptr = t.storage.ptr + BigInt(t.byteOffset);
  check(lib.fsg_memset_async(t.device.handle, ptr, 0xff, BigInt(t.numel * t.itemSize)), "fsg_memset_async");
}

/** Device pointer of a tensor's element [0, ..., 0]. */
export function devicePtr(t: Tensor): bigint {
  return t.storage.ptr + BigInt(t.byteOffset);
}

/** Enqueues a device-to-device copy of `bytes` bytes. */
export function copyD2D(device: Device, dst: bigint, src: bigint, bytes: number): void {
  check(lib.fsg_memcpy_d2d_async(device.handle, dst, src, BigInt(bytes)), "fsg_memcpy_d2d_async");
}
