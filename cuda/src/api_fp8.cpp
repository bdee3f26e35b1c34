// api_fp8.cpp: fsg_quantize_fp8 / fsg_dequantize_fp8, the standalone fp8 block encoding
// (fp8_math.h) for saving the activation ops' inputs (fsg_glu_backward takes the fp8 copy) and for
// reading what the fused forward saved.
#include "dispatch.h"
#include "guard.h"
#include "tensor_view.h"

using namespace fsg;

namespace {

// The quantized side: must be float8_e4m3fn with scales, shaped like `like`.
fsg_status view_quantized(const Call& call, const fsg_tensor* t, const char* name, const fsg_tensor* scale,
                          const char* scale_name, const RowsView& like, const char* like_name, Mat* out) {
  RowsView v;
  FSG_TRY(view_fp8_rows(call, t, name, scale, scale_name, &v));
  if (!v.mat.fp8()) {
    set_error("%s: %s: expected dtype float8_e4m3fn, got %s", call.fn, name, dtype_name(v.mat.dtype));
    return FSG_ERR_DTYPE;
  }
  FSG_TRY(expect_same_leading(call, name, v, like_name, like));
  FSG_TRY(expect_dim(call, name, "last dim", v.mat.cols, like.mat.cols));
  *out = v.mat;
  return FSG_OK;
}

}  // namespace

extern "C" {

FSG_API fsg_status fsg_quantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* dst,
                                    const fsg_tensor* scale) {
  const Call call{ctx, "fsg_quantize_fp8"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    RowsView sv;
    FSG_TRY(view_rows(call, src, "src", &sv));
    FSG_TRY(require(dst, call.fn, "dst"));
    Fp8ConvertArgs args;
    args.src = sv.mat;
    FSG_TRY(view_quantized(call, dst, "dst", scale, "scale", sv, "src", &args.dst));
    const Named outs[] = {{"dst", args.dst}, {"scale", scale_mat(args.dst)}};
    for (const Named& o : outs) FSG_TRY(expect_writable(call, o.name, o.mat));
    const Named ins[] = {{"src", sv.mat}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (sv.mat.rows == 0 || sv.mat.cols == 0) return FSG_OK;
    return run(ctx, args);
  });
}

FSG_API fsg_status fsg_dequantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* scale,
                                      const fsg_tensor* out) {
  const Call call{ctx, "fsg_dequantize_fp8"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    RowsView ov;
    FSG_TRY(require(out, call.fn, "out"));
    FSG_TRY(view_rows(call, out, "out", &ov));
    Fp8ConvertArgs args;
    args.dst = ov.mat;
    FSG_TRY(require(src, call.fn, "src"));
    FSG_TRY(view_quantized(call, src, "src", scale, "scale", ov, "out", &args.src));
    FSG_TRY(expect_writable(call, "out", args.dst));
    const Named outs[] = {{"out", args.dst}};
    const Named ins[] = {{"src", args.src}, {"scale", scale_mat(args.src)}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (ov.mat.rows == 0 || ov.mat.cols == 0) return FSG_OK;
    return run(ctx, args);
  });
}

}  // extern "C"
