// convert.h: float <-> bf16 / fp16 conversion for the CPU backend, in plain integer arithmetic
// (no F16C, no compiler half types), and typed element load/store of Mat/Vec as float.
//
// float -> half type: round-to-nearest-even, NaN stays a (quiet) NaN, overflow goes to inf,
// fp16 subnormals are rounded correctly. half type -> float is exact.
#pragma once
#include <cstdint>
#include <cstring>

#include "backend.h"

namespace fsg {
namespace cpu {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- bf16 ----
inline float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // Truncating a NaN could clear every payload bit and give inf: force the quiet bit.
    return uint16_t((u >> 16) | 0x0040u);
  }
  // RNE: add 0x7fff plus the lowest kept bit; a carry into the exponent rounds up correctly,
  // and values above the largest finite bf16 carry into the inf pattern.
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// ---- fp16 ----
inline float fp16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    float v = float(mant) * 5.9604644775390625e-8f;
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t float_to_fp16(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t x = u & 0x7fffffffu;
  if (x >= 0x7f800000u) {  // inf or NaN (NaN keeps its top payload bits and is made quiet)
    return x == 0x7f800000u ? uint16_t(sign | 0x7c00u) : uint16_t(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  }
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (x >= 0x38800000u) {                                  // normal half (>= 2^-14)
    x += 0xfffu + ((x >> 13) & 1u);                        // RNE on the 13 dropped bits
    x -= 112u << 23;                                       // rebias exponent 127 -> 15
    return uint16_t(sign | (x >> 13));
  }
  if (x < 0x33000000u) return sign;  // below 2^-25 (exact 2^-25 ties to even: zero)
  // Subnormal half: result = round(value / 2^-24) = round(mant24 >> shift), shift in [14, 24].
  uint32_t exp = x >> 23;
  uint32_t mant = (x & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126u - exp;
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may become 0x400: the smallest normal
  return uint16_t(sign | q);
}

// ---- typed element access ----
template <DType T>
inline float load(const void* base, int64_t idx) {
  if constexpr (T == DType::F32) {
    return static_cast<const float*>(base)[idx];
  } else if constexpr (T == DType::BF16) {
    return bf16_to_float(static_cast<const uint16_t*>(base)[idx]);
  } else {
    return fp16_to_float(static_cast<const uint16_t*>(base)[idx]);
  }
}

template <DType T>
inline void store(void* base, int64_t idx, float v) {
  if constexpr (T == DType::F32) {
    static_cast<float*>(base)[idx] = v;
  } else if constexpr (T == DType::BF16) {
    static_cast<uint16_t*>(base)[idx] = float_to_bf16(v);
  } else {
    static_cast<uint16_t*>(base)[idx] = float_to_fp16(v);
  }
}

// Runtime-dtype versions, for paths where the per-element switch does not matter.
inline float load(DType t, const void* base, int64_t idx) {
  switch (t) {
    case DType::F32: return load<DType::F32>(base, idx);
    case DType::BF16: return load<DType::BF16>(base, idx);
    default: return load<DType::F16>(base, idx);
  }
}

inline void store(DType t, void* base, int64_t idx, float v) {
  switch (t) {
    case DType::F32: store<DType::F32>(base, idx, v); break;
    case DType::BF16: store<DType::BF16>(base, idx, v); break;
    default: store<DType::F16>(base, idx, v); break;
  }
}

// Element (r, c) of a Mat, element i of a Vec.
inline float load(const Mat& m, int64_t r, int64_t c) { return load(m.dtype, m.data, r * m.rs + c * m.cs); }
inline void store(const Mat& m, int64_t r, int64_t c, float v) { store(m.dtype, m.data, r * m.rs + c * m.cs, v); }
inline float load(const Vec& v, int64_t i) { return load(v.dtype, v.data, i * v.stride); }
inline void store(const Vec& v, int64_t i, float x) { store(v.dtype, v.data, i * v.stride, x); }

// Optional vector: 0 when absent (biases).
inline float load_or_zero(const Vec& v, int64_t i) { return v.present() ? load(v, i) : 0.0f; }

}  // namespace cpu
}  // namespace fsg
