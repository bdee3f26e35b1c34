// api_gemm.cpp: fsg_gemm, the library's own matmul (c = a·b + bias, optionally accumulated), and
// fsg_linear_backward, its gradients: the unfused baseline and the building block of linear layers.
#include "dispatch.h"
#include "guard.h"
#include "tensor_view.h"

using namespace fsg;

extern "C" {

FSG_API fsg_status fsg_gemm(fsg_context* ctx, const fsg_tensor* a, const fsg_tensor* b, const fsg_tensor* bias,
                            const fsg_tensor* c, int32_t accumulate) {
  const Call call{ctx, "fsg_gemm"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
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

extern "C" {

FSG_API fsg_status fsg_linear_backward(fsg_context* ctx, const fsg_tensor* dc, const fsg_tensor* a,
                                       const fsg_tensor* b, const fsg_tensor* da, const fsg_tensor* db,
                                       const fsg_tensor* dbias, uint32_t flags) {
  const Call call{ctx, "fsg_linear_backward"};
  return guarded(call.fn, [&] {
    FSG_TRY(require_live(ctx, call.fn, "ctx"));
    FSG_TRY(bind_device(ctx));
    bool accumulate = false;
    FSG_TRY(parse_backward_flags(call, flags, &accumulate));
    RowsView av, dcv;
    Mat bm, da_m, db_m;
    Vec dbias_v;
    FSG_TRY(view_rows(call, a, "a", &av));
    FSG_TRY(view_matrix(call, b, "b", &bm));
    const int64_t K = av.mat.cols, N = bm.cols;
    FSG_TRY(expect_dim(call, "b", "dim 0 (K, the last dim of a)", bm.rows, K));
    FSG_TRY(expect_dtype(call, "b", bm.dtype, av.mat.dtype, "a"));
    FSG_TRY(view_rows(call, dc, "dc", &dcv));
    FSG_TRY(expect_same_leading(call, "dc", dcv, "a", av));
    FSG_TRY(expect_dim(call, "dc", "last dim (N, dim 1 of b)", dcv.mat.cols, N));
    FSG_TRY(expect_dtype(call, "dc", dcv.mat.dtype, av.mat.dtype, "a"));
    FSG_TRY(view_rows_like(call, da, "da", av, "a", K, "last dim (K)", &da_m));
    FSG_TRY(view_matrix_grad(call, db, "db", K, N, av.mat.dtype, "a", &db_m));
    FSG_TRY(view_optional_vector(call, dbias, "dbias", N, &dbias_v));
    if (dbias_v.present()) FSG_TRY(expect_dtype(call, "dbias", dbias_v.dtype, av.mat.dtype, "a"));
    const Named outs[] = {{"da", da_m}, {"db", db_m}, {"dbias", as_mat(dbias_v)}};
    for (const Named& o : outs) FSG_TRY(expect_writable(call, o.name, o.mat));
    const Named ins[] = {{"dc", dcv.mat}, {"a", av.mat}, {"b", bm}};
    FSG_TRY(expect_no_alias(call, outs, ins));
    const int64_t M = av.mat.rows;
    if (M == 0 || N == 0) {  // sums of no terms: db and dbias (no rows) or da (no columns of dc) are zero
      if (accumulate) return FSG_OK;
      for (const Mat& m : {da_m, db_m, as_mat(dbias_v)}) FSG_TRY(zero_fill(ctx, m));
      return FSG_OK;
    }
    // K = 0: da and db are empty, dbias still sums dc.
    if (da_m.present() && K > 0) FSG_TRY(run(ctx, product(dcv.mat, transposed(bm), da_m, accumulate)));
    if (db_m.present() && K > 0) FSG_TRY(run(ctx, product(transposed(av.mat), dcv.mat, db_m, accumulate)));
    if (dbias_v.present()) FSG_TRY(run(ctx, ColumnSumArgs{dcv.mat, dbias_v, accumulate}));
    return FSG_OK;
  });
}

}  // extern "C"
