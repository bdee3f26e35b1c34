// backend.h: the internal contract between api.cpp (which validates every argument) and the two
// backends (cuda/src/*.cu and cuda/src/cpu/*.cpp), which trust what they are given.
//
// By the time a backend sees these structs:
// - every view is 2-D (or 1-D for vectors), byte_offset is folded into `data`, strides are in
//   elements and >= 0, sizes fit in int32 (rows, cols < 2^31) while offsets need int64;
// - every tensor of one call has the same dtype, except Vec::dtype of token weights;
// - outputs do not overlap inputs or each other; M, N, K >= 1 (empty calls never get here).
// Backends return FSG_OK or an error status after writing a message with fsg::set_error().
#pragma once
#include <cstdint>

#include "fused_swiglu.h"

// cudaStream_t is CUstream_st*; declared here so CPU-only files need no CUDA headers.
struct CUstream_st;

namespace fsg {

constexpr int kFp8Block = 32;  // columns sharing one fp8 scale (fp8_math.h)

// F8E4M3 and E8M0 appear only as saved pre-activations and their block scales (fp8_math.h).
enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, F8E4M3 = 3, E8M0 = 4 };

inline int dtype_bytes(DType t) {
  return t == DType::F32 ? 4 : (t == DType::F16 || t == DType::BF16) ? 2 : 1;
}

// A strided 2-D view: element (r, c) lives at data + (r * rs + c * cs) * sizeof(element).
struct Mat {
  void* data = nullptr;  // nullptr: absent (optional argument not given)
  int64_t rows = 0, cols = 0;
  int64_t rs = 0, cs = 0;
  DType dtype = DType::F32;
  // F8E4M3 views only (cs == 1): element (r, c)'s block scale byte is
  // scale[r * scale_rs + (scale_c0 + c) / kFp8Block]; scale_c0 is the view's first column within
  // the quantized rows (the up half of packed y starts at N).
  void* scale = nullptr;
  int64_t scale_rs = 0, scale_c0 = 0;
  bool present() const { return data != nullptr; }
  bool fp8() const { return dtype == DType::F8E4M3; }
};

// A strided 1-D view (biases [N], token weights [T]).
struct Vec {
  void* data = nullptr;
  int64_t n = 0;
  int64_t stride = 1;
  DType dtype = DType::F32;
  bool present() const { return data != nullptr; }
};

// The fused dual GEMM: A = x·Wg + bg, B = x·Wu + bu, both [M, N], accumulated in fp32 with the
// x tile shared by both products, followed by one of two epilogues:
//   kForward:  z = silu(A) * B; a_out = A and b_out = B when present (in the call's dtype, or
//              F8E4M3 with block scales: both fp8 or neither).
//   kBackward: (recompute mode) given dz, da = dz * B * silu'(A), db = dz * silu(A).
//              da/db are written in the call's dtype (they feed the dX/dW GEMMs).
// The gated activation of an op (see fsg_glu_params); the default is plain SwiGLU.
constexpr fsg_glu_params kPlainGlu{FSG_ACT_SILU, 1.0f, 0.0f, 0.0f, 1.0f, 1.0f};

struct DualGemmArgs {
  enum Epilogue : int32_t { kForward = 0, kBackward = 1 };
  Epilogue epilogue = kForward;
  fsg_glu_params act = kPlainGlu;  // silu/dsilu above stand for act's value and gradients
  Mat x;         // [M, K]
  Mat wg, wu;    // [K, N]
  Vec bg, bu;    // [N] optional
  Mat z, a_out, b_out;  // kForward: z required, a_out/b_out optional, all [M, N]
  Mat dz, da, db;       // kBackward: all three required, [M, N]
  // f16 calls may keep the sums in f16 (fsg_context_set_fp16_accumulation); the sm_80-family
  // kernels do, every other kernel and the CPU backend accumulate in fp32 regardless.
  bool fp16_accumulate = false;
};

// C = A0·B0 (+ A1·B1) (+ bias broadcast over rows) (+ C when accumulate), fp32 accumulation,
// C written in its dtype. The second product (a1/b1 present) shares M and N with the first and
// may have its own K; it gives dX = dA·Wg^T + dB·Wu^T in one pass.
struct GemmArgs {
  Mat a0, b0;  // [M, K0], [K0, N]
  Mat a1, b1;  // optional [M, K1], [K1, N]
  Vec bias;    // optional [N]
  Mat c;       // [M, N]
  bool accumulate = false;
  // Optional device scratch (256-byte aligned) for split-K partials: kernels that split K when the
  // output alone would leave the GPU idle use it if it is large enough (gemm_sm90.cu).
  void* scratch = nullptr;
  uint64_t scratch_bytes = 0;
  bool fp16_accumulate = false;  // as DualGemmArgs::fp16_accumulate
  // Length of the reduction: K0 (+ K1).
  int64_t reduction() const { return a0.cols + (a1.present() ? a1.cols : 0); }
};

// Elementwise GLU on separate gate/up views (packed halves of y, or stored pre-activations):
//   g = gate + bias_gate, u = up + bias_up, out = silu(g) * u * w[row]
struct GluForwardArgs {
  fsg_glu_params act = kPlainGlu;  // silu stands for act's value (see activation_math.h)
  Mat gate, up;          // [M, N]
  Vec bias_gate, bias_up;  // optional [N]
  Vec weights;           // optional [M] (token weights; dtype may differ: F32 or the call's)
  Mat out;               // [M, N]
};

// Its backward: dgate = dout*w * u * silu'(g), dup = dout*w * silu(g),
// dweights[row] = sum_n dout * silu(g) * u (written in weights' dtype, fixed summation order).
// gate and up may both be F8E4M3 (saved in fp8); everything else has dout's dtype.
struct GluBackwardArgs {
  fsg_glu_params act = kPlainGlu;
  Mat dout, gate, up;      // [M, N]
  Vec bias_gate, bias_up;  // optional [N]
  Vec weights;             // optional [M]
  Mat dgate, dup;          // [M, N] outputs, required
  Vec dweights;            // optional [M] output (requires weights)
};

// fp8 block quantization (fp8_math.h): dst (F8E4M3 with scales) from src, or the reverse.
struct Fp8ConvertArgs {
  Mat src, dst;  // same shape; exactly one of them is F8E4M3
};

// dst[c] (+)= sum over rows r of src(r, c), in a fixed order (deterministic), fp32 accumulation.
struct ColumnSumArgs {
  Mat src;  // [M, N]
  Vec dst;  // [N]
  bool accumulate = false;
};

// Thread-local error message (defined in api.cpp). printf-style; never prints.
void set_error(const char* fmt, ...);

// ---- CUDA backend (cuda/src/*.cu). `kernel_path` is the context's (see kernels.h); `sm90`:
// the sm_90a kernels run on the device (fsg_context::sm90_kernels). ----
using Stream = ::CUstream_st*;
// code_probe.cu: on the current device (ordinal `device`, compute capability `cc`, for messages),
// whether the loaded code has the sm_90a kernels' bodies; FSG_ERR_NO_DEVICE when the library
// carries no code the device can run.
fsg_status cuda_probe_code(int device, const char* device_name, int cc, bool* out_sm90);
fsg_status cuda_dual_gemm(const DualGemmArgs& a, Stream s, int kernel_path, bool sm90);
fsg_status cuda_gemm(const GemmArgs& a, Stream s, int kernel_path, bool sm90);
fsg_status cuda_glu_forward(const GluForwardArgs& a, Stream s);
fsg_status cuda_glu_backward(const GluBackwardArgs& a, Stream s);
fsg_status cuda_column_sum(const ColumnSumArgs& a, Stream s);
fsg_status cuda_fp8_convert(const Fp8ConvertArgs& a, Stream s);

// ---- CPU backend (cuda/src/cpu/*.cpp), `threads` >= 1 workers. ----
fsg_status cpu_dual_gemm(const DualGemmArgs& a, int threads);
fsg_status cpu_gemm(const GemmArgs& a, int threads);
fsg_status cpu_glu_forward(const GluForwardArgs& a, int threads);
fsg_status cpu_glu_backward(const GluBackwardArgs& a, int threads);
fsg_status cpu_column_sum(const ColumnSumArgs& a, int threads);
fsg_status cpu_fp8_convert(const Fp8ConvertArgs& a, int threads);

}  // namespace fsg
