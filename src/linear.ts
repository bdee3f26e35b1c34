// linear.ts: the linear op, y = x·w + bias (fsg_gemm), and its gradients (fsg_linear_backward),
// plus Linear, an nn.Linear-style layer over them. It is the down projection of an MLP block and
// the unfused baseline's projections.
//
// Weights are logical [K, N] views (K = in features, N = out features) with any strides: Linear
// stores its weight [out, in] like PyTorch and passes the transposed view (strides [1, in]), so
// neither direction copies. Gradients come back in the layout of what they differentiate.
//
// Argument names in native error messages are the C ones: dc = dy, a = x, b = w, da = dx,
// db = dw (fsg_gemm: a = x, b = w, c = the output).
import { defaultDevice, type Device } from "./device.ts";
import type { DType } from "./dtype.ts";
import { check, fail } from "./errors.ts";
import { lib } from "./ffi.ts";
import { matmul } from "./ops.ts";
import { emptyLikeLayout, mulberry32, Tensor } from "./tensor.ts";

/** FSG_BACKWARD_ACCUMULATE */
const ACCUMULATE = 1;

export interface LinearOptions {
  /** [N], added to every row. */
  bias?: Tensor | null;
  /** Write y here instead of allocating it. */
  out?: Tensor;
  /** out += x·w (+ bias); needs `out`. */
  accumulate?: boolean;
}

/** y [..., N] = x [..., K] · w [K, N] + bias [N]. For an [out, in] weight pass `weight.t()`. */
export function linear(x: Tensor, w: Tensor, options: LinearOptions = {}): Tensor {
  return matmul(x, w, options);
}

export interface LinearGrads {
  /** [..., K], like x. */
  dx?: Tensor;
  /** [K, N], any non-overlapping strides (e.g. the transposed view of an [out, in] gradient). */
  dw?: Tensor;
  /** [N] */
  dbias?: Tensor;
}

export interface LinearBackwardArgs extends LinearGrads {
  /** Add into the given gradients instead of overwriting them. */
  accumulate?: boolean;
}

/** Gradients of y = x·w + bias given dy [..., N], into caller-provided tensors: each only when given. */
export function linearBackward(dy: Tensor, x: Tensor, w: Tensor, args: LinearBackwardArgs): void {
  x.assertLive("x");
  const device = x.device;
  device.assertOpen();
  const desc = (t: Tensor | null | undefined, name: string): bigint => (t ? t.descriptor(name).address : 0n);
  check(
    lib.fsg_linear_backward(device.handle, desc(dy, "dy"), desc(x, "x"), desc(w, "w"), desc(args.dx, "dx"),
      desc(args.dw, "dw"), desc(args.dbias, "dbias"), args.accumulate ? ACCUMULATE : 0),
    "fsg_linear_backward",
  );
}

export interface LinearGradOptions {
  /** Default true. */
  needsInputGrad?: boolean;
  /** Default true. */
  needsWeightGrad?: boolean;
  /** Default false (the op does not know whether the forward had a bias). */
  needsBiasGrad?: boolean;
}

/** Allocates and computes the requested gradients; dw has w's layout (strides and span). */
export function linearGrads(dy: Tensor, x: Tensor, w: Tensor, options: LinearGradOptions = {}): LinearGrads {
  x.assertLive("x");
  w.assertLive("w");
  dy.assertLive("dy");
  const device = x.device;
  const grads: LinearGrads = {};
  if (options.needsInputGrad ?? true) grads.dx = Tensor.empty(x.shape, x.dtype, { device });
  try {
    if (options.needsWeightGrad ?? true) grads.dw = emptyLikeLayout(w, device);
    if (options.needsBiasGrad ?? false) grads.dbias = Tensor.empty([dy.shape[dy.ndim - 1] ?? 0], dy.dtype, { device });
    linearBackward(dy, x, w, grads);
  } catch (e) {
    for (const t of Object.values(grads)) (t as Tensor).dispose();
    throw e;
  }
  return grads;
}

// ------------------------------------------------------------------------ layer ----

export interface LinearLayerOptions {
  inFeatures: number;
  outFeatures: number;
  /** Default true (as nn.Linear). */
  bias?: boolean;
  /** Default "float32". */
  dtype?: DType;
  device?: Device;
  /** PRNG seed of the initialization (default 0). */
  seed?: number;
}

export interface LinearLayerGrads {
  /** [out, in], like the weight. */
  weight: Tensor;
  bias?: Tensor;
}

/**
 * nn.Linear: weight [out, in] and bias [out], initialized uniform(-1/sqrt(in), 1/sqrt(in)).
 * Gradients accumulate across backward calls until zeroGrad(), as in PyTorch.
 */
export class Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly dtype: DType;
  readonly device: Device;
  /** [out, in] storage. */
  readonly weight: Tensor;
  /** [in, out] transposed view of `weight` (no copy): what the op takes. */
  readonly weightT: Tensor;
  readonly bias: Tensor | null;
  /** Accumulated gradients (null until the first backward, and after zeroGrad()). */
  grads: LinearLayerGrads | null = null;
  #input: Tensor | null = null;
  #disposed = false;

  constructor(options: LinearLayerOptions) {
    const { inFeatures: K, outFeatures: N } = options;
    if (!Number.isInteger(K) || K < 1) fail("FSG_ERR_INVALID_ARGUMENT", `inFeatures: expected an integer >= 1, got ${K}`);
    if (!Number.isInteger(N) || N < 1) fail("FSG_ERR_INVALID_ARGUMENT", `outFeatures: expected an integer >= 1, got ${N}`);
    this.inFeatures = K;
    this.outFeatures = N;
    this.dtype = options.dtype ?? "float32";
    this.device = options.device ?? defaultDevice();
    const bound = 1 / Math.sqrt(K);
    const rand = mulberry32(options.seed ?? 0);
    const uniform = (n: number) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * bound);
    const opts = { device: this.device };
    this.weight = Tensor.fromFloat32(uniform(N * K), [N, K], this.dtype, opts);
    this.weightT = this.weight.t();
    this.bias = (options.bias ?? true) ? Tensor.fromFloat32(uniform(N), [N], this.dtype, opts) : null;
  }

  #assertLive(): void {
    if (this.#disposed) fail("FSG_ERR_INVALID_ARGUMENT", "layer was disposed");
  }

  /** y [..., out] for x [..., in]; keeps a view of x for backward unless saveForBackward is false. */
  forward(x: Tensor, options: { saveForBackward?: boolean } = {}): Tensor {
    this.#assertLive();
    const y = linear(x, this.weightT, { bias: this.bias });
    this.#input?.dispose();
    this.#input = (options.saveForBackward ?? true) ? x.view() : null;
    return y;
  }

  /** Accumulates weight/bias gradients into .grads; returns dx unless needsInputGrad is false. */
  backward(dy: Tensor, options: { needsInputGrad?: boolean } = {}): Tensor | null {
    this.#assertLive();
    const x = this.#input;
    if (!x) fail("FSG_ERR_INVALID_ARGUMENT", "backward: nothing was saved (forward with saveForBackward: false, or backward already ran)");
    const accumulate = this.grads !== null;
    const fresh: Tensor[] = [];
    const grads = this.grads ?? { weight: Tensor.empty(this.weight.shape, this.dtype, { device: this.device }) };
    if (!accumulate) {
      fresh.push(grads.weight);
      if (this.bias) fresh.push((grads.bias = Tensor.empty(this.bias.shape, this.dtype, { device: this.device })));
    }
    // The accumulate flag covers every output of the call, dx too: a fresh dx then starts at zero.
    const newDx = accumulate ? Tensor.zeros : Tensor.empty;
    const dx = (options.needsInputGrad ?? true) ? newDx(x.shape, x.dtype, { device: this.device }) : null;
    const dwT = grads.weight.t();
    try {
      linearBackward(dy, x, this.weightT, { dx: dx ?? undefined, dw: dwT, dbias: grads.bias, accumulate });
    } catch (e) {
      for (const t of [...fresh, dx]) t?.dispose();
      throw e;
    } finally {
      dwT.dispose();
    }
    this.grads = grads;
    x.dispose();
    this.#input = null;
    return dx;
  }

  /** Drops the accumulated gradients (the next backward allocates fresh ones). */
  zeroGrad(): void {
    if (!this.grads) return;
    this.grads.weight.dispose();
    this.grads.bias?.dispose();
    this.grads = null;
  }

  /** The trainable tensors: weight [out, in], then bias. */
  parameters(): Tensor[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  /** Frees weight, bias, gradients and the saved input. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#input?.dispose();
    this.#input = null;
    this.zeroGrad();
    this.weightT.dispose();
    this.weight.dispose();
    this.bias?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
