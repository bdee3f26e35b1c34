// tensor_view.cpp: descriptor checks (see tensor_view.h).
#include "tensor_view.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "guard.h"

namespace fsg {
namespace {

constexpr int64_t kMaxDim = INT32_MAX;  // the kernels index rows and columns with int32

std::string shape_string(const fsg_tensor* t) {
  std::string s = "[";
  for (int i = 0; i < t->ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(t->shape[i]);
  }
  return s + "]";
}

// fp8: the two fp8 dtypes are accepted only where a saved tensor or its scales are expected.
fsg_status parse_dtype(const Call& call, const fsg_tensor* t, const char* name, bool fp8, DType* out) {
  const fsg_dtype d = t->dtype;
  if (d.lanes == 1) {
    if (d.code == FSG_DTYPE_FLOAT && d.bits == 32) return *out = DType::F32, FSG_OK;
    if (d.code == FSG_DTYPE_FLOAT && d.bits == 16) return *out = DType::F16, FSG_OK;
    if (d.code == FSG_DTYPE_BFLOAT && d.bits == 16) return *out = DType::BF16, FSG_OK;
    if (fp8 && d.code == FSG_DTYPE_FLOAT8_E4M3FN && d.bits == 8) return *out = DType::F8E4M3, FSG_OK;
    if (fp8 && d.code == FSG_DTYPE_FLOAT8_E8M0FNU && d.bits == 8) return *out = DType::E8M0, FSG_OK;
  }
  const bool known_fp8 = d.lanes == 1 && d.bits == 8 &&
                         (d.code == FSG_DTYPE_FLOAT8_E4M3FN || d.code == FSG_DTYPE_FLOAT8_E8M0FNU);
  set_error("%s: %s: %s dtype {code %u, bits %u, lanes %u}; expected float32, float16 or bfloat16", call.fn, name,
            known_fp8 ? "fp8 is only accepted for saved pre-activations and their scales, got" : "unsupported",
            d.code, d.bits, d.lanes);
  return FSG_ERR_DTYPE;
}

// The device the tensor claims, and (on CUDA) the device its pointer really belongs to.
fsg_status check_device(const Call& call, const fsg_tensor* t, const char* name, const void* data) {
  const bool cuda = call.ctx->backend == FSG_BACKEND_CUDA;
  const int want_type = cuda ? FSG_DEVICE_CUDA : FSG_DEVICE_CPU;
  const int want_id = cuda ? call.ctx->device : 0;
  if (t->device.device_type != want_type || t->device.device_id != want_id) {
    set_error("%s: %s: tensor is on device {type %d, id %d} but the context is %s device %d", call.fn, name,
              t->device.device_type, t->device.device_id, cuda ? "CUDA" : "CPU", want_id);
    return FSG_ERR_DEVICE_MISMATCH;
  }
  return check_device_memory(call, name, data);
}

}  // namespace

fsg_status check_device_memory(const Call& call, const char* name, const void* data) {
  if (call.ctx->backend != FSG_BACKEND_CUDA) return FSG_OK;
  cudaPointerAttributes attr{};
  cudaError_t err = cudaPointerGetAttributes(&attr, data);
  if (err != cudaSuccess) cudaGetLastError();
  const bool on_device = err == cudaSuccess &&
                         (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) &&
                         attr.device == call.ctx->device;
  if (!on_device) {
    set_error("%s: %s: data %p is not memory of CUDA device %d (host memory, freed, or another device)", call.fn,
              name, data, call.ctx->device);
    return FSG_ERR_DEVICE_MISMATCH;
  }
  return FSG_OK;
}

namespace {

// Structural checks shared by every view: pointers, rank, sizes, strides, dtype, device.
fsg_status check_common(const Call& call, const fsg_tensor* t, const char* name, int min_rank, int max_rank,
                        DType* dtype, int64_t* strides, bool fp8 = false) {
  if (t == nullptr) {
    set_error("%s: %s must not be NULL", call.fn, name);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  if (t->ndim < min_rank || t->ndim > max_rank) {
    if (min_rank == max_rank)
      set_error("%s: %s: expected rank %d, got rank %d", call.fn, name, min_rank, t->ndim);
    else
      set_error("%s: %s: expected rank %d..%d, got rank %d", call.fn, name, min_rank, max_rank, t->ndim);
    return FSG_ERR_SHAPE;
  }
  if (t->shape == nullptr) {
    set_error("%s: %s: shape must not be NULL", call.fn, name);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  for (int i = 0; i < t->ndim; ++i) {
    if (t->shape[i] < 0) {
      set_error("%s: %s: negative size %" PRId64 " in dim %d of shape %s", call.fn, name, t->shape[i], i,
                shape_string(t).c_str());
      return FSG_ERR_SHAPE;
    }
  }
  FSG_TRY(parse_dtype(call, t, name, fp8, dtype));
  int64_t compact = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    strides[i] = t->strides ? t->strides[i] : compact;
    compact *= t->shape[i] > 0 ? t->shape[i] : 1;
    if (strides[i] < 0) {
      set_error("%s: %s: negative stride %" PRId64 " in dim %d is not supported", call.fn, name, strides[i], i);
      return FSG_ERR_LAYOUT;
    }
  }
  if (t->data == nullptr) {
    set_error("%s: %s: data pointer is NULL", call.fn, name);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  const void* data = static_cast<const char*>(t->data) + t->byte_offset;
  return check_device(call, t, name, data);
}

fsg_status check_size(const Call& call, const char* name, const char* what, int64_t n) {
  if (n <= kMaxDim) return FSG_OK;
  set_error("%s: %s: %s = %" PRId64 " exceeds the supported maximum %" PRId64 " (2^31 - 1)", call.fn, name, what, n,
            kMaxDim);
  return FSG_ERR_TOO_LARGE;
}

void* data_of(const fsg_tensor* t) { return static_cast<char*>(t->data) + t->byte_offset; }

// Smallest and one-past-largest byte touched by a view.
void byte_span(const Mat& m, uintptr_t* lo, uintptr_t* hi) {
  const int64_t last = (m.rows - 1) * m.rs + (m.cols - 1) * m.cs;
  *lo = reinterpret_cast<uintptr_t>(m.data);
  *hi = *lo + static_cast<uintptr_t>((last + 1) * dtype_bytes(m.dtype));
}

// Views whose dims do not interleave: the larger stride steps over the whole inner dim.
bool is_nested(const Mat& m) {
  if (m.rows <= 1 || m.cols <= 1) return (m.rows <= 1 || m.rs >= 1) && (m.cols <= 1 || m.cs >= 1);
  if (m.cs >= 1 && m.rs >= m.cols * m.cs) return true;
  return m.rs >= 1 && m.cs >= m.rows * m.rs;
}

// For two nested views with identical shape, strides and dtype whose bases differ by d elements:
// do they share an element? True iff d = i*rs + j*cs with |i| < rows, |j| < cols.
bool same_lattice_overlaps(const Mat& m, int64_t d) {
  if (d < 0) d = -d;
  int64_t outer = m.rs, outer_n = m.rows, inner = m.cs, inner_n = m.cols;
  if (m.cols > 1 && m.rows > 1 && m.cs > m.rs) std::swap(outer, inner), std::swap(outer_n, inner_n);
  if (outer_n <= 1) outer = INT64_MAX / 4, outer_n = 1;  // only i = 0 is possible
  if (inner_n <= 1) inner = 1, inner_n = 1;                // only j = 0 is possible
  if (outer == 0 || inner == 0) return true;
  const int64_t q = d / outer;
  for (int64_t i = q - 1; i <= q + 1; ++i) {
    if (i < 0 || i >= outer_n) continue;
    const int64_t rem = d - i * outer;
    if (rem % inner == 0 && std::llabs(rem / inner) < inner_n) return true;
  }
  return false;
}

}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F8E4M3: return "float8_e4m3fn";
    case DType::E8M0: return "float8_e8m0fnu";
  }
  return "?";
}

namespace {
fsg_status view_rows_impl(const Call& call, const fsg_tensor* t, const char* name, bool fp8, RowsView* out) {
  int64_t strides[kMaxRank];
  DType dtype;
  FSG_TRY(check_common(call, t, name, 2, kMaxRank, &dtype, strides, fp8));
  const int last = t->ndim - 1;
  int64_t rows = 1;
  for (int i = 0; i < last; ++i) {
    out->leading[i] = t->shape[i];
    if (t->shape[i] != 0 && rows > INT64_MAX / t->shape[i]) rows = INT64_MAX;
    else rows *= t->shape[i];
  }
  // Leading dims collapse when each steps exactly over the next one (size-1 dims are free; with no
  // rows at all there is nothing to step over, so any strides do).
  int64_t row_stride = 0;
  bool have_inner = false;
  for (int i = last - 1; i >= 0 && rows > 0; --i) {
    if (t->shape[i] == 1) continue;
    if (!have_inner) {
      row_stride = strides[i];
      have_inner = true;
      continue;
    }
    int64_t expect = 0;
    for (int k = i + 1; k < last; ++k) {
      if (t->shape[k] != 1) {
        expect = strides[k] * t->shape[k];
        break;
      }
    }
    if (strides[i] != expect) {
      set_error("%s: %s: leading dims of shape %s must collapse into one row dimension (stride of dim %d is %" PRId64
                ", expected %" PRId64 ")", call.fn, name, shape_string(t).c_str(), i, strides[i], expect);
      return FSG_ERR_LAYOUT;
    }
  }
  if (!have_inner) row_stride = t->shape[last] * strides[last];
  FSG_TRY(check_size(call, name, "rows (product of leading dims)", rows));
  FSG_TRY(check_size(call, name, "last dim", t->shape[last]));
  out->ndim = t->ndim;
  out->mat = Mat{data_of(t), rows, t->shape[last], row_stride, strides[last], dtype};
  return FSG_OK;
}
}  // namespace

fsg_status view_rows(const Call& call, const fsg_tensor* t, const char* name, RowsView* out) {
  return view_rows_impl(call, t, name, false, out);
}

fsg_status view_fp8_rows(const Call& call, const fsg_tensor* t, const char* name, const fsg_tensor* scale,
                         const char* scale_name, RowsView* out) {
  FSG_TRY(view_rows_impl(call, t, name, true, out));
  Mat& m = out->mat;
  if (m.dtype != DType::F8E4M3) {
    if (scale != nullptr) {
      set_error("%s: %s: only float8_e4m3fn tensors take block scales, and %s is %s", call.fn, scale_name, name,
                dtype_name(m.dtype));
      return FSG_ERR_INVALID_ARGUMENT;
    }
    return FSG_OK;
  }
  if (m.cs != 1 && m.cols > 1) {
    set_error("%s: %s: float8_e4m3fn tensors need contiguous rows (last stride 1), got last stride %" PRId64,
              call.fn, name, m.cs);
    return FSG_ERR_LAYOUT;
  }
  if (scale == nullptr) {
    set_error("%s: %s: a float8_e4m3fn tensor needs its block scales (%s), got NULL", call.fn, name, scale_name);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  RowsView sv;
  FSG_TRY(view_rows_impl(call, scale, scale_name, true, &sv));
  FSG_TRY(expect_same_leading(call, scale_name, sv, name, *out));
  FSG_TRY(expect_dim(call, scale_name, "last dim (ceil(columns / 32))", sv.mat.cols,
                     (m.cols + kFp8Block - 1) / kFp8Block));
  if (sv.mat.dtype != DType::E8M0) {
    set_error("%s: %s: expected dtype float8_e8m0fnu (block scales), got %s", call.fn, scale_name,
              dtype_name(sv.mat.dtype));
    return FSG_ERR_DTYPE;
  }
  if (sv.mat.cs != 1 && sv.mat.cols > 1) {
    set_error("%s: %s: block scales need contiguous rows (last stride 1), got last stride %" PRId64, call.fn,
              scale_name, sv.mat.cs);
    return FSG_ERR_LAYOUT;
  }
  m.scale = sv.mat.data;
  m.scale_rs = sv.mat.rs;
  m.scale_c0 = 0;
  return FSG_OK;
}

fsg_status view_saved(const Call& call, const fsg_tensor* t, const char* name, const fsg_tensor* scale,
                      const char* scale_name, const RowsView& like, const char* like_name, int64_t cols,
                      const char* cols_what, Mat* out) {
  *out = Mat{};
  if (t == nullptr) {
    if (scale == nullptr) return FSG_OK;
    set_error("%s: %s: given without %s", call.fn, scale_name, name);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  RowsView v;
  FSG_TRY(view_fp8_rows(call, t, name, scale, scale_name, &v));
  FSG_TRY(expect_same_leading(call, name, v, like_name, like));
  FSG_TRY(expect_dim(call, name, cols_what, v.mat.cols, cols));
  if (!v.mat.fp8() && v.mat.dtype != like.mat.dtype) {
    set_error("%s: %s: expected dtype %s (the dtype of %s) or float8_e4m3fn with block scales, got %s", call.fn,
              name, dtype_name(like.mat.dtype), like_name, dtype_name(v.mat.dtype));
    return FSG_ERR_DTYPE;
  }
  *out = v.mat;
  return FSG_OK;
}

fsg_status expect_same_encoding(const Call& call, const Mat& a, const char* a_name, const Mat& b,
                                const char* b_name) {
  if (!a.present() || !b.present() || a.fp8() == b.fp8()) return FSG_OK;
  set_error("%s: %s is %s but %s is %s; save both in fp8 or neither", call.fn, a_name, dtype_name(a.dtype), b_name,
            dtype_name(b.dtype));
  return FSG_ERR_DTYPE;
}

// The block scales as a byte matrix, for overlap checks.
Mat scale_mat(const Mat& m) {
  if (!m.fp8() || m.rows == 0 || m.cols == 0) return Mat{};
  return Mat{m.scale, m.rows, (m.scale_c0 + m.cols + kFp8Block - 1) / kFp8Block, m.scale_rs, 1, DType::E8M0};
}

fsg_status view_matrix(const Call& call, const fsg_tensor* t, const char* name, Mat* out) {
  int64_t strides[kMaxRank];
  DType dtype;
  FSG_TRY(check_common(call, t, name, 2, 2, &dtype, strides));
  FSG_TRY(check_size(call, name, "dim 0", t->shape[0]));
  FSG_TRY(check_size(call, name, "dim 1", t->shape[1]));
  *out = Mat{data_of(t), t->shape[0], t->shape[1], strides[0], strides[1], dtype};
  return FSG_OK;
}

fsg_status view_vector(const Call& call, const fsg_tensor* t, const char* name, int64_t expected_n, Vec* out) {
  int64_t strides[kMaxRank];
  DType dtype;
  FSG_TRY(check_common(call, t, name, 1, 2, &dtype, strides));
  if (t->ndim == 2 && t->shape[1] != 1) {
    set_error("%s: %s: expected shape [%" PRId64 "] or [%" PRId64 ", 1], got %s", call.fn, name, expected_n,
              expected_n, shape_string(t).c_str());
    return FSG_ERR_SHAPE;
  }
  if (t->shape[0] != expected_n) {
    set_error("%s: %s: expected %" PRId64 " elements, got shape %s", call.fn, name, expected_n,
              shape_string(t).c_str());
    return FSG_ERR_SHAPE;
  }
  *out = Vec{data_of(t), t->shape[0], strides[0], dtype};
  return FSG_OK;
}

fsg_status view_optional_vector(const Call& call, const fsg_tensor* t, const char* name, int64_t expected_n,
                                Vec* out) {
  *out = Vec{};
  if (t == nullptr) return FSG_OK;
  return view_vector(call, t, name, expected_n, out);
}

fsg_status expect_dtype(const Call& call, const char* name, DType got, DType want, const char* want_from) {
  if (got == want) return FSG_OK;
  set_error("%s: %s: expected dtype %s (the dtype of %s), got %s", call.fn, name, dtype_name(want), want_from,
            dtype_name(got));
  return FSG_ERR_DTYPE;
}

fsg_status expect_dim(const Call& call, const char* name, const char* what, int64_t got, int64_t want) {
  if (got == want) return FSG_OK;
  set_error("%s: %s: expected %s = %" PRId64 ", got %" PRId64, call.fn, name, what, want, got);
  return FSG_ERR_SHAPE;
}

fsg_status expect_same_leading(const Call& call, const char* name, const RowsView& got, const char* ref_name,
                               const RowsView& ref) {
  bool same = got.ndim == ref.ndim;
  for (int i = 0; same && i < got.ndim - 1; ++i) same = got.leading[i] == ref.leading[i];
  if (same) return FSG_OK;
  std::string a, b;
  for (int i = 0; i < got.ndim - 1; ++i) a += std::to_string(got.leading[i]) + ", ";
  for (int i = 0; i < ref.ndim - 1; ++i) b += std::to_string(ref.leading[i]) + ", ";
  set_error("%s: %s: expected leading dims [%s...] (those of %s), got [%s...]", call.fn, name, b.c_str(), ref_name,
            a.c_str());
  return FSG_ERR_SHAPE;
}

fsg_status expect_writable(const Call& call, const char* name, const Mat& m) {
  if (m.rows == 0 || m.cols == 0 || is_nested(m)) return FSG_OK;
  set_error("%s: %s: output strides [%" PRId64 ", %" PRId64 "] for shape [%" PRId64 ", %" PRId64
            "] would write some elements twice; outputs need non-overlapping strides", call.fn, name, m.rs, m.cs,
            m.rows, m.cols);
  return FSG_ERR_LAYOUT;
}

fsg_status expect_outside(const Call& call, const char* name, const Mat& m, uintptr_t lo, uintptr_t hi,
                          const char* region) {
  if (!m.present() || m.rows == 0 || m.cols == 0) return FSG_OK;
  uintptr_t m_lo, m_hi;
  byte_span(m, &m_lo, &m_hi);
  if (m_hi <= lo || hi <= m_lo) return FSG_OK;
  set_error("%s: %s overlaps the %s (bytes [0x%llx, 0x%llx)), which the call writes", call.fn, name, region,
            static_cast<unsigned long long>(lo), static_cast<unsigned long long>(hi));
  return FSG_ERR_ALIAS;
}

fsg_status expect_disjoint(const Call& call, const char* out_name, const Mat& out, const char* other_name,
                           const Mat& other) {
  if (!out.present() || !other.present() || out.rows == 0 || out.cols == 0 || other.rows == 0 || other.cols == 0)
    return FSG_OK;
  uintptr_t lo_a, hi_a, lo_b, hi_b;
  byte_span(out, &lo_a, &hi_a);
  byte_span(other, &lo_b, &hi_b);
  if (hi_a <= lo_b || hi_b <= lo_a) return FSG_OK;
  // Spans intersect: still disjoint when both are the same lattice shifted off it (packed halves,
  // interleaved columns).
  const int esize = dtype_bytes(out.dtype);
  const intptr_t d_bytes = static_cast<intptr_t>(lo_b) - static_cast<intptr_t>(lo_a);
  const bool same_lattice = out.dtype == other.dtype && out.rows == other.rows && out.cols == other.cols &&
                            out.rs == other.rs && out.cs == other.cs && d_bytes % esize == 0 && is_nested(out);
  if (same_lattice && !same_lattice_overlaps(out, d_bytes / esize)) return FSG_OK;
  set_error("%s: %s overlaps %s in memory; outputs must not alias inputs or other outputs", call.fn, out_name,
            other_name);
  return FSG_ERR_ALIAS;
}

fsg_status view_rows_like(const Call& call, const fsg_tensor* t, const char* name, const RowsView& like,
                          const char* like_name, int64_t cols, const char* cols_what, Mat* out) {
  *out = Mat{};
  if (t == nullptr) return FSG_OK;
  RowsView v;
  FSG_TRY(view_rows(call, t, name, &v));
  FSG_TRY(expect_same_leading(call, name, v, like_name, like));
  FSG_TRY(expect_dim(call, name, cols_what, v.mat.cols, cols));
  FSG_TRY(expect_dtype(call, name, v.mat.dtype, like.mat.dtype, like_name));
  *out = v.mat;
  return FSG_OK;
}

fsg_status view_matrix_grad(const Call& call, const fsg_tensor* t, const char* name, int64_t K, int64_t N,
                            DType dtype, const char* dtype_from, Mat* out) {
  *out = Mat{};
  if (t == nullptr) return FSG_OK;
  FSG_TRY(view_matrix(call, t, name, out));
  FSG_TRY(expect_dim(call, name, "dim 0 (K)", out->rows, K));
  FSG_TRY(expect_dim(call, name, "dim 1 (N)", out->cols, N));
  return expect_dtype(call, name, out->dtype, dtype, dtype_from);
}

fsg_status parse_backward_flags(const Call& call, uint32_t flags, bool* accumulate) {
  if ((flags & ~FSG_BACKWARD_ACCUMULATE) != 0) {
    set_error("%s: flags: unknown bits 0x%x (only FSG_BACKWARD_ACCUMULATE = 1 is defined)", call.fn,
              flags & ~FSG_BACKWARD_ACCUMULATE);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  *accumulate = (flags & FSG_BACKWARD_ACCUMULATE) != 0;
  return FSG_OK;
}

Mat as_mat(const Vec& v) { return Mat{v.data, 1, v.n, 0, v.stride, v.dtype}; }

Mat transposed(const Mat& m) { return Mat{m.data, m.cols, m.rows, m.cs, m.rs, m.dtype}; }

}  // namespace fsg
