// fp8_math.h: the fp8 block encoding of saved pre-activations, shared by the CUDA kernels and the
// CPU backend so both produce the same bytes (fused_swiglu.h, "fp8 storage", says what it means).
//   data:  float8_e4m3fn (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no Inf; 0x7F NaN;
//          largest 448, smallest subnormal 2^-9), round-to-nearest-even, saturating;
//   scale: one float8_e8m0fnu per 32 columns of a row: the byte s + 127 stands for 2^s
//          (s in [-127, 127]); 0xFF is NaN.
// Pure integer/float bit arithmetic: no rounding-mode or flush-to-zero dependence.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FSG_FP8_HD __host__ __device__ __forceinline__
#else
#define FSG_FP8_HD inline
#endif

namespace fsg {

FSG_FP8_HD uint32_t fp8_bits_of(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
#endif
}
FSG_FP8_HD float fp8_float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, 4);
  return v;
#endif
}

constexpr uint8_t kFp8ScaleNaN = 0xFF;

// The scale byte of a block whose largest magnitude is amax (>= 0, or NaN/Inf): the smallest s
// with amax <= 448 * 2^s. For amax = m * 2^e (m in [1, 2)): 448 * 2^(e-8) = 1.75 * 2^e covers
// m <= 1.75, else s = e - 7.
// Without branches (the GPU epilogues run it for every block they save): s + 127 is the biased
// exponent minus 8, plus 1 when the mantissa exceeds 0.75 (m > 1.75), which is exactly when adding
// 0x1fffff carries into the exponent; a subnormal amax clamps to 0 (s = -127). The 8 is taken off
// before an arithmetic shift, in the same add (for a finite amax the sum stays below 2^31).
FSG_FP8_HD int fp8_scale_int(float amax) {
  const uint32_t u = fp8_bits_of(amax) & 0x7fffffffu;
  const int biased = static_cast<int>(u + 0x1fffffu - (8u << 23)) >> 23;
  const int b = biased < 0 ? 0 : biased;
  return u >= 0x7f800000u ? kFp8ScaleNaN : u == 0 ? 127 : b;  // Inf or NaN; an all-zero block: scale 1
}
FSG_FP8_HD uint8_t fp8_scale_byte(float amax) { return static_cast<uint8_t>(fp8_scale_int(amax)); }

// 2^s as a float for a scale byte (2^-127 is subnormal; NaN for 0xFF).
FSG_FP8_HD float fp8_scale_value(uint8_t b) {
  if (b == kFp8ScaleNaN) return fp8_float_of(0x7fc00000u);
  return b == 0 ? fp8_float_of(0x00400000u) : fp8_float_of(static_cast<uint32_t>(b) << 23);
}

// 2^-s for a scale byte (s <= 120 for any finite amax, so this is always a normal float). It takes
// an int: the sm_90a quantizer keeps the byte in 32 bits (uint8 arithmetic costs masks there).
FSG_FP8_HD float fp8_inv_scale(int b) {
  return b == kFp8ScaleNaN ? fp8_float_of(0x7fc00000u) : fp8_float_of(static_cast<uint32_t>(254 - b) << 23);
}

// float -> e4m3fn, round to nearest even, saturating at +-448; NaN -> 0x7F.
FSG_FP8_HD uint8_t fp8_encode(float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  // The hardware conversion rounds, saturates and flushes exactly as the code below (checked by
  // test/fp8.test.ts against its host model); only its NaN keeps the input's sign.
  uint16_t hw;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(hw) : "f"(0.0f), "f"(v));
  return v != v ? 0x7F : static_cast<uint8_t>(hw & 0xFF);
#endif
  const uint32_t bits = fp8_bits_of(v);
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t a = bits & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7F;
  if (a >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7E);  // >= 448 (Inf too)
  if (a < 0x3c800000u) {  // below 2^-6: subnormal, a multiple of 2^-9 (m = 8 is 2^-6, code 0x08)
    // a * 2^9 < 8: round the exact value m + f to nearest even with integer arithmetic.
    const int e = static_cast<int>(a >> 23) - 127;  // <= -7
    if (e < -11) return static_cast<uint8_t>(sign);  // < 2^-11 = a quarter of the step: rounds to 0
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;  // value = mant * 2^(e - 23)
    const int shift = 23 - 9 - e;                       // value * 2^9 = mant >> shift (+ rest)
    uint32_t m = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1u))) ++m;
    return static_cast<uint8_t>(sign | m);
  }
  // Normal: keep 3 mantissa bits, round to nearest even (a carry moves into the exponent), rebias.
  const uint32_t r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
  const uint32_t code = r - ((127u - 7u) << 3);
  return static_cast<uint8_t>(sign | (code > 0x7Eu ? 0x7Eu : code));
}

// e4m3fn -> float (exact).
FSG_FP8_HD float fp8_decode(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t e = (c >> 3) & 0xFu, m = c & 7u;
  if (e == 0xF && m == 7) return fp8_float_of(0x7fc00000u);
  if (e == 0) {  // m * 2^-9, exact in float
    const float v = static_cast<float>(m) * 0.001953125f;
    return fp8_float_of(fp8_bits_of(v) | sign);
  }
  return fp8_float_of(sign | ((e + 120u) << 23) | (m << 20));
}

// The value stored for v in a block of scale byte b, and the value it stands for.
FSG_FP8_HD uint8_t fp8_quantize(float v, float inv_scale) { return fp8_encode(v * inv_scale); }
FSG_FP8_HD float fp8_dequantize(uint8_t c, uint8_t scale_byte) { return fp8_decode(c) * fp8_scale_value(scale_byte); }

}  // namespace fsg
