// ffi.ts: the only dlopen of libfusedswiglu.so. Every symbol is declared once, with its C
// signature (cuda/include/fused_swiglu.h) beside it.
//
// Pointer arguments, host or device, are declared `u64` and passed as BigInt: a JS number passed
// as `ptr` has been seen corrupted into 0xFFFF... on Linux x64 (oven-sh/bun#29346). Host
// pointers come from `hostPtr(typedArray)`; the caller keeps the array referenced until the call
// (and any async copy from it) completes. The library is never closed.
//
// Lookup: $FUSED_SWIGLU_LIB, else <package root>/build/libfusedswiglu.so (`bun run build`).
// FUSED_SWIGLU_TRACE=1 prints every call (name, arguments, status) to stderr.
import { dlopen, ptr, type FFIFunction } from "bun:ffi";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FusedSwiGLUError, registerLastErrorSource, statusName } from "./errors.ts";

/** The ABI version this binding was written against (FSG_ABI_VERSION). */
export const ABI_VERSION = 5;
const MIN_BUN = [1, 4] as const;

const u64 = "u64" as const;
const i32 = "i32" as const;
const symbols = {
  // int32_t fsg_abi_version(void)
  fsg_abi_version: { args: [], returns: i32 },
  // const char* fsg_version_string(void)
  fsg_version_string: { args: [], returns: "cstring" },
  // const char* fsg_status_string(fsg_status status)
  fsg_status_string: { args: [i32], returns: "cstring" },
  // const char* fsg_last_error(void)
  fsg_last_error: { args: [], returns: "cstring" },
  // const char* fsg_cuda_archs(void)
  fsg_cuda_archs: { args: [], returns: "cstring" },
  // fsg_status fsg_cuda_device_count(int32_t* out_count)
  fsg_cuda_device_count: { args: [u64], returns: i32 },

  // fsg_status fsg_context_create(int32_t backend, int32_t device_ordinal, fsg_context** out)
  fsg_context_create: { args: [i32, i32, u64], returns: i32 },
  // fsg_status fsg_context_destroy(fsg_context* ctx)
  fsg_context_destroy: { args: [u64], returns: i32 },
  // fsg_status fsg_context_backend(const fsg_context* ctx, int32_t* out_backend)
  fsg_context_backend: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_context_device_name(const fsg_context* ctx, char* buf, uint64_t capacity)
  fsg_context_device_name: { args: [u64, u64, u64], returns: i32 },
  // fsg_status fsg_context_compute_capability(const fsg_context* ctx, int32_t* out)
  fsg_context_compute_capability: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_context_sm90_kernels(const fsg_context* ctx, int32_t* out)
  fsg_context_sm90_kernels: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_context_set_stream(fsg_context* ctx, fsg_stream* stream)
  fsg_context_set_stream: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_context_synchronize(fsg_context* ctx)
  fsg_context_synchronize: { args: [u64], returns: i32 },
  // fsg_status fsg_context_mem_info(const fsg_context* ctx, uint64_t* out_free, uint64_t* out_total)
  fsg_context_mem_info: { args: [u64, u64, u64], returns: i32 },
  // fsg_status fsg_context_set_num_threads(fsg_context* ctx, int32_t threads)
  fsg_context_set_num_threads: { args: [u64, i32], returns: i32 },
  // fsg_status fsg_context_set_kernel_path(fsg_context* ctx, int32_t path)
  fsg_context_set_kernel_path: { args: [u64, i32], returns: i32 },
  // fsg_status fsg_context_set_fp16_accumulation(fsg_context* ctx, int32_t allow)
  fsg_context_set_fp16_accumulation: { args: [u64, i32], returns: i32 },
  // fsg_status fsg_context_fp16_accumulation(const fsg_context* ctx, int32_t* out_allow)
  fsg_context_fp16_accumulation: { args: [u64, u64], returns: i32 },

  // fsg_status fsg_malloc(fsg_context* ctx, uint64_t bytes, uint64_t* out_ptr)
  fsg_malloc: { args: [u64, u64, u64], returns: i32 },
  // fsg_status fsg_free(fsg_context* ctx, uint64_t ptr)
  fsg_free: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_memcpy_h2d_async(fsg_context* ctx, uint64_t dst, const void* src, uint64_t bytes)
  fsg_memcpy_h2d_async: { args: [u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_memcpy_d2h_async(fsg_context* ctx, void* dst, uint64_t src, uint64_t bytes)
  fsg_memcpy_d2h_async: { args: [u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_memcpy_d2d_async(fsg_context* ctx, uint64_t dst, uint64_t src, uint64_t bytes)
  fsg_memcpy_d2d_async: { args: [u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_memset_async(fsg_context* ctx, uint64_t dst, int32_t byte_value, uint64_t bytes)
  fsg_memset_async: { args: [u64, u64, i32, u64], returns: i32 },

  // fsg_status fsg_stream_create(fsg_context* ctx, fsg_stream** out)
  fsg_stream_create: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_stream_destroy(fsg_context* ctx, fsg_stream* stream)
  fsg_stream_destroy: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_stream_query(fsg_context* ctx, fsg_stream* stream)
  fsg_stream_query: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_stream_synchronize(fsg_context* ctx, fsg_stream* stream)
  fsg_stream_synchronize: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_create(fsg_context* ctx, fsg_event** out)
  fsg_event_create: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_destroy(fsg_context* ctx, fsg_event* event)
  fsg_event_destroy: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_record(fsg_context* ctx, fsg_event* event)
  fsg_event_record: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_query(fsg_context* ctx, fsg_event* event)
  fsg_event_query: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_synchronize(fsg_context* ctx, fsg_event* event)
  fsg_event_synchronize: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_event_elapsed_ms(fsg_context* ctx, fsg_event* start, fsg_event* end, float* out_ms)
  fsg_event_elapsed_ms: { args: [u64, u64, u64, u64], returns: i32 },

  // fsg_status fsg_graph_begin(fsg_context* ctx)
  fsg_graph_begin: { args: [u64], returns: i32 },
  // fsg_status fsg_graph_end(fsg_context* ctx, fsg_graph** out)
  fsg_graph_end: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_graph_launch(fsg_context* ctx, fsg_graph* graph)
  fsg_graph_launch: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_graph_node_count(const fsg_graph* graph, uint64_t* out_nodes)
  fsg_graph_node_count: { args: [u64, u64], returns: i32 },
  // fsg_status fsg_graph_destroy(fsg_context* ctx, fsg_graph* graph)
  fsg_graph_destroy: { args: [u64, u64], returns: i32 },

  // fsg_status fsg_swiglu_forward(fsg_context* ctx, const fsg_tensor* x, const fsg_tensor* w_gate,
  //   const fsg_tensor* w_up, const fsg_tensor* b_gate, const fsg_tensor* b_up,
  //   const fsg_tensor* z, const fsg_tensor* a_out, const fsg_tensor* b_out, const fsg_tensor* a_scale,
  //   const fsg_tensor* b_scale, const fsg_glu_params* act)
  fsg_swiglu_forward: { args: [u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_swiglu_backward_workspace_size(fsg_context* ctx, const fsg_tensor* x, int64_t n,
  //   uint64_t* out_bytes)
  fsg_swiglu_backward_workspace_size: { args: [u64, u64, "i64", u64], returns: i32 },
  // fsg_status fsg_swiglu_backward(fsg_context* ctx, const fsg_tensor* dz, const fsg_tensor* x,
  //   const fsg_tensor* w_gate, const fsg_tensor* w_up, const fsg_tensor* b_gate, const fsg_tensor* b_up,
  //   const fsg_tensor* a_saved, const fsg_tensor* b_saved, const fsg_tensor* a_scale,
  //   const fsg_tensor* b_scale, const fsg_tensor* dx, const fsg_tensor* dw_gate, const fsg_tensor* dw_up,
  //   const fsg_tensor* db_gate, const fsg_tensor* db_up, uint32_t flags, uint64_t workspace,
  //   uint64_t workspace_bytes, const fsg_glu_params* act)
  fsg_swiglu_backward: {
    args: [u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, "u32", u64, u64, u64],
    returns: i32,
  },
  // fsg_status fsg_glu_forward(fsg_context* ctx, const fsg_tensor* y, const fsg_tensor* bias,
  //   const fsg_tensor* weights, const fsg_tensor* out, const fsg_glu_params* act)
  fsg_glu_forward: { args: [u64, u64, u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_glu_backward(fsg_context* ctx, const fsg_tensor* dout, const fsg_tensor* y,
  //   const fsg_tensor* y_scale, const fsg_tensor* bias, const fsg_tensor* weights, const fsg_tensor* dy,
  //   const fsg_tensor* dweights, const fsg_tensor* dbias, const fsg_glu_params* act)
  fsg_glu_backward: { args: [u64, u64, u64, u64, u64, u64, u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_quantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* dst,
  //   const fsg_tensor* scale)
  fsg_quantize_fp8: { args: [u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_dequantize_fp8(fsg_context* ctx, const fsg_tensor* src, const fsg_tensor* scale,
  //   const fsg_tensor* out)
  fsg_dequantize_fp8: { args: [u64, u64, u64, u64], returns: i32 },
  // fsg_status fsg_gemm(fsg_context* ctx, const fsg_tensor* a, const fsg_tensor* b,
  //   const fsg_tensor* bias, const fsg_tensor* c, int32_t accumulate)
  fsg_gemm: { args: [u64, u64, u64, u64, u64, i32], returns: i32 },
  // fsg_status fsg_linear_backward(fsg_context* ctx, const fsg_tensor* dc, const fsg_tensor* a,
  //   const fsg_tensor* b, const fsg_tensor* da, const fsg_tensor* db, const fsg_tensor* dbias,
  //   uint32_t flags)
  fsg_linear_backward: { args: [u64, u64, u64, u64, u64, u64, u64, "u32"], returns: i32 },
} as const satisfies Record<string, FFIFunction>;

/** A status-returning native call; every pointer is a BigInt (0n for NULL). */
type StatusFn<N extends number> = (...args: ArgTuple<N>) => number;
type ArgTuple<N extends number, T extends bigint[] = []> = T["length"] extends N ? T : ArgTuple<N, [...T, bigint]>;

/** The native symbols as typed functions (pointers and handles are BigInt). */
export interface Native {
  fsg_abi_version(): number;
  fsg_version_string(): string;
  fsg_status_string(status: number): string;
  fsg_last_error(): string;
  fsg_cuda_archs(): string;
  fsg_cuda_device_count: StatusFn<1>;
  fsg_context_create(backend: number, ordinal: number, out: bigint): number;
  fsg_context_destroy: StatusFn<1>;
  fsg_context_backend: StatusFn<2>;
  fsg_context_device_name: StatusFn<3>;
  fsg_context_compute_capability: StatusFn<2>;
  fsg_context_sm90_kernels: StatusFn<2>;
  fsg_context_set_stream: StatusFn<2>;
  fsg_context_synchronize: StatusFn<1>;
  fsg_context_mem_info: StatusFn<3>;
  fsg_context_set_num_threads(ctx: bigint, threads: number): number;
  fsg_context_set_kernel_path(ctx: bigint, path: number): number;
  fsg_context_set_fp16_accumulation(ctx: bigint, allow: number): number;
  fsg_context_fp16_accumulation: StatusFn<2>;
  fsg_malloc: StatusFn<3>;
  fsg_free: StatusFn<2>;
  fsg_memcpy_h2d_async: StatusFn<4>;
  fsg_memcpy_d2h_async: StatusFn<4>;
  fsg_memcpy_d2d_async: StatusFn<4>;
  fsg_memset_async(ctx: bigint, dst: bigint, byteValue: number, bytes: bigint): number;
  fsg_stream_create: StatusFn<2>;
  fsg_stream_destroy: StatusFn<2>;
  fsg_stream_query: StatusFn<2>;
  fsg_stream_synchronize: StatusFn<2>;
  fsg_event_create: StatusFn<2>;
  fsg_event_destroy: StatusFn<2>;
  fsg_event_record: StatusFn<2>;
  fsg_event_query: StatusFn<2>;
  fsg_event_synchronize: StatusFn<2>;
  fsg_event_elapsed_ms: StatusFn<4>;
  fsg_graph_begin: StatusFn<1>;
  fsg_graph_end: StatusFn<2>;
  fsg_graph_launch: StatusFn<2>;
  fsg_graph_node_count: StatusFn<2>;
  fsg_graph_destroy: StatusFn<2>;
  fsg_swiglu_forward: StatusFn<12>;
  fsg_swiglu_backward_workspace_size: StatusFn<4>;
  fsg_swiglu_backward(
    ctx: bigint, dz: bigint, x: bigint, wGate: bigint, wUp: bigint, bGate: bigint, bUp: bigint,
    aSaved: bigint, bSaved: bigint, aScale: bigint, bScale: bigint, dx: bigint, dwGate: bigint, dwUp: bigint,
    dbGate: bigint, dbUp: bigint, flags: number, workspace: bigint, workspaceBytes: bigint, act: bigint,
  ): number;
  fsg_glu_forward: StatusFn<6>;
  fsg_glu_backward: StatusFn<10>;
  fsg_quantize_fp8: StatusFn<4>;
  fsg_dequantize_fp8: StatusFn<4>;
  fsg_gemm(ctx: bigint, a: bigint, b: bigint, bias: bigint, c: bigint, accumulate: number): number;
  fsg_linear_backward(
    ctx: bigint, dc: bigint, a: bigint, b: bigint, da: bigint, db: bigint, dbias: bigint, flags: number,
  ): number;
}

/** Host address of a typed array as the BigInt the `u64` arguments take. Keep `a` referenced. */
export function hostPtr(a: NodeJS.TypedArray): bigint {
  return BigInt(ptr(a));
}

function checkBunVersion(): void {
  const [major = 0, minor = 0] = Bun.version.split(".").map((p) => Number.parseInt(p, 10));
  if (major < MIN_BUN[0] || (major === MIN_BUN[0] && minor < MIN_BUN[1])) {
    throw new FusedSwiGLUError(
      "FSG_ERR_INVALID_ARGUMENT",
      `fused-swiglu needs Bun >= ${MIN_BUN.join(".")} (bun:ffi is experimental and changes between releases); this is Bun ${Bun.version}`,
    );
  }
}

function findLibrary(): string {
  const fromEnv = process.env.FUSED_SWIGLU_LIB;
  const packaged = join(import.meta.dir, "..", "build", "libfusedswiglu.so");
  if (fromEnv) {
    if (existsSync(fromEnv)) return fromEnv;
    throw new FusedSwiGLUError(
      "FSG_ERR_INVALID_ARGUMENT",
      `FUSED_SWIGLU_LIB=${fromEnv} does not exist (unset it to use ${packaged}, built by \`bun run build\`)`,
    );
  }
  if (existsSync(packaged)) return packaged;
  throw new FusedSwiGLUError(
    "FSG_ERR_INVALID_ARGUMENT",
    `libfusedswiglu.so not found. Looked at $FUSED_SWIGLU_LIB (unset) and ${packaged}. ` +
      "Run `bun run build` in the package root (needs cmake and nvcc), or set FUSED_SWIGLU_LIB to a prebuilt library.",
  );
}

function formatArg(a: unknown): string {
  return typeof a === "bigint" ? `0x${a.toString(16)}` : String(a);
}

/** Wraps every symbol so that each call is printed to stderr with its arguments and status. */
function traced(raw: Record<string, (...args: never[]) => unknown>): Native {
  const out: Record<string, (...args: unknown[]) => unknown> = {};
  for (const [name, fn] of Object.entries(raw)) {
    const returnsStatus = (symbols as Record<string, { returns: string }>)[name]?.returns === i32 &&
      name !== "fsg_abi_version";
    out[name] = (...args: unknown[]) => {
      const result = (fn as (...a: unknown[]) => unknown)(...args);
      const shown = returnsStatus ? statusName(result as number) : JSON.stringify(result);
      console.error(`[fsg] ${name}(${args.map(formatArg).join(", ")}) -> ${shown}`);
      return result;
    };
  }
  return out as unknown as Native;
}

function load(): { native: Native; path: string } {
  checkBunVersion();
  const path = findLibrary();
  const lib = dlopen(path, symbols);
  const raw = lib.symbols as unknown as Record<string, (...args: never[]) => unknown>;
  const native = process.env.FUSED_SWIGLU_TRACE === "1" ? traced(raw) : (raw as unknown as Native);
  const abi = native.fsg_abi_version();
  if (abi !== ABI_VERSION) {
    throw new FusedSwiGLUError(
      "FSG_ERR_INVALID_ARGUMENT",
      `${path} has ABI version ${abi}, this binding needs ${ABI_VERSION}: rebuild it with \`bun run build\``,
    );
  }
  return { native, path };
}

const loaded = load();
/** The native functions. Never closed. */
export const lib: Native = loaded.native;
/** The path the library was loaded from. */
export const libraryPath: string = loaded.path;

registerLastErrorSource(() => lib.fsg_last_error());
