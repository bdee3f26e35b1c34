// cublas.ts: cuBLAS loaded at run time through bun:ffi, for the baselines only (never a build
// dependency). One handle bound to the legacy default stream (stream 0), which is also the
// library's default stream, so cuBLAS work and our events/kernels are ordered on one stream.
//
// Row-major helper: cuBLAS is column-major, so a row-major C [M, N] = op(A) · op(B) is computed
// as the column-major C^T = op(B)^T · op(A)^T: swap the operands, keep the transpose flags,
// pass m = N, n = M, and the row strides as leading dimensions.
//
// Lookup order: $CUBLAS_PATH (a file or a folder), $LD_LIBRARY_PATH, /usr/local/cuda/lib64,
// the toolkit's targets folder, the system lib folders, then the pip wheels (nvidia-cublas) of
// the Python installs we know of. libcublasLt is opened first from the same folder so that
// libcublas's dependency resolves even without ld.so.conf entries.
import { dlopen, FFIType, ptr, type Library } from "bun:ffi";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { f32ToF16Bits, type FloatDType } from "../src/index.ts";

const u64 = FFIType.u64;
const i32 = FFIType.i32;

const symbols = {
  // cublasStatus_t cublasCreate_v2(cublasHandle_t* handle)
  cublasCreate_v2: { args: [u64], returns: i32 },
  // cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
  cublasDestroy_v2: { args: [u64], returns: i32 },
  // cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
  cublasSetStream_v2: { args: [u64, u64], returns: i32 },
  // cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version)
  cublasGetVersion_v2: { args: [u64, u64], returns: i32 },
  // cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
  //   int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
  //   const void* B, cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
  //   cublasComputeType_t computeType, cublasGemmAlgo_t algo)
  cublasGemmEx: {
    args: [u64, i32, i32, i32, i32, i32, u64, u64, i32, i32, u64, i32, i32, u64, u64, i32, i32, i32, i32],
    returns: i32,
  },
} as const;

// libcublasLt is opened only so libcublas's dependency on it resolves; bun:ffi needs one symbol.
const ltSymbols = {
  // size_t cublasLtGetVersion(void)
  cublasLtGetVersion: { args: [], returns: u64 },
} as const;

/** cublasOperation_t */
export const OP_N = 0;
export const OP_T = 1;
/** cudaDataType_t */
const CUDA_R_32F = 0;
const CUDA_R_16F = 2;
const CUDA_R_16BF = 14;
/** cublasComputeType_t: fp32 accumulation (no TF32 for fp32 inputs); fp16 accumulation (fp16 inputs). */
const CUBLAS_COMPUTE_32F = 68;
const CUBLAS_COMPUTE_16F = 64;
/** cublasGemmAlgo_t */
const CUBLAS_GEMM_DEFAULT = -1;

const CUDA_TYPE: Record<FloatDType, number> = { float32: CUDA_R_32F, float16: CUDA_R_16F, bfloat16: CUDA_R_16BF };

const STATUS_NAMES: Record<number, string> = {
  0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
  7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
  13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
  16: "CUBLAS_STATUS_LICENSE_ERROR",
};

function checkCublas(status: number, what: string): void {
  if (status !== 0) throw new Error(`${what} failed with ${STATUS_NAMES[status] ?? `cublas status ${status}`}`);
}

/** Folders that may hold libcublas.so*, in lookup order. */
function candidateDirs(): string[] {
  const dirs: string[] = [];
  const env = process.env.CUBLAS_PATH;
  if (env) dirs.push(env);
  for (const d of (process.env.LD_LIBRARY_PATH ?? "").split(":")) if (d) dirs.push(d);
  const cuda = process.env.CUDA_HOME ?? "/usr/local/cuda";
  dirs.push(join(cuda, "lib64"), join(cuda, "targets/x86_64-linux/lib"), "/usr/lib/x86_64-linux-gnu", "/usr/lib64");
  // pip wheels: .../site-packages/nvidia/cu13/lib (CUDA 13 wheels) or .../nvidia/cublas/lib (CUDA 12).
  for (const root of ["/opt/torch/.venv/lib", "/usr/local/lib", "/usr/lib"]) {
    if (!existsSync(root)) continue;
    for (const py of safeReaddir(root).filter((n) => n.startsWith("python3"))) {
      for (const pk of ["site-packages", "dist-packages"]) {
        const nv = join(root, py, pk, "nvidia");
        if (!existsSync(nv)) continue;
        for (const sub of safeReaddir(nv)) dirs.push(join(nv, sub, "lib"));
      }
    }
  }
  return dirs;
}

function safeReaddir(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

/** Finds libcublas in `dir` (a folder, or a file path itself). */
function findIn(dir: string): { cublas: string; lt: string | null } | null {
  if (existsSync(dir) && statSync(dir).isFile()) return { cublas: dir, lt: null };
  const names = safeReaddir(dir);
  const pick = (base: string) =>
    [`${base}.so`, `${base}.so.13`, `${base}.so.12`, `${base}.so.11`].find((n) => names.includes(n)) ??
    names.filter((n) => n.startsWith(`${base}.so.`)).sort()[0] ?? null;
  const cublas = pick("libcublas");
  if (!cublas) return null;
  const lt = pick("libcublasLt");
  return { cublas: join(dir, cublas), lt: lt ? join(dir, lt) : null };
}

export interface RowMajorGemm {
  dtype: FloatDType;
  /** C [M, N] = op(A) · op(B); op(A) is [M, K], op(B) is [K, N]. */
  M: number;
  N: number;
  K: number;
  /** Device pointers. */
  a: bigint;
  b: bigint;
  c: bigint;
  /** Row strides (elements) of A, B, C as stored (row-major). */
  lda: number;
  ldb: number;
  ldc: number;
  transA?: boolean;
  transB?: boolean;
  /** C = op(A)·op(B) + beta·C (default 0). */
  beta?: number;
  /** "fp16": CUBLAS_COMPUTE_16F (float16 only; sums kept in fp16). Default "fp32". */
  accumulate?: "fp32" | "fp16";
}

/** A cuBLAS handle on the legacy default stream. */
export class Cublas {
  readonly path: string;
  readonly version: number;
  #lib: Library<typeof symbols>;
  #lt: Library<typeof ltSymbols> | null;
  #handle: bigint;
  #alpha = new Float32Array([1]);
  #beta = new Float32Array([0]);
  #alphaPtr: bigint;
  #betaPtr: bigint;
  // CUBLAS_COMPUTE_16F takes alpha and beta as fp16.
  #alpha16 = new Uint16Array([0x3c00]);
  #beta16 = new Uint16Array([0]);
  #alpha16Ptr: bigint;
  #beta16Ptr: bigint;

  private constructor(path: string, lib: Library<typeof symbols>, lt: Library<typeof ltSymbols> | null) {
    this.path = path;
    this.#lib = lib;
    this.#lt = lt;
    const out = new BigUint64Array(1);
    checkCublas(lib.symbols.cublasCreate_v2(ptrOf(out)), "cublasCreate_v2");
    this.#handle = out[0]!;
    // Stream 0 = the legacy default stream = the library's default stream (fsg_context_set_stream(NULL)).
    checkCublas(lib.symbols.cublasSetStream_v2(this.#handle, 0n), "cublasSetStream_v2");
    const v = new Int32Array(1);
    checkCublas(lib.symbols.cublasGetVersion_v2(this.#handle, ptrOf(v)), "cublasGetVersion_v2");
    this.version = v[0]!;
    this.#alphaPtr = ptrOf(this.#alpha);
    this.#betaPtr = ptrOf(this.#beta);
    this.#alpha16Ptr = ptrOf(this.#alpha16);
    this.#beta16Ptr = ptrOf(this.#beta16);
  }

  /** Opens cuBLAS, or returns a reason why not (no library found, or no GPU for the handle). */
  static open(): Cublas | string {
    const tried: string[] = [];
    for (const dir of candidateDirs()) {
      const found = findIn(dir);
      if (!found) continue;
      tried.push(found.cublas);
      let lt: Library<typeof ltSymbols> | null = null;
      try {
        if (found.lt) lt = dlopen(found.lt, ltSymbols);
        const lib = dlopen(found.cublas, symbols);
        try {
          return new Cublas(found.cublas, lib, lt);
        } catch (e) {
          return `cuBLAS at ${found.cublas} could not create a handle: ${(e as Error).message}`;
        }
      } catch (e) {
        tried[tried.length - 1] += ` (${(e as Error).message.split("\n")[0]})`;
      }
    }
    return tried.length === 0
      ? "libcublas.so not found (set CUBLAS_PATH to the library or its folder)"
      : `libcublas could not be loaded: ${tried.join("; ")}`;
  }

  /** Row-major GEMM, alpha 1, fp32 accumulation unless g.accumulate is "fp16". Enqueued on stream 0. */
  gemm(g: RowMajorGemm): void {
    const t = CUDA_TYPE[g.dtype];
    const half = g.accumulate === "fp16";
    if (half && g.dtype !== "float16") throw new Error(`cuBLAS fp16 accumulation needs float16 operands, got ${g.dtype}`);
    this.#beta[0] = g.beta ?? 0;
    this.#beta16[0] = f32ToF16Bits(g.beta ?? 0);
    // Column-major C^T [N, M] = op(B)^T [N, K] · op(A)^T [K, M].
    checkCublas(
      this.#lib.symbols.cublasGemmEx(
        this.#handle, g.transB ? OP_T : OP_N, g.transA ? OP_T : OP_N, g.N, g.M, g.K,
        half ? this.#alpha16Ptr : this.#alphaPtr, g.b, t, g.ldb, g.a, t, g.lda, half ? this.#beta16Ptr : this.#betaPtr,
        g.c, t, g.ldc, half ? CUBLAS_COMPUTE_16F : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      `cublasGemmEx(M=${g.M}, N=${g.N}, K=${g.K}, ${g.dtype}${half ? ", fp16 accumulation" : ""})`,
    );
  }

  dispose(): void {
    if (this.#handle !== 0n) checkCublas(this.#lib.symbols.cublasDestroy_v2(this.#handle), "cublasDestroy_v2");
    this.#handle = 0n;
    // The libraries stay open (never close a library whose code may still be referenced).
    void this.#lt;
  }
}

/** Host address of a typed array as BigInt (keep the array referenced). */
function ptrOf(a: NodeJS.TypedArray): bigint {
  return BigInt(ptr(a));
}
