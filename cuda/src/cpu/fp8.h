// fp8.h: the CPU backend's fp8 block encoding of saved pre-activations (fp8_math.h holds the
// scalar rules shared with the CUDA kernels, so both backends write the same bytes).
#pragma once
#include <cstdint>

#include "backend.h"
#include "fp8_math.h"

namespace fsg {
namespace cpu {

// Element (r, c) of an F8E4M3 view (cs == 1) with its block scale, as a float.
inline float load_fp8(const Mat& m, int64_t r, int64_t c) {
  const uint8_t q = static_cast<const uint8_t*>(m.data)[r * m.rs + c];
  return fp8_dequantize(q, static_cast<const uint8_t*>(m.scale)[r * m.scale_rs + (m.scale_c0 + c) / kFp8Block]);
}

// Quantizes rows [r0, r1) of values v(r, c) = src[r * ld + c] (n columns) into dst (F8E4M3 with
// scales, scale_c0 == 0).
void quantize_rows(const float* src, int64_t ld, int64_t r0, int64_t r1, int64_t n, const Mat& dst);

}  // namespace cpu
}  // namespace fsg
