// fp8.cpp: cpu_fp8_convert (fsg_quantize_fp8 / fsg_dequantize_fp8 on the CPU backend) and the
// row quantizer the CPU fused forward uses for fp8 saves.
#include "cpu/fp8.h"

#include <cmath>
#include <vector>

#include "cpu/convert.h"
#include "cpu/parallel.h"

namespace fsg {
namespace cpu {

void quantize_rows(const float* src, int64_t ld, int64_t r0, int64_t r1, int64_t n, const Mat& dst) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* v = src + (r - r0) * ld;
    uint8_t* q = static_cast<uint8_t*>(dst.data) + r * dst.rs;
    uint8_t* s = static_cast<uint8_t*>(dst.scale) + r * dst.scale_rs;
    for (int64_t c0 = 0; c0 < n; c0 += kFp8Block) {
      const int64_t c1 = std::min(n, c0 + kFp8Block);
      float amax = 0.0f;
      for (int64_t c = c0; c < c1; ++c) {
        const float a = std::fabs(v[c]);
        if (!(a <= amax)) amax = std::isnan(a) ? INFINITY : a;  // NaN -> Inf: the block's scale is NaN
      }
      const uint8_t sb = fp8_scale_byte(amax);
      const float inv = fp8_inv_scale(sb);
      for (int64_t c = c0; c < c1; ++c) q[c] = fp8_quantize(v[c], inv);
      s[c0 / kFp8Block] = sb;
    }
  }
}

}  // namespace cpu

fsg_status cpu_fp8_convert(const Fp8ConvertArgs& a, int threads) {
  const int64_t m = a.src.rows, n = a.src.cols;
  const bool quantize = a.dst.fp8();
  try {
    // One fp32 row per worker, allocated here: a bad_alloc inside a worker would read as an
    // internal error.
    std::vector<float> rows(quantize ? static_cast<size_t>(threads > 0 ? threads : 1) * static_cast<size_t>(n) : 0);
    const bool ok = cpu::parallel_for(m, threads, [&](int64_t r, int worker) {
      if (quantize) {
        float* row = rows.data() + static_cast<size_t>(worker) * static_cast<size_t>(n);
        for (int64_t c = 0; c < n; ++c) row[c] = cpu::load(a.src, r, c);
        cpu::quantize_rows(row, n, r, r + 1, n, a.dst);
      } else {
        for (int64_t c = 0; c < n; ++c) cpu::store(a.dst, r, c, cpu::load_fp8(a.src, r, c));
      }
    });
    if (!ok) {
      set_error("cpu_fp8_convert: internal error in a CPU worker");
      return FSG_ERR_INTERNAL;
    }
    return FSG_OK;
  } catch (...) {
    set_error("cpu_fp8_convert: out of memory");
    return FSG_ERR_OUT_OF_MEMORY;
  }
}

}  // namespace fsg
