// tensor_view.h: turns caller-supplied fsg_tensor descriptors into the backends' Mat/Vec views,
// checking everything a backend trusts (see backend.h). Every failure names the function, the
// argument, what was expected and what was seen.
#pragma once
#include <cstddef>
#include <cstdint>

#include "context.h"

namespace fsg {

constexpr int kMaxRank = 8;

// One call's identity, for messages and device checks.
struct Call {
  const fsg_context* ctx;
  const char* fn;
};

// A tensor seen as rows x cols: the leading dims [..., cols] collapsed into rows.
struct RowsView {
  Mat mat;
  int32_t ndim = 0;
  int64_t leading[kMaxRank] = {};  // the shape without its last dim
};

// x-like tensors [..., C] (rank >= 2): the leading dims must collapse to one row stride.
fsg_status view_rows(const Call& call, const fsg_tensor* t, const char* name, RowsView* out);
// Exactly 2-D tensors with any non-negative strides (weights, their grads).
fsg_status view_matrix(const Call& call, const fsg_tensor* t, const char* name, Mat* out);
// [n] or [n, 1] (biases, token weights); n must equal expected_n.
fsg_status view_vector(const Call& call, const fsg_tensor* t, const char* name, int64_t expected_n, Vec* out);

// An optional argument: absent (NULL) leaves `out` empty (data == nullptr).
fsg_status view_optional_vector(const Call& call, const fsg_tensor* t, const char* name, int64_t expected_n,
                                Vec* out);

fsg_status expect_dtype(const Call& call, const char* name, DType got, DType want, const char* want_from);
fsg_status expect_dim(const Call& call, const char* name, const char* what, int64_t got, int64_t want);
// Same leading shape (the "M" dims) as a reference tensor.
fsg_status expect_same_leading(const Call& call, const char* name, const RowsView& got, const char* ref_name,
                               const RowsView& ref);

// An output must not write one element twice (no zero or interleaving strides). Vector outputs
// are checked as 1-row matrices (as_mat).
fsg_status expect_writable(const Call& call, const char* name, const Mat& m);
// Memory of the context's device (CUDA: device or managed memory there; the CPU backend: any).
fsg_status check_device_memory(const Call& call, const char* name, const void* data);
// A view (input or output) must not reach into bytes [lo, hi) that the call writes (a workspace).
fsg_status expect_outside(const Call& call, const char* name, const Mat& m, uintptr_t lo, uintptr_t hi,
                          const char* region);
// An output must not overlap `other` (an input or another output). Absent views never overlap.
fsg_status expect_disjoint(const Call& call, const char* out_name, const Mat& out, const char* other_name,
                           const Mat& other);

// An optional [..., cols] tensor with the leading dims and dtype of `like` (absent: empty Mat).
fsg_status view_rows_like(const Call& call, const fsg_tensor* t, const char* name, const RowsView& like,
                          const char* like_name, int64_t cols, const char* cols_what, Mat* out);

// A tensor [..., C] that may be float8_e4m3fn with block scales `scale` [..., ceil(C/32)]
// (required exactly when it is fp8; fused_swiglu.h, "fp8 storage"); fills mat.scale*.
fsg_status view_fp8_rows(const Call& call, const fsg_tensor* t, const char* name, const fsg_tensor* scale,
                         const char* scale_name, RowsView* out);
// A saved pre-activation: view_rows_like, but fp8 with scales is accepted besides like's dtype.
fsg_status view_saved(const Call& call, const fsg_tensor* t, const char* name, const fsg_tensor* scale,
                      const char* scale_name, const RowsView& like, const char* like_name, int64_t cols,
                      const char* cols_what, Mat* out);
// Saved gate/up pre-activations: both fp8 or neither.
fsg_status expect_same_encoding(const Call& call, const Mat& a, const char* a_name, const Mat& b,
                                const char* b_name);
// The scale bytes of an fp8 view as a matrix (empty otherwise), for overlap and writability checks.
Mat scale_mat(const Mat& m);

struct Named {
  const char* name;
  Mat mat;
};

// Every output against every input and every other output.
template <size_t NO, size_t NI>
fsg_status expect_no_alias(const Call& call, const Named (&outs)[NO], const Named (&ins)[NI]) {
  for (size_t i = 0; i < NO; ++i) {
    for (size_t j = 0; j < NI; ++j) {
      fsg_status st = expect_disjoint(call, outs[i].name, outs[i].mat, ins[j].name, ins[j].mat);
      if (st != FSG_OK) return st;
    }
    for (size_t j = i + 1; j < NO; ++j) {
      fsg_status st = expect_disjoint(call, outs[i].name, outs[i].mat, outs[j].name, outs[j].mat);
      if (st != FSG_OK) return st;
    }
  }
  return FSG_OK;
}

// An optional [K, N] gradient output for a [K, N] operand (any non-overlapping strides).
fsg_status view_matrix_grad(const Call& call, const fsg_tensor* t, const char* name, int64_t K, int64_t N,
                            DType dtype, const char* dtype_from, Mat* out);

// The backward's flags word: only FSG_BACKWARD_ACCUMULATE is defined.
fsg_status parse_backward_flags(const Call& call, uint32_t flags, bool* accumulate);

// Views of vectors as 1-row matrices, so one overlap test serves both.
Mat as_mat(const Vec& v);
// The transposed view (no copy).
Mat transposed(const Mat& m);

const char* dtype_name(DType t);

}  // namespace fsg
