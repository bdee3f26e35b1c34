// dtype.ts: the dtypes, their DLPack codes, and host-side conversions from/to float32
// (round-to-nearest-even; NaN stays NaN, overflow goes to ±inf, fp16 subnormals are exact).
// The two fp8 dtypes hold saved pre-activations and their block scales only (see fp8.ts): e4m3fn
// saturates at ±448 (no Inf; 0x7F is NaN), e8m0fnu is a power of two 2^(byte - 127) (0xFF NaN).

export type DType = "float32" | "float16" | "bfloat16" | "float8_e4m3fn" | "float8_e8m0fnu";
/** The dtypes of computation (inputs, weights, outputs); the fp8 dtypes only hold saved tensors. */
export type FloatDType = "float32" | "float16" | "bfloat16";

export interface DTypeInfo {
  code: number;
  bits: number;
  bytes: number;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { code: 2, bits: 32, bytes: 4 },
  float16: { code: 2, bits: 16, bytes: 2 },
  bfloat16: { code: 4, bits: 16, bytes: 2 },
  float8_e4m3fn: { code: 10, bits: 8, bytes: 1 },
  float8_e8m0fnu: { code: 14, bits: 8, bytes: 1 },
};

export function isDType(d: unknown): d is DType {
  return typeof d === "string" && Object.hasOwn(DTYPES, d);
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

/** float32 -> float8_e4m3fn bits, round to nearest even, saturating at ±448; NaN -> 0x7F. */
export function f32ToE4m3Bits(v: number): number {
  f32[0] = v;
  const bits = u32[0]!;
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return 0x7f;
  if (a >= 0x43e00000) return sign | 0x7e; // >= 448, Inf too
  if (a < 0x3c800000) {
    // Below 2^-6: a multiple of 2^-9 (m = 8 is 2^-6, code 0x08).
    const e = (a >>> 23) - 127;
    if (e < -11) return sign;
    const mant = (a & 0x7fffff) | 0x800000;
    const shift = 14 - e;
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  const r = (a + 0x7ffff + ((a >>> 20) & 1)) >>> 20; // 3 mantissa bits, carry into the exponent
  const code = r - (120 << 3);
  return sign | (code > 0x7e ? 0x7e : code);
}

/** float8_e4m3fn bits -> float32 (exact). */
export function e4m3BitsToF32(c: number): number {
  const sign = c & 0x80 ? -1 : 1;
  const e = (c >>> 3) & 15;
  const m = c & 7;
  if (e === 15 && m === 7) return NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/** A positive power of two -> float8_e8m0fnu bits (the nearest exponent); NaN, Inf or <= 0 -> 0xFF. */
export function f32ToE8m0Bits(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 0xff;
  return Math.min(254, Math.max(0, Math.round(Math.log2(v)) + 127));
}

/** float8_e8m0fnu bits -> 2^(bits - 127); 0xFF is NaN. */
export function e8m0BitsToF32(b: number): number {
  return b === 0xff ? NaN : 2 ** (b - 127);
}

type Codec = { enc: (v: number) => number; dec: (b: number) => number };
const CODECS: Record<Exclude<DType, "float32">, Codec> = {
  float16: { enc: f32ToF16Bits, dec: f16BitsToF32 },
  bfloat16: { enc: f32ToBf16Bits, dec: bf16BitsToF32 },
  float8_e4m3fn: { enc: f32ToE4m3Bits, dec: e4m3BitsToF32 },
  float8_e8m0fnu: { enc: f32ToE8m0Bits, dec: e8m0BitsToF32 },
};

/** The host array type of a dtype's raw elements. */
export type RawArray = Float32Array | Uint16Array | Uint8Array;

/** A raw element array of `n` elements of `dtype`. */
export function rawArray(dtype: DType, n: number): RawArray {
  const bytes = DTYPES[dtype].bytes;
  return dtype === "float32" ? new Float32Array(n) : bytes === 2 ? new Uint16Array(n) : new Uint8Array(n);
}

/** Rounds every value to `dtype` and back: what the device will hold. */
export function roundTo(dtype: DType, data: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(data);
  if (dtype === "float32") return out;
  const { enc, dec } = CODECS[dtype];
  for (let i = 0; i < out.length; i++) out[i] = dec(enc(out[i]!));
  return out;
}

/** Encodes float32 values into the raw element array of `dtype`. */
export function encode(dtype: DType, data: ArrayLike<number>): RawArray {
  if (dtype === "float32") return Float32Array.from(data);
  const { enc } = CODECS[dtype];
  const out = rawArray(dtype, data.length);
  for (let i = 0; i < data.length; i++) out[i] = enc(data[i]!);
  return out;
}

/** Decodes a raw element array of `dtype` into float32. */
export function decode(dtype: DType, raw: RawArray): Float32Array {
  if (dtype === "float32") return raw instanceof Float32Array ? raw : new Float32Array(raw.buffer, raw.byteOffset, raw.length / 2);
  const { dec } = CODECS[dtype];
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = dec(raw[i]!);
  return out;
}
