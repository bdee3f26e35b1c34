// dispatch.h: sends a validated op to the context's backend (CUDA kernels or CPU loops).
#pragma once
#include "context.h"

namespace fsg {

inline bool on_cuda(const fsg_context* ctx) { return ctx->backend == FSG_BACKEND_CUDA; }

// The GEMMs take the context's fp16-accumulation permission along (the CPU backend ignores it).
inline fsg_status run(const fsg_context* ctx, const DualGemmArgs& a) {
  if (!on_cuda(ctx)) return cpu_dual_gemm(a, ctx->threads);
  DualGemmArgs args = a;
  args.fp16_accumulate = ctx->fp16_accumulate;
  return cuda_dual_gemm(args, ctx->stream, ctx->kernel_path, ctx->sm90_kernels);
}
inline fsg_status run(const fsg_context* ctx, const GemmArgs& a) {
  if (!on_cuda(ctx)) return cpu_gemm(a, ctx->threads);
  GemmArgs args = a;
  args.fp16_accumulate = ctx->fp16_accumulate;
  return cuda_gemm(args, ctx->stream, ctx->kernel_path, ctx->sm90_kernels);
}
inline fsg_status run(const fsg_context* ctx, const GluForwardArgs& a) {
  return on_cuda(ctx) ? cuda_glu_forward(a, ctx->stream) : cpu_glu_forward(a, ctx->threads);
}
inline fsg_status run(const fsg_context* ctx, const GluBackwardArgs& a) {
  return on_cuda(ctx) ? cuda_glu_backward(a, ctx->stream) : cpu_glu_backward(a, ctx->threads);
}
inline fsg_status run(const fsg_context* ctx, const ColumnSumArgs& a) {
  return on_cuda(ctx) ? cuda_column_sum(a, ctx->stream) : cpu_column_sum(a, ctx->threads);
}
inline fsg_status run(const fsg_context* ctx, const Fp8ConvertArgs& a) {
  return on_cuda(ctx) ? cuda_fp8_convert(a, ctx->stream) : cpu_fp8_convert(a, ctx->threads);
}

// c (+)= a·b: the single-product GEMM of the backward passes.
inline GemmArgs product(const Mat& a, const Mat& b, const Mat& c, bool accumulate) {
  GemmArgs g;
  g.a0 = a;
  g.b0 = b;
  g.c = c;
  g.accumulate = accumulate;
  return g;
}

// Writes zeros into every element of a strided view (gradients of an empty batch).
fsg_status zero_fill(const fsg_context* ctx, const Mat& m);

}  // namespace fsg
