/*
 * fused_swiglu.h: the C ABI of libfusedswiglu.so, the one contract between the kernels and
 * everything that calls them (the Bun bindings in src/ffi.ts, or any C/C++/Rust/Python caller).
 *
 *   z = silu(x·Wg + bg) ⊙ (x·Wu + bu)
 *
 * Conventions
 * - Every entry point returns fsg_status. On failure, fsg_last_error() returns a thread-local
 *   message naming the argument, what was expected and what was seen. Nothing exits, aborts,
 *   prints or lets a C++ exception escape.
 * - Nothing synchronizes with the device unless its name says so ("synchronize"). Work is
 *   enqueued on the context's current stream (the CPU backend runs it before returning).
 * - Tensors are described by fsg_tensor, layout-compatible with DLPack's DLTensor. Strides are
 *   in elements; strides == NULL means compact row-major. Every weight layout is a stride
 *   pattern over the same memory (see README, "Layouts"): the kernels never need a copy.
 * - Optional tensor arguments are NULL when absent. Release/destroy functions accept NULL.
 * - Device pointers and handles are plain 64-bit values (bun:ffi passes them as BigInt).
 */
#ifndef FUSED_SWIGLU_H
#define FUSED_SWIGLU_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define FSG_API __declspec(dllexport)
#else
#define FSG_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of a signature or struct below. */
#define FSG_ABI_VERSION 5

typedef enum fsg_status {
  FSG_OK = 0,
  FSG_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad flag or value */
  FSG_ERR_SHAPE = 2,            /* rank or size mismatch between arguments */
  FSG_ERR_DTYPE = 3,            /* unsupported dtype or dtypes that do not match */
  FSG_ERR_LAYOUT = 4,           /* strides the kernels cannot take (negative, overlapping outputs) */
  FSG_ERR_ALIAS = 5,            /* an output overlaps an input or another output */
  FSG_ERR_DEVICE_MISMATCH = 6,  /* tensor lives on another device/backend than the context */
  FSG_ERR_TOO_LARGE = 7,        /* a dimension beyond what the kernels index */
  FSG_ERR_NO_DEVICE = 8,        /* no CUDA device or driver, a GPU older than compute capability
                                   8.0, or one this build carries no code for (use the CPU
                                   backend, or rebuild: fsg_cuda_archs) */
  FSG_ERR_OUT_OF_MEMORY = 9,
  FSG_ERR_CUDA = 10,            /* any other CUDA runtime error; the message carries its name */
  FSG_ERR_NOT_READY = 11,       /* fsg_event_query / fsg_stream_query: work still pending */
  FSG_ERR_INTERNAL = 12,        /* a bug in this library: please report the message */
} fsg_status;

typedef enum fsg_backend {
  FSG_BACKEND_AUTO = 0, /* CUDA when the machine has a GPU of compute capability 8.0 or newer
                           (a device_ordinal it lacks is then an error), else CPU */
  FSG_BACKEND_CUDA = 1,
  FSG_BACKEND_CPU = 2,
} fsg_backend;

/* ---- DLPack-compatible tensor descriptor (same layout as DLTensor, dlpack.h v0.8+) ---- */
typedef enum fsg_device_type { FSG_DEVICE_CPU = 1, FSG_DEVICE_CUDA = 2 } fsg_device_type;
typedef enum fsg_dtype_code {
  FSG_DTYPE_FLOAT = 2,
  FSG_DTYPE_BFLOAT = 4,
  FSG_DTYPE_FLOAT8_E4M3FN = 10, /* {10,8,1}: saved pre-activations (see "fp8 storage" below) */
  FSG_DTYPE_FLOAT8_E8M0FNU = 14 /* {14,8,1}: their power-of-two block scales */
} fsg_dtype_code;

typedef struct fsg_device { int32_t device_type; int32_t device_id; } fsg_device;
typedef struct fsg_dtype { uint8_t code; uint8_t bits; uint16_t lanes; } fsg_dtype;

typedef struct fsg_tensor {
  void* data;           /* base pointer (device memory on CUDA, host memory on CPU) */
  fsg_device device;    /* FSG_DEVICE_CUDA + ordinal, or FSG_DEVICE_CPU + 0 */
  int32_t ndim;
  fsg_dtype dtype;      /* {2,32,1} f32, {2,16,1} f16, {4,16,1} bf16 */
  const int64_t* shape; /* ndim entries */
  const int64_t* strides; /* ndim entries, in elements, or NULL for compact row-major */
  uint64_t byte_offset; /* added to data */
} fsg_tensor;

/* ---- library ---- */
FSG_API int32_t fsg_abi_version(void);
FSG_API const char* fsg_version_string(void);           /* e.g. "0.1.0" */
FSG_API const char* fsg_status_string(fsg_status status); /* "FSG_ERR_SHAPE", never NULL */
/* The GPU code this library carries, from FSG_CUDA_ARCHS at build time: SASS per architecture
 * and the PTX newer GPUs JIT-compile, e.g. "sm_80 sm_86 sm_89 sm_90a compute_90". */
FSG_API const char* fsg_cuda_archs(void);
FSG_API const char* fsg_last_error(void); /* the message of this thread's most recent call: its
                                            failure, or "" when it succeeded */
FSG_API fsg_status fsg_cuda_device_count(int32_t* out_count); /* 0 (and FSG_OK) without a GPU */

/* ---- context: a backend, a device and a current stream ---- */
typedef struct fsg_context fsg_context;
typedef struct fsg_stream fsg_stream;
typedef struct fsg_event fsg_event;

/* backend: 0 auto (CUDA when a GPU exists and has compute capability 8.0 or newer, else the CPU),
 * 1 CUDA, 2 CPU. A CUDA context is refused with FSG_ERR_NO_DEVICE, also under auto, when the
 * library carries no code its GPU can run (neither its SASS nor PTX it can JIT: fsg_cuda_archs). */
FSG_API fsg_status fsg_context_create(int32_t backend, int32_t device_ordinal, fsg_context** out);
/* Destroys ctx (NULL: nothing to do). Every handle the library hands out (context, stream, event,
 * graph) is tracked until destroyed: a destroyed or unknown handle given to any call, a second
 * destroy included, is refused with FSG_ERR_INVALID_ARGUMENT. */
FSG_API fsg_status fsg_context_destroy(fsg_context* ctx);
FSG_API fsg_status fsg_context_backend(const fsg_context* ctx, int32_t* out_backend); /* CUDA or CPU */
/* Device name, NUL-terminated and truncated to capacity ("CPU (n threads)" on the CPU backend). */
FSG_API fsg_status fsg_context_device_name(const fsg_context* ctx, char* buf, uint64_t capacity);
/* Compute capability as major*10+minor (0 on CPU). */
FSG_API fsg_status fsg_context_compute_capability(const fsg_context* ctx, int32_t* out);
/* 1 when the sm_90a (Hopper wgmma/TMA) kernels run on this context's device: compute capability
 * 9.0 and a library built with 90a in FSG_CUDA_ARCHS. Elsewhere 0 (the CPU backend too): on CUDA,
 * kernel path 0 then takes the sm_80 kernels and path 90 is refused. */
FSG_API fsg_status fsg_context_sm90_kernels(const fsg_context* ctx, int32_t* out);
/* Work of this context goes to `stream` (NULL: the default stream). */
FSG_API fsg_status fsg_context_set_stream(fsg_context* ctx, fsg_stream* stream);
FSG_API fsg_status fsg_context_synchronize(fsg_context* ctx); /* waits for the current stream */
FSG_API fsg_status fsg_context_mem_info(const fsg_context* ctx, uint64_t* out_free, uint64_t* out_total);
/* CPU backend worker threads (0: hardware concurrency). Ignored on CUDA. */
FSG_API fsg_status fsg_context_set_num_threads(fsg_context* ctx, int32_t threads);
/* Chooses the kernel family on CUDA, for tests and benchmarks: 0 auto (by device and shape),
 * 1 the small-M (decode) kernels wherever they apply (for fsg_gemm and the backward GEMMs: the
 * short-reduction and few-row kernels), 80 always the sm_80 mma.sync kernels,
 * 90 the sm_90a wgmma kernels wherever they apply (only where fsg_context_sm90_kernels). Calls a
 * family cannot take fall back to the sm_80 kernels. Ignored on the CPU backend. */
FSG_API fsg_status fsg_context_set_kernel_path(fsg_context* ctx, int32_t path);
/* fp16 accumulation (fattorib's FastAccumFusedSwiGLU), off by default. allow = 1 lets the GEMMs of
 * f16 calls (fused forward, recompute backward, dX, dW, fsg_gemm, fsg_linear_backward) keep
 * their running sums in fp16, which GeForce GPUs (sm_86, sm_89) run at twice the rate of fp32
 * accumulation. It is a permission, like cuBLAS's CUBLAS_COMPUTE_32F_FAST_16F: the sm_80 mma.sync
 * kernels (every GPU before Hopper, and kernel path 80) take it; the Hopper, small-M and CPU
 * kernels, where it would gain nothing, accumulate in fp32 regardless, as do bf16 and f32 calls.
 * Error: each output's sum is rounded to fp16 once per 16 terms of K, so a sum of K products
 * errs by up to about ceil(K/16) * 2^-10 times sum|x_k * w_k| (README, "fp16 accumulation"), and a
 * partial sum beyond 65504 overflows to infinity. allow must be 0 or 1. */
FSG_API fsg_status fsg_context_set_fp16_accumulation(fsg_context* ctx, int32_t allow);
FSG_API fsg_status fsg_context_fp16_accumulation(const fsg_context* ctx, int32_t* out_allow);

/* ---- memory (stream-ordered on the current stream) ---- */
FSG_API fsg_status fsg_malloc(fsg_context* ctx, uint64_t bytes, uint64_t* out_ptr);
FSG_API fsg_status fsg_free(fsg_context* ctx, uint64_t ptr); /* 0 is accepted */
FSG_API fsg_status fsg_memcpy_h2d_async(fsg_context* ctx, uint64_t dst, const void* src, uint64_t bytes);
FSG_API fsg_status fsg_memcpy_d2h_async(fsg_context* ctx, void* dst, uint64_t src, uint64_t bytes);
FSG_API fsg_status fsg_memcpy_d2d_async(fsg_context* ctx, uint64_t dst, uint64_t src, uint64_t bytes);
FSG_API fsg_status fsg_memset_async(fsg_context* ctx, uint64_t dst, int32_t byte_value, uint64_t bytes);

/* ---- streams and events (on CPU: work is done on return; events record host time) ---- */
FSG_API fsg_status fsg_stream_create(fsg_context* ctx, fsg_stream** out);
FSG_API fsg_status fsg_stream_destroy(fsg_context* ctx, fsg_stream* stream);
FSG_API fsg_status fsg_stream_query(fsg_context* ctx, fsg_stream* stream); /* OK or NOT_READY */
FSG_API fsg_status fsg_stream_synchronize(fsg_context* ctx, fsg_stream* stream);
FSG_API fsg_status fsg_event_create(fsg_context* ctx, fsg_event** out);
FSG_API fsg_status fsg_event_destroy(fsg_context* ctx, fsg_event* event);
FSG_API fsg_status fsg_event_record(fsg_context* ctx, fsg_event* event); /* on the current stream */
FSG_API fsg_status fsg_event_query(fsg_context* ctx, fsg_event* event);  /* OK or NOT_READY */
FSG_API fsg_status fsg_event_synchronize(fsg_context* ctx, fsg_event* event);
FSG_API fsg_status fsg_event_elapsed_ms(fsg_context* ctx, fsg_event* start, fsg_event* end, float* out_ms);

/* ---- CUDA graphs: record a context's work once, replay it with one launch (decode steps) ----
 * fsg_graph_begin starts capturing the context's work: on its current stream, or, when that is
 * the default stream (which CUDA cannot capture), on a stream made for the capture. Ops called
 * until fsg_graph_end are recorded, not run; they must use buffers allocated before the capture
 * (workspace included) that stay allocated while the graph is replayed. fsg_graph_end ends the
 * capture and returns the instantiated graph; fsg_graph_launch enqueues it on the context's
 * current stream (reading whatever the captured buffers hold at that time). Capture is
 * thread-local: begin and end on one thread (fsg_graph_end, or a refused call, on another thread
 * returns FSG_ERR_INVALID_ARGUMENT and the capture goes on). CPU contexts: FSG_ERR_INVALID_ARGUMENT.
 * During a capture, calls a graph cannot hold (fsg_context_synchronize, stream/event synchronize
 * and query, fsg_malloc, fsg_free, copies from/to pageable host memory, fsg_context_set_stream,
 * destroying the captured stream) return FSG_ERR_INVALID_ARGUMENT naming why; the capture is then
 * abandoned at once (the context works normally again) and fsg_graph_end reports it. */
typedef struct fsg_graph fsg_graph;
FSG_API fsg_status fsg_graph_begin(fsg_context* ctx);
FSG_API fsg_status fsg_graph_end(fsg_context* ctx, fsg_graph** out);
FSG_API fsg_status fsg_graph_launch(fsg_context* ctx, fsg_graph* graph);
FSG_API fsg_status fsg_graph_node_count(const fsg_graph* graph, uint64_t* out_nodes); /* kernels, copies, ... */
FSG_API fsg_status fsg_graph_destroy(fsg_context* ctx, fsg_graph* graph);

/* ---- ops ----
 * Shapes: x [..., K] (leading dims are M, they must collapse to one row stride), weights are
 * logical [K, N] views with any non-negative strides (nn.Linear [N,K] is the transposed view,
 * packed [K,2N] halves and interleaved columns are offset views), biases [N], z [..., N].
 * All tensors of one call share one dtype (f32, f16, bf16); token weights may also be f32.
 * Accumulation is fp32 (f16 calls: see fsg_context_set_fp16_accumulation); SiLU is evaluated in
 * fp32 and is finite for every finite input. */

/* The gated activation: out = act(clamp(gate_scale * g)) * (clamp(u) + up_offset) * out_scale,
 * for gate pre-activation g and up pre-activation u. Passing NULL means plain SwiGLU, and so do
 * the defaults below (fsg_glu_params_default). Variants (Shazeer, "GLU Variants Improve
 * Transformer"; gpt-oss; Falcon-H1):
 *   SwiGLU  act = x * sigmoid(alpha * x)  (alpha 1; gpt-oss uses 1.702 with limit 7, up_offset 1)
 *   GEGLU   act = gelu(x), tanh approximation or exact (erf)
 *   ReGLU   act = max(x, 0)
 *   bilinear act = x
 * limit > 0 clamps the gate from above and the up branch to [-limit, limit] (gpt-oss); 0 turns
 * clamping off. gate_scale and out_scale are Falcon-H1's gate and down multipliers (the down
 * multiplier commutes with the down projection, so it is applied to the output here). */
typedef enum fsg_activation {
  FSG_ACT_SILU = 0,
  FSG_ACT_GELU_TANH = 1,
  FSG_ACT_GELU_ERF = 2,
  FSG_ACT_RELU = 3,
  FSG_ACT_IDENTITY = 4,
} fsg_activation;

typedef struct fsg_glu_params {
  int32_t activation; /* fsg_activation */
  float alpha;        /* SiLU only: x * sigmoid(alpha * x); 1 by default */
  float limit;        /* > 0: gate <= limit, -limit <= up <= limit; 0: no clamping */
  float up_offset;    /* added to the (clamped) up branch; 0 by default, 1 for gpt-oss */
  float gate_scale;   /* multiplies the gate pre-activation first; 1 by default */
  float out_scale;    /* multiplies the output; 1 by default */
} fsg_glu_params;

/* The plain SwiGLU parameters {FSG_ACT_SILU, 1, 0, 0, 1, 1}. */
FSG_API fsg_glu_params fsg_glu_params_default(void);

/* fp8 storage of what backward keeps (Megatron's fp8_input_store, done with scales): a saved
 * tensor [..., C] may be float8_e4m3fn (rows contiguous: last stride 1) with a float8_e8m0fnu
 * scale tensor [..., ceil(C / 32)] (same leading dims, last stride 1). Each run of 32 columns of a
 * row (a block, as in OCP MXFP8) shares one power-of-two scale 2^s, s the smallest integer with
 * max|v| <= 448 * 2^s (so nothing saturates; 448 is e4m3's largest value), clamped to e8m0's
 * least, -127 (a block below about 2^-118 loses precision, and below 2^-136 reads as 0), and holds
 * round-to-nearest-even(v / 2^s). An all-zero block gets s = 0; a block holding NaN or Inf gets
 * the NaN scale 0xFF: its values read as NaN, and what is computed from them is NaN except where
 * a derivative or a clamp gives an exact zero (ReLU, the gpt-oss clamps) or one (identity). Relative error per element <= 2^-4
 * of its value, plus 2^-10 * 2^s for values far below the block's largest. Where a scale argument
 * exists, it must be given exactly when its tensor is fp8. */

/* Fused forward in one kernel launch. a_out/b_out (optional, [..., N]) receive the
 * pre-activations x·Wg+bg and x·Wu+bu for the stored-mode backward, in x's dtype or in fp8
 * with their scales a_scale/b_scale (the quantization happens in the kernel's epilogue). */
FSG_API fsg_status fsg_swiglu_forward(fsg_context* ctx, const fsg_tensor* x, const fsg_tensor* w_gate,
                                      const fsg_tensor* w_up, const fsg_tensor* b_gate, const fsg_tensor* b_up,
                                      const fsg_tensor* z, const fsg_tensor* a_out, const fsg_tensor* b_out,
                                      const fsg_tensor* a_scale, const fsg_tensor* b_scale,
                                      const fsg_glu_params* act);

#define FSG_BACKWARD_ACCUMULATE 1u /* add into dx/dw/db instead of overwriting them */

/* Bytes of scratch fsg_swiglu_backward needs for this x ([..., K]) and n hidden features on ctx's
 * device: the [M, 2N] gradients of the pre-activations in x's dtype, plus, on Hopper where the
 * dX or dW GEMM alone would leave SMs idle (a few hundred rows, or a short K), room for their
 * split-K partials (summed in a fixed order: still deterministic). FSG_ERR_TOO_LARGE past 2^62
 * bytes. */
FSG_API fsg_status fsg_swiglu_backward_workspace_size(fsg_context* ctx, const fsg_tensor* x, int64_t n,
                                                      uint64_t* out_bytes);

/* Backward. Stored mode: a_saved and b_saved both given (from fsg_swiglu_forward; fp8 ones with
 * their scales a_scale/b_scale). Recompute
 * mode: both NULL; the pre-activations are recomputed from x, weights and biases. Each of dx,
 * dw_gate, dw_up, db_gate, db_up is computed only when non-NULL (frozen weights pass NULL).
 * Gradient tensors have the shapes of what they differentiate (dw_* are [K, N] views with any
 * non-overlapping strides). workspace: device memory of fsg_swiglu_backward_workspace_size bytes,
 * 256-byte aligned; at least M * 2N elements of x's dtype (with less than the full size the GEMMs
 * do not split K). The bytes the call uses there must not hold any tensor of the call
 * (FSG_ERR_ALIAS). With n = 0, dx is zero (a sum of no terms). flags: FSG_BACKWARD_ACCUMULATE. */
FSG_API fsg_status fsg_swiglu_backward(fsg_context* ctx, const fsg_tensor* dz, const fsg_tensor* x,
                                       const fsg_tensor* w_gate, const fsg_tensor* w_up, const fsg_tensor* b_gate,
                                       const fsg_tensor* b_up, const fsg_tensor* a_saved, const fsg_tensor* b_saved,
                                       const fsg_tensor* a_scale, const fsg_tensor* b_scale, const fsg_tensor* dx, const fsg_tensor* dw_gate, const fsg_tensor* dw_up,
                                       const fsg_tensor* db_gate, const fsg_tensor* db_up, uint32_t flags,
                                       uint64_t workspace, uint64_t workspace_bytes, const fsg_glu_params* act);

/* Megatron-style activation on packed y [..., 2N] (gate half first):
 *   out = silu(y1 + bias1) * (y2 + bias2) * weights     (or another `act`, NULL: SwiGLU)
 * bias [2N] and token weights [T, 1] (T = rows of y) are optional; both may be given. */
FSG_API fsg_status fsg_glu_forward(fsg_context* ctx, const fsg_tensor* y, const fsg_tensor* bias,
                                   const fsg_tensor* weights, const fsg_tensor* out, const fsg_glu_params* act);
/* Its backward: dy [..., 2N] (required), dweights [T, 1] (optional, needs weights), dbias [2N]
 * (optional, needs bias; the sum of dy over rows). Always overwrites. y may be the fp8 copy made
 * by fsg_quantize_fp8 (y_scale its scales; NULL otherwise); dy then has dout's dtype. */
FSG_API fsg_status fsg_glu_backward(fsg_context* ctx, const fsg_tensor* dout, const fsg_tensor* y,
                                    const fsg_tensor* y_scale, const fsg_tensor* bias, const fsg_tensor* weights, const fsg_tensor* dy,
                                    const fsg_tensor* dweights, const fsg_tensor* dbias, const fsg_glu_params* act);

/* fp8 block quantization (see "fp8 storage" above): dst [..., C] float8_e4m3fn and scale
 * [..., ceil(C/32)] float8_e8m0fnu from src [..., C] (f32/f16/bf16), and back into out (src's
 * shape, f32/f16/bf16). The same encoding as the fused forward's fp8 a_out/b_out. */
FSG_API fsg_status fsg_quantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* dst,
                                    const fsg_tensor* scale);
FSG_API fsg_status fsg_dequantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* scale,
                                      const fsg_tensor* out);

/* GEMM with optional bias: c [M, N] = a [M, K] · b [K, N] + bias [N] (+ c when accumulate).
 * The library's own matmul: the unfused baseline and the building block of linear layers. */
FSG_API fsg_status fsg_gemm(fsg_context* ctx, const fsg_tensor* a, const fsg_tensor* b, const fsg_tensor* bias,
                            const fsg_tensor* c, int32_t accumulate);

/* Linear layer backward, for c = a·b + bias (fsg_gemm): da = dc·b^T [M, K], db = a^T·dc [K, N]
 * (any non-overlapping strides, e.g. the nn.Linear [N, K] storage seen transposed), dbias = the
 * sum of dc over rows [N]. Each output is computed only when non-NULL; one that sums no terms
 * (M = 0 for db and dbias, N = 0 for da) is zero. flags: FSG_BACKWARD_ACCUMULATE adds into the
 * outputs. */
FSG_API fsg_status fsg_linear_backward(fsg_context* ctx, const fsg_tensor* dc, const fsg_tensor* a,
                                       const fsg_tensor* b, const fsg_tensor* da, const fsg_tensor* db,
                                       const fsg_tensor* dbias, uint32_t flags);

#ifdef __cplusplus
}
#endif
#endif /* FUSED_SWIGLU_H */
