// api_swiglu.cpp: fsg_swiglu_forward / fsg_swiglu_backward: argument checks, then the backend.
//
// Backward plan (every step on the context's stream, no allocation, deterministic):
//   0. The workspace: [dA | dB], then (Hopper, shapes whose GEMMs would leave SMs idle) scratch
//      for the split-K partials of dX and dW (backward_workspace below).
//   1. [dA | dB] into the workspace ([M, 2N], the call's dtype):
//        stored mode:    elementwise from dz and the saved pre-activations (glu backward)
//        recompute mode: the fused dual GEMM again, with the backward epilogue
//   2. db_gate / db_up = column sums of dA / dB
//   3. dx = dA·Wg^T + dB·Wu^T (one GEMM with two products)
//   4. dw_gate = x^T·dA, dw_up = x^T·dB
#include "dispatch.h"
#include "glu_params.h"
#include "guard.h"
#include "kernels.h"
#include "tensor_view.h"

using namespace fsg;

namespace {

// The backward's workspace: [dA | dB] ([M, 2N] of dtype) at 0, then the split-K scratch at a
// 256-byte boundary. The scratch is sized for the current device (fsg_swiglu_backward binds it);
// a workspace without it (sized on another device, or by an older caller) only turns split-K off.
struct BackwardWorkspace {
  uint64_t grads_bytes, scratch_offset, scratch_bytes;
  uint64_t total() const { return scratch_bytes ? scratch_offset + scratch_bytes : grads_bytes; }
};

// FSG_ERR_TOO_LARGE past 2^62 bytes of [M, 2N] gradients (float32 with M and N near 2^31 would wrap
// 2^64: possible with broadcast, stride-0 inputs, and a wrapped size would let dA and dB run past
// the workspace).
fsg_status backward_workspace(const Call& call, int64_t M, int64_t K, int64_t N, DType dt, BackwardWorkspace* out) {
  const uint64_t row = static_cast<uint64_t>(N) * 2 * dtype_bytes(dt);  // <= 2^34
  if (M > 0 && row > (uint64_t{1} << 62) / static_cast<uint64_t>(M)) {
    set_error("%s: the backward's workspace for %lld rows and n = %lld (%s) exceeds 2^62 bytes", call.fn,
              static_cast<long long>(M), static_cast<long long>(N), dtype_name(dt));
    return FSG_ERR_TOO_LARGE;
  }
  const fsg_context* ctx = call.ctx;
  BackwardWorkspace& w = *out;
  w = BackwardWorkspace{};
  w.grads_bytes = static_cast<uint64_t>(M) * row;
  w.scratch_offset = (w.grads_bytes + 255) / 256 * 256;
  if (on_cuda(ctx) && ctx->sm90_kernels && (dt == DType::BF16 || dt == DType::F16)) {
    // dX = [dA|dB]·[Wg|Wu]^T runs as two products of ceil(N / 64) K tiles each (16-bit kBK = 64):
    // sized for 2N it could count one tile fewer, and a GEMM wanting more pieces than the scratch
    // holds does not split at all.
    const int64_t dx_k = 2 * ((N + 63) / 64 * 64);
    const uint64_t dx = gemm_sm90_split_scratch_bytes(M, K, dx_k);
    const uint64_t dw = gemm_sm90_split_scratch_bytes(K, N, M);      // dW = x^T·dA (then x^T·dB)
    w.scratch_bytes = dx > dw ? dx : dw;
  }
  return FSG_OK;
}

// The weights and biases shared by forward and backward: [K, N] views of x's dtype.
struct Params {
  Mat wg, wu;
  Vec bg, bu;
  int64_t K = 0, N = 0;
};

fsg_status view_params(const Call& call, const RowsView& x, const fsg_tensor* w_gate, const fsg_tensor* w_up,
                       const fsg_tensor* b_gate, const fsg_tensor* b_up, Params* p) {
  const DType dt = x.mat.dtype;
  FSG_TRY(view_matrix(call, w_gate, "w_gate", &p->wg));
  FSG_TRY(view_matrix(call, w_up, "w_up", &p->wu));
  p->K = x.mat.cols;
  p->N = p->wg.cols;
  FSG_TRY(expect_dim(call, "w_gate", "dim 0 (K, the last dim of x)", p->wg.rows, p->K));
  FSG_TRY(expect_dim(call, "w_up", "dim 0 (K, the last dim of x)", p->wu.rows, p->K));
  FSG_TRY(expect_dim(call, "w_up", "dim 1 (N, as w_gate)", p->wu.cols, p->N));
  FSG_TRY(expect_dtype(call, "w_gate", p->wg.dtype, dt, "x"));
  FSG_TRY(expect_dtype(call, "w_up", p->wu.dtype, dt, "x"));
  FSG_TRY(view_optional_vector(call, b_gate, "b_gate", p->N, &p->bg));
  FSG_TRY(view_optional_vector(call, b_up, "b_up", p->N, &p->bu));
  if (p->bg.present()) FSG_TRY(expect_dtype(call, "b_gate", p->bg.dtype, dt, "x"));
  if (p->bu.present()) FSG_TRY(expect_dtype(call, "b_up", p->bu.dtype, dt, "x"));
  if (p->K == 0) {
    set_error("%s: x: the last dim (K) must be >= 1", call.fn);
    return FSG_ERR_SHAPE;
  }
  return FSG_OK;
}

}  // namespace

extern "C" {

FSG_API fsg_status fsg_swiglu_forward(fsg_context* ctx, const fsg_tensor* x, const fsg_tensor* w_gate,
                                      const fsg_tensor* w_up, const fsg_tensor* b_gate, const fsg_tensor* b_up,
                                      const fsg_tensor* z, const fsg_tensor* a_out, const fsg_tensor* b_out,
                                      const fsg_tensor* a_scale, const fsg_tensor* b_scale,
                                      const fsg_glu_params* act) {
  const Call call{ctx, "fsg_swiglu_forward"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    RowsView xv;
    Params p;
    FSG_TRY(view_rows(call, x, "x", &xv));
    FSG_TRY(view_params(call, xv, w_gate, w_up, b_gate, b_up, &p));
    FSG_TRY(require(z, call.fn, "z"));
    DualGemmArgs args;
    FSG_TRY(parse_glu_params(call, act, &args.act));
    FSG_TRY(view_rows_like(call, z, "z", xv, "x", p.N, "last dim (N, dim 1 of w_gate)", &args.z));
    FSG_TRY(view_saved(call, a_out, "a_out", a_scale, "a_scale", xv, "x", p.N, "last dim (N)", &args.a_out));
    FSG_TRY(view_saved(call, b_out, "b_out", b_scale, "b_scale", xv, "x", p.N, "last dim (N)", &args.b_out));
    FSG_TRY(expect_same_encoding(call, args.a_out, "a_out", args.b_out, "b_out"));
    const Named outs[] = {{"z", args.z}, {"a_out", args.a_out}, {"b_out", args.b_out},
                          {"a_scale", scale_mat(args.a_out)}, {"b_scale", scale_mat(args.b_out)}};
    for (const Named& o : outs) FSG_TRY(expect_writable(call, o.name, o.mat));
    const Named ins[] = {{"x", xv.mat}, {"w_gate", p.wg}, {"w_up", p.wu}, {"b_gate", as_mat(p.bg)},
                         {"b_up", as_mat(p.bu)}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (xv.mat.rows == 0 || p.N == 0) return FSG_OK;
    args.epilogue = DualGemmArgs::kForward;
    args.x = xv.mat;
    args.wg = p.wg;
    args.wu = p.wu;
    args.bg = p.bg;
    args.bu = p.bu;
    return run(ctx, args);
  });
}

FSG_API fsg_status fsg_swiglu_backward_workspace_size(fsg_context* ctx, const fsg_tensor* x, int64_t n,
                                                      uint64_t* out_bytes) {
  const Call call{ctx, "fsg_swiglu_backward_workspace_size"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(require(out_bytes, call.fn, "out_bytes"));
    RowsView xv;
    FSG_TRY(view_rows(call, x, "x", &xv));
    if (n < 0 || n > INT32_MAX) {
      set_error("%s: n: expected 0..2^31-1, got %lld", call.fn, static_cast<long long>(n));
      return n < 0 ? FSG_ERR_SHAPE : FSG_ERR_TOO_LARGE;
    }
    FSG_TRY(bind_device(ctx));
    BackwardWorkspace layout;
    FSG_TRY(backward_workspace(call, xv.mat.rows, xv.mat.cols, n, xv.mat.dtype, &layout));
    *out_bytes = layout.total();
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_swiglu_backward(fsg_context* ctx, const fsg_tensor* dz, const fsg_tensor* x,
                                       const fsg_tensor* w_gate, const fsg_tensor* w_up, const fsg_tensor* b_gate,
                                       const fsg_tensor* b_up, const fsg_tensor* a_saved, const fsg_tensor* b_saved,
                                       const fsg_tensor* a_scale, const fsg_tensor* b_scale, const fsg_tensor* dx,
                                       const fsg_tensor* dw_gate, const fsg_tensor* dw_up,
                                       const fsg_tensor* db_gate, const fsg_tensor* db_up, uint32_t flags,
                                       uint64_t workspace, uint64_t workspace_bytes, const fsg_glu_params* act) {
  const Call call{ctx, "fsg_swiglu_backward"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    bool accumulate = false;
    FSG_TRY(parse_backward_flags(call, flags, &accumulate));
    fsg_glu_params glu;
    FSG_TRY(parse_glu_params(call, act, &glu));
    RowsView xv, dzv;
    Params p;
    FSG_TRY(view_rows(call, x, "x", &xv));
    FSG_TRY(view_params(call, xv, w_gate, w_up, b_gate, b_up, &p));
    FSG_TRY(view_rows(call, dz, "dz", &dzv));
    FSG_TRY(expect_same_leading(call, "dz", dzv, "x", xv));
    FSG_TRY(expect_dim(call, "dz", "last dim (N)", dzv.mat.cols, p.N));
    FSG_TRY(expect_dtype(call, "dz", dzv.mat.dtype, xv.mat.dtype, "x"));
    if ((a_saved == nullptr) != (b_saved == nullptr)) {
      set_error("%s: a_saved and b_saved: give both (stored mode) or neither (recompute mode); got only %s", call.fn,
                a_saved ? "a_saved" : "b_saved");
      return FSG_ERR_INVALID_ARGUMENT;
    }
    Mat a_mat, b_mat;
    FSG_TRY(view_saved(call, a_saved, "a_saved", a_scale, "a_scale", xv, "x", p.N, "last dim (N)", &a_mat));
    FSG_TRY(view_saved(call, b_saved, "b_saved", b_scale, "b_scale", xv, "x", p.N, "last dim (N)", &b_mat));
    FSG_TRY(expect_same_encoding(call, a_mat, "a_saved", b_mat, "b_saved"));

    Mat dx_mat, dwg, dwu;
    Vec dbg, dbu;
    FSG_TRY(view_rows_like(call, dx, "dx", xv, "x", p.K, "last dim (K)", &dx_mat));
    FSG_TRY(view_matrix_grad(call, dw_gate, "dw_gate", p.K, p.N, xv.mat.dtype, "x", &dwg));
    FSG_TRY(view_matrix_grad(call, dw_up, "dw_up", p.K, p.N, xv.mat.dtype, "x", &dwu));
    FSG_TRY(view_optional_vector(call, db_gate, "db_gate", p.N, &dbg));
    FSG_TRY(view_optional_vector(call, db_up, "db_up", p.N, &dbu));
    if (dbg.present()) FSG_TRY(expect_dtype(call, "db_gate", dbg.dtype, xv.mat.dtype, "x"));
    if (dbu.present()) FSG_TRY(expect_dtype(call, "db_up", dbu.dtype, xv.mat.dtype, "x"));

    const Named outs[] = {{"dx", dx_mat}, {"dw_gate", dwg}, {"dw_up", dwu}, {"db_gate", as_mat(dbg)},
                          {"db_up", as_mat(dbu)}};
    for (const Named& o : outs) FSG_TRY(expect_writable(call, o.name, o.mat));
    const Named ins[] = {{"dz", dzv.mat}, {"x", xv.mat}, {"w_gate", p.wg}, {"w_up", p.wu}, {"b_gate", as_mat(p.bg)},
                         {"b_up", as_mat(p.bu)}, {"a_saved", a_mat}, {"b_saved", b_mat},
                         {"a_scale", scale_mat(a_mat)}, {"b_scale", scale_mat(b_mat)}};
    FSG_TRY(expect_no_alias(call, outs, ins));

    const int64_t M = xv.mat.rows, N = p.N;
    const bool any = dx_mat.present() || dwg.present() || dwu.present() || dbg.present() || dbu.present();
    if (!any) return FSG_OK;
    if (N == 0) return accumulate ? FSG_OK : zero_fill(ctx, dx_mat);  // dx sums no hidden features
    if (M == 0) {  // an empty batch: weight and bias grads are zero sums
      if (accumulate) return FSG_OK;
      for (const Mat& m : {dwg, dwu, as_mat(dbg), as_mat(dbu)}) FSG_TRY(zero_fill(ctx, m));
      return FSG_OK;
    }

    const DType dt = xv.mat.dtype;
    BackwardWorkspace layout;
    FSG_TRY(backward_workspace(call, M, p.K, N, dt, &layout));
    const uint64_t need = layout.grads_bytes;
    if (workspace == 0 || workspace_bytes < need || workspace % 256 != 0) {
      set_error("%s: workspace: expected %llu bytes (fsg_swiglu_backward_workspace_size), 256-byte aligned; got "
                "%llu bytes at 0x%llx", call.fn, (unsigned long long)need, (unsigned long long)workspace_bytes,
                (unsigned long long)workspace);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    char* ws = reinterpret_cast<char*>(workspace);
    const Mat dA{ws, M, N, 2 * N, 1, dt};
    const Mat dB{ws + N * dtype_bytes(dt), M, N, 2 * N, 1, dt};
    // Split-K scratch for dX and dW, when the caller's workspace has room for it.
    const bool has_scratch = layout.scratch_bytes > 0 && workspace_bytes >= layout.total();
    // The bytes the call writes there: on the device, and clear of every tensor of the call.
    FSG_TRY(check_device_memory(call, "workspace", ws));
    const uintptr_t ws_lo = workspace, ws_hi = workspace + (has_scratch ? layout.total() : need);
    for (const Named& t : outs) FSG_TRY(expect_outside(call, t.name, t.mat, ws_lo, ws_hi, "workspace"));
    for (const Named& t : ins) FSG_TRY(expect_outside(call, t.name, t.mat, ws_lo, ws_hi, "workspace"));
    auto with_scratch = [&](GemmArgs g) {
      if (has_scratch) g.scratch = ws + layout.scratch_offset, g.scratch_bytes = layout.scratch_bytes;
      return g;
    };

    if (a_mat.present()) {
      GluBackwardArgs g;
      g.act = glu;
      g.dout = dzv.mat;
      g.gate = a_mat;
      g.up = b_mat;
      g.dgate = dA;
      g.dup = dB;
      FSG_TRY(run(ctx, g));
    } else {
      DualGemmArgs d;
      d.epilogue = DualGemmArgs::kBackward;
      d.act = glu;
      d.x = xv.mat;
      d.wg = p.wg;
      d.wu = p.wu;
      d.bg = p.bg;
      d.bu = p.bu;
      d.dz = dzv.mat;
      d.da = dA;
      d.db = dB;
      FSG_TRY(run(ctx, d));
    }
    if (dbg.present()) FSG_TRY(run(ctx, ColumnSumArgs{dA, dbg, accumulate}));
    if (dbu.present()) FSG_TRY(run(ctx, ColumnSumArgs{dB, dbu, accumulate}));
    if (dx_mat.present()) {
      GemmArgs g;
      g.a0 = dA;
      g.b0 = transposed(p.wg);
      g.a1 = dB;
      g.b1 = transposed(p.wu);
      g.c = dx_mat;
      g.accumulate = accumulate;
      FSG_TRY(run(ctx, with_scratch(g)));
    }
    if (dwg.present()) FSG_TRY(run(ctx, with_scratch(product(transposed(xv.mat), dA, dwg, accumulate))));
    if (dwu.present()) FSG_TRY(run(ctx, with_scratch(product(transposed(xv.mat), dB, dwu, accumulate))));
    return FSG_OK;
  });
}

}  // extern "C"
