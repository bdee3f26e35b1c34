// ops.ts: the functional API, one native call each (validation is the C layer's job; here we
// only allocate outputs, build descriptors and turn statuses into exceptions).
import { encodeActivation, type GluActivation } from "./activation.ts";
import type { Device } from "./device.ts";
import { check, fail } from "./errors.ts";
import { hostPtr, lib } from "./ffi.ts";
import { Storage, Tensor } from "./tensor.ts";

/** Address of an optional tensor's descriptor (0n = NULL); the tensor caches the struct. */
function addr(t: Tensor | null | undefined, name: string): bigint {
  return t ? t.descriptor(name).address : 0n;
}

/** Device of the call: the first tensor's. */
function deviceOf(t: Tensor, name: string): Device {
  t.assertLive(name);
  t.device.assertOpen();
  return t.device;
}

/** Runs `body` with freshly allocated outputs; disposes them if it throws. */
function producing<T>(outputs: (Tensor | null | undefined)[], body: () => T): T {
  try {
    return body();
  } catch (e) {
    for (const t of outputs) t?.dispose();
    throw e;
  }
}

const lastDim = (t: Tensor): number => t.shape[t.ndim - 1] ?? 0;
const leading = (t: Tensor): number[] => t.shape.slice(0, -1);

// ---------------------------------------------------------------- fused SwiGLU ----

export interface FusedForwardOptions {
  bGate?: Tensor | null;
  bUp?: Tensor | null;
  /** Write z here instead of allocating it. */
  out?: Tensor;
  /** Also write the pre-activations x·Wg+bg and x·Wu+bu (for the stored-mode backward). */
  aOut?: Tensor | null;
  bOut?: Tensor | null;
  /** Block scales when aOut/bOut are float8_e4m3fn (see fp8.ts: emptyFp8). */
  aScale?: Tensor | null;
  bScale?: Tensor | null;
  /** A GLU variant instead of SwiGLU (GEGLU, ReGLU, gpt-oss clamps, scales); see activation.ts. */
  activation?: GluActivation | null;
}

/** z = silu(x·Wg + bg) ⊙ (x·Wu + bu), one kernel. x [..., K], w* [K, N] views, z [..., N]. */
export function fusedSwiglu(x: Tensor, wGate: Tensor, wUp: Tensor, options: FusedForwardOptions = {}): Tensor {
  const device = deviceOf(x, "x");
  wGate.assertLive("wGate");
  const act = encodeActivation(options.activation); // before allocating: a bad one leaks nothing
  const z = options.out ?? Tensor.empty([...leading(x), lastDim(wGate)], x.dtype, { device });
  return producing([options.out ? null : z], () => {
    check(
      lib.fsg_swiglu_forward(device.handle, addr(x, "x"), addr(wGate, "wGate"), addr(wUp, "wUp"),
        addr(options.bGate, "bGate"), addr(options.bUp, "bUp"), addr(z, "out"),
        addr(options.aOut, "aOut"), addr(options.bOut, "bOut"), addr(options.aScale, "aScale"),
        addr(options.bScale, "bScale"), act?.address ?? 0n),
      "fsg_swiglu_forward",
    );
    return z;
  });
}

export interface FusedBackwardArgs {
  bGate?: Tensor | null;
  bUp?: Tensor | null;
  /** Stored mode: both pre-activations from the forward. Recompute mode: neither. */
  aSaved?: Tensor | null;
  bSaved?: Tensor | null;
  /** Block scales when aSaved/bSaved are float8_e4m3fn. */
  aScale?: Tensor | null;
  bScale?: Tensor | null;
  /** Outputs; each is computed only when given. */
  dx?: Tensor | null;
  dwGate?: Tensor | null;
  dwUp?: Tensor | null;
  dbGate?: Tensor | null;
  dbUp?: Tensor | null;
  /** Add into the outputs instead of overwriting them. */
  accumulate?: boolean;
  /** The GLU variant of the forward (see activation.ts). */
  activation?: GluActivation | null;
  /**
   * Scratch of at least backwardWorkspaceSize(x, N) bytes to reuse across calls (training loops,
   * timed loops): `new Storage(device, bytes)`, retain() it, release() it when done. Allocated and
   * freed (stream-ordered) per call when absent.
   */
  workspace?: Storage | null;
  /** Override the workspace size declared to the library (tests). */
  workspaceBytes?: number;
}

/**
 * Bytes of scratch the backward needs for x [..., K] and n hidden features on x's device: the
 * [M, 2N] gradients of the pre-activations, plus (Hopper, when the dX or dW GEMM alone would leave
 * SMs idle) room for deterministic split-K partials. A workspace of only the first part still
 * works; the GEMMs then do not split.
 */
export function backwardWorkspaceSize(x: Tensor, n: number): number {
  const device = deviceOf(x, "x");
  const out = new BigUint64Array(1);
  check(lib.fsg_swiglu_backward_workspace_size(device.handle, addr(x, "x"), BigInt(n), hostPtr(out)),
    "fsg_swiglu_backward_workspace_size");
  return Number(out[0]);
}

/** The fused backward into caller-provided gradient tensors (see SwiGLUFunction for the allocating API). */
export function fusedSwigluBackward(dz: Tensor, x: Tensor, wGate: Tensor, wUp: Tensor, a: FusedBackwardArgs): void {
  const device = deviceOf(x, "x");
  wGate.assertLive("wGate");
  if (a.workspace?.freed) fail("FSG_ERR_INVALID_ARGUMENT", "workspace: the storage was already freed");
  if (a.workspaceBytes !== undefined) {
    // Declared to the library, which trusts it: never more than the storage holds.
    const cap = a.workspace ? a.workspace.bytes : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(a.workspaceBytes) || a.workspaceBytes < 0 || a.workspaceBytes > cap) {
      fail("FSG_ERR_INVALID_ARGUMENT", `workspaceBytes: expected an integer from 0 to ${cap} (the workspace's bytes), got ${a.workspaceBytes}`);
    }
  }
  const act = encodeActivation(a.activation); // before allocating: a bad one leaks nothing
  const bytes = a.workspaceBytes ?? (a.workspace ? a.workspace.bytes : backwardWorkspaceSize(x, lastDim(wGate)));
  const owned = a.workspace ? null : bytes > 0 ? new Storage(device, bytes) : null;
  const workspace = a.workspace ?? owned;
  owned?.retain();
  try {
    check(
      lib.fsg_swiglu_backward(device.handle, addr(dz, "dz"), addr(x, "x"), addr(wGate, "wGate"), addr(wUp, "wUp"),
        addr(a.bGate, "bGate"), addr(a.bUp, "bUp"), addr(a.aSaved, "aSaved"), addr(a.bSaved, "bSaved"),
        addr(a.aScale, "aScale"), addr(a.bScale, "bScale"), addr(a.dx, "dx"), addr(a.dwGate, "dwGate"), addr(a.dwUp, "dwUp"), addr(a.dbGate, "dbGate"),
        addr(a.dbUp, "dbUp"), a.accumulate ? 1 : 0, workspace?.ptr ?? 0n, BigInt(bytes), act?.address ?? 0n),
      "fsg_swiglu_backward",
    );
  } finally {
    owned?.release(); // stream-ordered: freed after the kernels that use it
  }
}

// ------------------------------------------------ Megatron-style activation ops ----

export interface GluOptions {
  /** [2N] added to y before the activation. */
  bias?: Tensor | null;
  /** Token weights [T, 1] (T = rows of y) multiplying the result. */
  weights?: Tensor | null;
  out?: Tensor;
  /** A GLU variant instead of SwiGLU (see activation.ts). */
  activation?: GluActivation | null;
}

/** out = silu(y1 + b1) * (y2 + b2) * weights on packed y [..., 2N]; out [..., N]. */
export function glu(y: Tensor, options: GluOptions = {}): Tensor {
  const device = deviceOf(y, "y");
  const act = encodeActivation(options.activation); // before allocating: a bad one leaks nothing
  const out = options.out ?? Tensor.empty([...leading(y), Math.floor(lastDim(y) / 2)], y.dtype, { device });
  return producing([options.out ? null : out], () => {
    check(lib.fsg_glu_forward(device.handle, addr(y, "y"), addr(options.bias, "bias"), addr(options.weights, "weights"), addr(out, "out"),
      act?.address ?? 0n), "fsg_glu_forward");
    return out;
  });
}

/** Megatron `swiglu(y)`: silu(y1) * y2 of the two halves of the last dim. */
export function swiglu(y: Tensor, options: { out?: Tensor } = {}): Tensor {
  return glu(y, options);
}

/** Megatron `bias_swiglu(y, bias)`: swiglu(y + bias), bias [2N]. */
export function biasSwiglu(y: Tensor, bias: Tensor, options: { out?: Tensor } = {}): Tensor {
  if (!bias) fail("FSG_ERR_INVALID_ARGUMENT", "bias: required by biasSwiglu");
  return glu(y, { ...options, bias });
}

/** Megatron `weighted_swiglu(y, weights)`: swiglu(y [+ bias]) * weights, weights [T, 1]. */
export function weightedSwiglu(y: Tensor, weights: Tensor, bias?: Tensor | null, options: { out?: Tensor } = {}): Tensor {
  if (!weights) fail("FSG_ERR_INVALID_ARGUMENT", "weights: required by weightedSwiglu");
  return glu(y, { ...options, weights, bias: bias ?? null });
}

export interface GluBackwardResult {
  /** [..., 2N] */
  dy: Tensor;
  /** [2N], when bias was given. */
  dbias?: Tensor;
  /** Shape and dtype of weights, when weights were given. */
  dweights?: Tensor;
}

export interface GluBackwardOptions {
  bias?: Tensor | null;
  weights?: Tensor | null;
  dy?: Tensor;
  activation?: GluActivation | null;
  /** y's block scales when y is the float8_e4m3fn copy kept for backward (quantizeFp8). */
  yScale?: Tensor | null;
}

/**
 * Backward of glu/swiglu/biasSwiglu/weightedSwiglu: gradients w.r.t. y, bias and weights. y may be
 * the fp8 copy of the forward's input (quantizeFp8: pass its data as y and its scale as yScale);
 * dy then gets dout's dtype.
 */
export function swigluBackward(dout: Tensor, y: Tensor, options: GluBackwardOptions = {}): GluBackwardResult {
  const device = deviceOf(y, "y");
  const { bias, weights } = options;
  const act = encodeActivation(options.activation);
  const dtype = y.dtype === "float8_e4m3fn" ? dout.dtype : y.dtype;
  const dy = options.dy ?? Tensor.empty(y.shape, dtype, { device });
  const dbias = bias ? Tensor.empty(bias.shape, bias.dtype, { device }) : undefined;
  const dweights = weights ? Tensor.empty(weights.shape, weights.dtype, { device }) : undefined;
  return producing([options.dy ? null : dy, dbias, dweights], () => {
    check(
      lib.fsg_glu_backward(device.handle, addr(dout, "dout"), addr(y, "y"), addr(options.yScale, "yScale"),
        addr(bias, "bias"), addr(weights, "weights"),
        addr(dy, "dy"), addr(dweights, "dweights"), addr(dbias, "dbias"), act?.address ?? 0n),
      "fsg_glu_backward",
    );
    const result: GluBackwardResult = { dy };
    if (dbias) result.dbias = dbias;
    if (dweights) result.dweights = dweights;
    return result;
  });
}

// --------------------------------------------------------------------- GEMM ----

export interface MatmulOptions {
  bias?: Tensor | null;
  out?: Tensor;
  /** out += a·b (+ bias); needs `out`. */
  accumulate?: boolean;
}

/** c [M, N] = a [M, K] · b [K, N] + bias [N] (+ c when accumulate). */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const device = deviceOf(a, "a");
  b.assertLive("b");
  if (options.accumulate && !options.out) fail("FSG_ERR_INVALID_ARGUMENT", "out: accumulate needs an existing output");
  const c = options.out ?? Tensor.empty([...leading(a), lastDim(b)], a.dtype, { device });
  return producing([options.out ? null : c], () => {
    check(lib.fsg_gemm(device.handle, addr(a, "a"), addr(b, "b"), addr(options.bias, "bias"), addr(c, "c"), options.accumulate ? 1 : 0),
      "fsg_gemm");
    return c;
  });
}

/**
 * The unfused baseline: two GEMMs writing the halves of a packed [M, 2N] buffer, then the
 * activation op. Same result as fusedSwiglu; x may be [..., K] when contiguous.
 */
export function unfusedSwiglu(
  x: Tensor, wGate: Tensor, wUp: Tensor,
  options: { bGate?: Tensor | null; bUp?: Tensor | null; activation?: GluActivation | null } = {},
): Tensor {
  const device = deviceOf(x, "x");
  wGate.assertLive("wGate");
  const K = lastDim(x);
  const N = lastDim(wGate);
  const M = x.numel / Math.max(1, K);
  const x2 = x.ndim === 2 ? x.view() : x.reshape([M, K]);
  const y = Tensor.empty([M, 2 * N], x.dtype, { device });
  const [ya, yb] = y.chunk(2, 1) as [Tensor, Tensor];
  try {
    matmul(x2, wGate, { bias: options.bGate ?? null, out: ya });
    matmul(x2, wUp, { bias: options.bUp ?? null, out: yb });
    const z = glu(y, { activation: options.activation ?? null });
    if (x.ndim === 2) return z;
    try {
      return z.reshape([...leading(x), N]);
    } finally {
      z.dispose();
    }
  } finally {
    for (const t of [x2, y, ya, yb]) t.dispose();
  }
}
