// dtype.ts: the three dtypes, their DLPack codes, and host-side conversions from/to float32
// (round-to-nearest-even; NaN stays NaN, overflow goes to ±inf, fp16 subnormals are exact).

export type DType = "float32" | "float16" | "bfloat16";

export interface DTypeInfo {
  code: number;
  bits: number;
  bytes: number;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { code: 2, bits: 32, bytes: 4 },
  float16: { code: 2, bits: 16, bytes: 2 },
  bfloat16: { code: 4, bits: 16, bytes: 2 },
};

export function isDType(d: unknown): d is DType {
  return d === "float32" || d === "float16" || d === "bfloat16";
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even. */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    return ((x >>> 16) & 0x8000) | 0x7fc0 | ((x >>> 16) & 0x3f); // quiet NaN, keeps the sign
  }
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> float32 (exact). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** float32 -> float16 bits, round to nearest even (also for results that become subnormal). */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) {
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // may carry into inf: correct
    return sign | h;
  }
  // Subnormal (or zero) half: value / 2^-24 = m * 2^(e - 14), m with the implicit bit.
  const shift = 14 - e;
  if (shift > 24) return sign;
  const m = mant | 0x800000;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h++;
  return sign | h;
}

/** float16 bits -> float32 (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Rounds every value to `dtype` and back: what the device will hold. */
export function roundTo(dtype: DType, data: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(data);
  if (dtype === "float32") return out;
  const enc = dtype === "float16" ? f32ToF16Bits : f32ToBf16Bits;
  const dec = dtype === "float16" ? f16BitsToF32 : bf16BitsToF32;
  for (let i = 0; i < out.length; i++) out[i] = dec(enc(out[i]!));
  return out;
}

/** Encodes float32 values into the raw element array of `dtype`. */
export function encode(dtype: DType, data: ArrayLike<number>): Float32Array | Uint16Array {
  if (dtype === "float32") return Float32Array.from(data);
  const enc = dtype === "float16" ? f32ToF16Bits : f32ToBf16Bits;
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = enc(data[i]!);
  return out;
}

/** Decodes a raw element array of `dtype` into float32. */
export function decode(dtype: DType, raw: Float32Array | Uint16Array): Float32Array {
  if (dtype === "float32") return raw instanceof Float32Array ? raw : new Float32Array(raw.buffer, raw.byteOffset, raw.length / 2);
  const dec = dtype === "float16" ? f16BitsToF32 : bf16BitsToF32;
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = dec(raw[i]!);
  return out;
}
