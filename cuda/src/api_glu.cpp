// api_glu.cpp: the Megatron-style activation ops on a packed y [..., 2N] (gate half first):
// fsg_glu_forward / fsg_glu_backward. Argument checks, then the backend's elementwise kernels.
#include "dispatch.h"
#include "glu_params.h"
#include "guard.h"
#include "tensor_view.h"

using namespace fsg;

namespace {

// y split into its halves, and the optional bias [2N] and token weights [T, 1] that go with it.
struct Packed {
  RowsView y;
  Mat gate, up;
  Vec bias, bias_gate, bias_up, weights;
  int64_t N = 0;
  DType dtype = DType::F32;  // the call's dtype
};

// y_scale: the backward's y may be an fp8 copy (fsg_quantize_fp8) with its block scales; the
// forward passes NULL and takes y in the call's dtype only. `dtype` is the call's dtype (that of
// bias, out, dy): y's, or for an fp8 y that of `dtype_from` (dout), viewed first by the caller.
fsg_status view_packed(const Call& call, const fsg_tensor* y, const fsg_tensor* y_scale, const RowsView* dtype_from,
                       const fsg_tensor* bias, const fsg_tensor* weights, Packed* p) {
  if (dtype_from == nullptr) {
    FSG_TRY(view_rows(call, y, "y", &p->y));
  } else {
    FSG_TRY(view_fp8_rows(call, y, "y", y_scale, "y_scale", &p->y));
    if (p->y.mat.dtype == DType::E8M0) {
      set_error("%s: y: expected float32, float16, bfloat16 or float8_e4m3fn (with y_scale), got float8_e8m0fnu",
                call.fn);
      return FSG_ERR_DTYPE;
    }
  }
  const Mat& m = p->y.mat;
  if (m.cols % 2 != 0) {
    set_error("%s: y: the last dim must be even (gate and up halves, [..., 2N]), got %lld", call.fn,
              static_cast<long long>(m.cols));
    return FSG_ERR_SHAPE;
  }
  p->N = m.cols / 2;
  p->gate = m;
  p->gate.cols = p->N;
  p->up = p->gate;
  p->up.data = static_cast<char*>(m.data) + p->N * m.cs * dtype_bytes(m.dtype);
  p->up.scale_c0 = m.scale_c0 + p->N;
  p->dtype = m.fp8() ? dtype_from->mat.dtype : m.dtype;
  FSG_TRY(view_optional_vector(call, bias, "bias", m.cols, &p->bias));
  if (p->bias.present()) {
    FSG_TRY(expect_dtype(call, "bias", p->bias.dtype, p->dtype, m.fp8() ? "dout" : "y"));
    const Vec& b = p->bias;
    p->bias_gate = Vec{b.data, p->N, b.stride, b.dtype};
    p->bias_up = Vec{static_cast<char*>(b.data) + p->N * b.stride * dtype_bytes(b.dtype), p->N, b.stride, b.dtype};
  }
  FSG_TRY(view_optional_vector(call, weights, "weights", m.rows, &p->weights));
  if (p->weights.present() && p->weights.dtype != DType::F32)
    FSG_TRY(expect_dtype(call, "weights", p->weights.dtype, p->dtype, m.fp8() ? "dout, or float32" : "y, or float32"));
  return FSG_OK;
}

}  // namespace

extern "C" {

FSG_API fsg_status fsg_glu_forward(fsg_context* ctx, const fsg_tensor* y, const fsg_tensor* bias,
                                   const fsg_tensor* weights, const fsg_tensor* out, const fsg_glu_params* act) {
  const Call call{ctx, "fsg_glu_forward"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    Packed p;
    FSG_TRY(view_packed(call, y, nullptr, nullptr, bias, weights, &p));
    FSG_TRY(require(out, call.fn, "out"));
    GluForwardArgs args;
    FSG_TRY(parse_glu_params(call, act, &args.act));
    FSG_TRY(view_rows_like(call, out, "out", p.y, "y", p.N, "last dim (N, half of y's)", &args.out));
    FSG_TRY(expect_writable(call, "out", args.out));
    const Named outs[] = {{"out", args.out}};
    const Named ins[] = {{"y", p.y.mat}, {"bias", as_mat(p.bias)}, {"weights", as_mat(p.weights)}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (p.y.mat.rows == 0 || p.N == 0) return FSG_OK;
    args.gate = p.gate;
    args.up = p.up;
    args.bias_gate = p.bias_gate;
    args.bias_up = p.bias_up;
    args.weights = p.weights;
    return run(ctx, args);
  });
}

FSG_API fsg_status fsg_glu_backward(fsg_context* ctx, const fsg_tensor* dout, const fsg_tensor* y,
                                    const fsg_tensor* y_scale, const fsg_tensor* bias, const fsg_tensor* weights, const fsg_tensor* dy,
                                    const fsg_tensor* dweights, const fsg_tensor* dbias, const fsg_glu_params* act) {
  const Call call{ctx, "fsg_glu_backward"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    fsg_glu_params glu;
    FSG_TRY(parse_glu_params(call, act, &glu));
    RowsView dout_v;
    FSG_TRY(view_rows(call, dout, "dout", &dout_v));
    Packed p;
    FSG_TRY(view_packed(call, y, y_scale, &dout_v, bias, weights, &p));
    FSG_TRY(require(dy, call.fn, "dy"));
    RowsView like = p.y;  // y's rows in the call's dtype (dout's for an fp8 y)
    like.mat.dtype = p.dtype;
    const char* like_name = p.y.mat.fp8() ? "dout" : "y";
    Mat dout_m, dy_m;
    FSG_TRY(view_rows_like(call, dout, "dout", like, "y", p.N, "last dim (N, half of y's)", &dout_m));
    FSG_TRY(view_rows_like(call, dy, "dy", like, like_name, 2 * p.N, "last dim (2N, as y)", &dy_m));
    Vec dw, db;
    if (dweights != nullptr && !p.weights.present()) {
      set_error("%s: dweights: given, but weights is NULL (nothing to differentiate)", call.fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    if (dbias != nullptr && !p.bias.present()) {
      set_error("%s: dbias: given, but bias is NULL (nothing to differentiate)", call.fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    FSG_TRY(view_optional_vector(call, dweights, "dweights", p.y.mat.rows, &dw));
    FSG_TRY(view_optional_vector(call, dbias, "dbias", 2 * p.N, &db));
    if (dw.present()) FSG_TRY(expect_dtype(call, "dweights", dw.dtype, p.weights.dtype, "weights"));
    if (db.present()) FSG_TRY(expect_dtype(call, "dbias", db.dtype, p.dtype, like_name));
    const Named outs[] = {{"dy", dy_m}, {"dweights", as_mat(dw)}, {"dbias", as_mat(db)}};
    for (const Named& o : outs) FSG_TRY(expect_writable(call, o.name, o.mat));
    const Named ins[] = {{"dout", dout_m}, {"y", p.y.mat}, {"y_scale", scale_mat(p.y.mat)}, {"bias", as_mat(p.bias)},
                         {"weights", as_mat(p.weights)}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (p.N == 0) return zero_fill(ctx, as_mat(dw));  // each row's sum over no columns
    if (p.y.mat.rows == 0) return db.present() ? zero_fill(ctx, as_mat(db)) : FSG_OK;
    GluBackwardArgs args;
    args.act = glu;
    args.dout = dout_m;
    args.gate = p.gate;
    args.up = p.up;
    args.bias_gate = p.bias_gate;
    args.bias_up = p.bias_up;
    args.weights = p.weights;
    const int esize = dtype_bytes(dy_m.dtype);
    args.dgate = Mat{dy_m.data, dy_m.rows, p.N, dy_m.rs, dy_m.cs, dy_m.dtype};
    args.dup = Mat{static_cast<char*>(dy_m.data) + p.N * dy_m.cs * esize, dy_m.rows, p.N, dy_m.rs, dy_m.cs, dy_m.dtype};
    args.dweights = dw;
    FSG_TRY(run(ctx, args));
    if (db.present()) FSG_TRY(run(ctx, ColumnSumArgs{dy_m, db, false}));
    return FSG_OK;
  });
}

}  // extern "C"
