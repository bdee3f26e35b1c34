// api_gemm.cpp: fsg_gemm, the library's own matmul (c = a·b + bias, optionally accumulated):
// the unfused baseline and the building block of linear layers.
#include "dispatch.h"
#include "guard.h"
#include "tensor_view.h"

using namespace fsg;

extern "C" {

FSG_API fsg_status fsg_gemm(fsg_context* ctx, const fsg_tensor* a, const fsg_tensor* b, const fsg_tensor* bias,
                            const fsg_tensor* c, int32_t accumulate) {
  const Call call{ctx, "fsg_gemm"};
  return guarded(call.fn, [&] {
    FSG_TRY(require(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    if (accumulate != 0 && accumulate != 1) {
      set_error("%s: accumulate: expected 0 or 1, got %d", call.fn, accumulate);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    RowsView av;
    GemmArgs args;
    FSG_TRY(view_rows(call, a, "a", &av));
    FSG_TRY(view_matrix(call, b, "b", &args.b0));
    const int64_t K = av.mat.cols, N = args.b0.cols;
    FSG_TRY(expect_dim(call, "b", "dim 0 (K, the last dim of a)", args.b0.rows, K));
    FSG_TRY(expect_dtype(call, "b", args.b0.dtype, av.mat.dtype, "a"));
    if (K == 0) {
      set_error("%s: a: the last dim (K) must be >= 1", call.fn);
      return FSG_ERR_SHAPE;
    }
    FSG_TRY(view_optional_vector(call, bias, "bias", N, &args.bias));
    if (args.bias.present()) FSG_TRY(expect_dtype(call, "bias", args.bias.dtype, av.mat.dtype, "a"));
    FSG_TRY(require(c, call.fn, "c"));
    FSG_TRY(view_rows_like(call, c, "c", av, "a", N, "last dim (N, dim 1 of b)", &args.c));
    FSG_TRY(expect_writable(call, "c", args.c));
    const Named outs[] = {{"c", args.c}};
    const Named ins[] = {{"a", av.mat}, {"b", args.b0}, {"bias", as_mat(args.bias)}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    if (av.mat.rows == 0 || N == 0) return FSG_OK;
    args.a0 = av.mat;
    args.accumulate = accumulate == 1;
    return run(ctx, args);
  });
}

}  // extern "C"
