// activation.cpp: the CPU backend's elementwise GLU forward/backward and the deterministic
// column sum (bias gradients). See backend.h for the contracts.
//
// The SwiGLU scalar math comes from activation_math.h, shared with the CUDA kernels. Work is
// split into row blocks (GLU) or column x row blocks (column sum) whose shapes depend only on
// the problem size, and every reduction runs in a fixed order in double, so results do not
// depend on the thread count.
#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

#include "activation_math.h"
#include "backend.h"
#include "cpu/convert.h"
#include "cpu/fp8.h"
#include "cpu/parallel.h"

namespace fsg {
namespace {

using cpu::load;
using cpu::load_or_zero;
using cpu::store;

constexpr int64_t kElemsPerTask = 16384;  // enough work per task to amortize scheduling

int64_t rows_per_task(int64_t cols) { return std::max<int64_t>(1, kElemsPerTask / std::max<int64_t>(cols, 1)); }

// Runs body(r0, r1) over row blocks of [0, rows) in parallel.
template <class F>
bool for_row_blocks(int64_t rows, int64_t cols, int threads, const F& body) {
  const int64_t per = rows_per_task(cols);
  const int64_t tasks = (rows + per - 1) / per;
  return cpu::parallel_for(tasks, threads, [&](int64_t t, int) {
    body(t * per, std::min(rows, (t + 1) * per));
  });
}

template <DType T>
fsg_status glu_forward_typed(const GluForwardArgs& a, int threads) {
  const int64_t n = a.out.cols;
  const bool ok = for_row_blocks(a.out.rows, n, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float w = a.weights.present() ? load(a.weights, r) : 1.0f;
      for (int64_t c = 0; c < n; ++c) {
        const float g = load<T>(a.gate.data, r * a.gate.rs + c * a.gate.cs) + load_or_zero(a.bias_gate, c);
        const float u = load<T>(a.up.data, r * a.up.rs + c * a.up.cs) + load_or_zero(a.bias_up, c);
        store<T>(a.out.data, r * a.out.rs + c * a.out.cs, glu_value(a.act, g, u) * w);
      }
    }
  });
  if (!ok) {
    set_error("cpu_glu_forward: internal error in a CPU worker");
    return FSG_ERR_INTERNAL;
  }
  return FSG_OK;
}

template <DType T>
fsg_status glu_backward_typed(const GluBackwardArgs& a, int threads) {
  const int64_t n = a.dout.cols;
  // A saved pre-activation: in the call's dtype, or fp8 with block scales.
  auto saved = [](const Mat& m, int64_t r, int64_t c) {
    return m.fp8() ? cpu::load_fp8(m, r, c) : load<T>(m.data, r * m.rs + c * m.cs);
  };
  const bool want_dw = a.dweights.present() && a.weights.present();
  const bool ok = for_row_blocks(a.dout.rows, n, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float w = a.weights.present() ? load(a.weights, r) : 1.0f;
      double dw = 0.0;  // this row's sum, in column order
      for (int64_t c = 0; c < n; ++c) {
        const float g = saved(a.gate, r, c) + load_or_zero(a.bias_gate, c);
        const float u = saved(a.up, r, c) + load_or_zero(a.bias_up, c);
        const float dout = load<T>(a.dout.data, r * a.dout.rs + c * a.dout.cs);
        float dg, du;
        const float value = glu_grads(a.act, g, u, dout * w, &dg, &du);
        store<T>(a.dgate.data, r * a.dgate.rs + c * a.dgate.cs, dg);
        store<T>(a.dup.data, r * a.dup.rs + c * a.dup.cs, du);
        if (want_dw) dw += double(dout) * double(value);
      }
      if (want_dw) store(a.dweights, r, float(dw));
    }
  });
  if (!ok) {
    set_error("cpu_glu_backward: internal error in a CPU worker");
    return FSG_ERR_INTERNAL;
  }
  return FSG_OK;
}

// Columns are cut into blocks of kColBlock and rows into at most kMaxRowChunks chunks (sizes
// depend only on M and N); each task sums one block x chunk into its slot of `partial`, then the
// chunks are added in chunk order.
constexpr int64_t kColBlock = 256;
constexpr int64_t kMaxRowChunks = 64;
constexpr int64_t kMinRowChunk = 1024;

template <DType T>
fsg_status column_sum_typed(const ColumnSumArgs& a, int threads) {
  const Mat& s = a.src;
  const int64_t m = s.rows, n = s.cols;
  const int64_t chunk = std::max(kMinRowChunk, (m + kMaxRowChunks - 1) / kMaxRowChunks);
  const int64_t chunks = (m + chunk - 1) / chunk;
  const int64_t col_blocks = (n + kColBlock - 1) / kColBlock;
  std::vector<double> partial;
  try {
    partial.resize(size_t(chunks * n));
  } catch (...) {
    set_error("cpu_column_sum: out of memory allocating %llu bytes of CPU scratch",
              (unsigned long long)(chunks * n * sizeof(double)));
    return FSG_ERR_OUT_OF_MEMORY;
  }
  double* part = partial.data();
  bool ok = cpu::parallel_for(col_blocks * chunks, threads, [&](int64_t t, int) {
    const int64_t ch = t / col_blocks, cb = t % col_blocks;
    const int64_t c0 = cb * kColBlock, c1 = std::min(n, c0 + kColBlock);
    const int64_t r1 = std::min(m, (ch + 1) * chunk);
    double acc[kColBlock] = {};
    for (int64_t r = ch * chunk; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += double(load<T>(s.data, r * s.rs + c * s.cs));
    std::copy(acc, acc + (c1 - c0), part + ch * n + c0);
  });
  ok = ok && cpu::parallel_for(col_blocks, threads, [&](int64_t cb, int) {
    const int64_t c0 = cb * kColBlock, c1 = std::min(n, c0 + kColBlock);
    for (int64_t c = c0; c < c1; ++c) {
      double v = 0.0;
      for (int64_t ch = 0; ch < chunks; ++ch) v += part[ch * n + c];
      if (a.accumulate) v += double(load(a.dst, c));
      store(a.dst, c, float(v));
    }
  });
  if (!ok) {
    set_error("cpu_column_sum: internal error in a CPU worker");
    return FSG_ERR_INTERNAL;
  }
  return FSG_OK;
}

// Dispatches on the call's dtype and keeps every exception inside.
template <class Args, class F32, class F16, class BF16>
fsg_status dispatch(const char* who, DType t, const Args& args, int threads, F32 f32, F16 f16, BF16 bf16) {
  try {
    switch (t) {
      case DType::F32: return f32(args, threads);
      case DType::F16: return f16(args, threads);
      case DType::BF16: return bf16(args, threads);
      default: break;
    }
    set_error("%s: unknown dtype %d", who, int(t));
    return FSG_ERR_DTYPE;
  } catch (const std::bad_alloc&) {
    set_error("%s: out of memory", who);
    return FSG_ERR_OUT_OF_MEMORY;
  } catch (...) {
    set_error("%s: unexpected internal exception", who);
    return FSG_ERR_INTERNAL;
  }
}

}  // namespace

fsg_status cpu_glu_forward(const GluForwardArgs& a, int threads) {
  return dispatch("cpu_glu_forward", a.out.dtype, a, threads, glu_forward_typed<DType::F32>,
                  glu_forward_typed<DType::F16>, glu_forward_typed<DType::BF16>);
}

fsg_status cpu_glu_backward(const GluBackwardArgs& a, int threads) {
  return dispatch("cpu_glu_backward", a.dout.dtype, a, threads, glu_backward_typed<DType::F32>,
                  glu_backward_typed<DType::F16>, glu_backward_typed<DType::BF16>);
}

fsg_status cpu_column_sum(const ColumnSumArgs& a, int threads) {
  return dispatch("cpu_column_sum", a.src.dtype, a, threads, column_sum_typed<DType::F32>,
                  column_sum_typed<DType::F16>, column_sum_typed<DType::BF16>);
}

}  // namespace fsg
