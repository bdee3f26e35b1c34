// zero_fill.cpp: zeroes a strided view with 2-D memsets, used only for gradients that are sums of
// no terms (an empty batch, or no hidden features), where no kernel runs but they must read as zero.
#include <cstring>

#include "dispatch.h"
#include "guard.h"

namespace fsg {

fsg_status zero_fill(const fsg_context* ctx, const Mat& m) {
  if (!m.present() || m.rows == 0 || m.cols == 0) return FSG_OK;
  const size_t esize = dtype_bytes(m.dtype);
  // Walk the view as `lines` runs of `run` contiguous elements.
  int64_t lines = m.rows, run = m.cols, pitch = m.rs, step = m.cs;
  if (m.cols == 1 || (m.rows > 1 && m.rs == 1)) std::swap(lines, run), std::swap(pitch, step);
  char* base = static_cast<char*>(m.data);
  if (step != 1) {  // interleaved columns: one element per memset row
    for (int64_t line = 0; line < lines; ++line) {
      char* p = base + line * pitch * esize;
      if (!on_cuda(ctx)) {
        for (int64_t i = 0; i < run; ++i) std::memset(p + i * step * esize, 0, esize);
        continue;
      }
      FSG_TRY(cuda_status(cudaMemset2DAsync(p, step * esize, 0, esize, run, ctx->stream), "zero_fill"));
    }
    return FSG_OK;
  }
  if (!on_cuda(ctx)) {
    for (int64_t line = 0; line < lines; ++line) std::memset(base + line * pitch * esize, 0, run * esize);
    return FSG_OK;
  }
  if (lines == 1) pitch = run;
  return cuda_status(cudaMemset2DAsync(base, pitch * esize, 0, run * esize, lines, ctx->stream), "zero_fill");
}

}  // namespace fsg
