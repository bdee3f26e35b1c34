// layer.ts: SwiGLU, a layer holding gate/up weights (in any layout) and optional biases,
// initialized like nn.Linear: uniform(-1/sqrt(in), 1/sqrt(in)) for weights and biases.
// Gradients accumulate across backward calls until zeroGrad(), as in PyTorch.
import { defaultDevice, type Device } from "./device.ts";
import { resolveActivation, type GluActivation } from "./activation.ts";
import type { DType } from "./dtype.ts";
import { fail } from "./errors.ts";
import { SwiGLUContext, SwiGLUFunction, type SaveMode, type SwiGLUGrads } from "./function.ts";
import { disposeWeights, storageShape, weightsIn, type Layout, type WeightViews } from "./layouts.ts";
import { mulberry32, numelOf, Tensor } from "./tensor.ts";

export interface SwiGLUOptions {
  inFeatures: number;
  hiddenFeatures: number;
  /** Default false. */
  bias?: boolean;
  /** Default "float32". */
  dtype?: DType;
  /** Default "separate". */
  layout?: Layout;
  device?: Device;
  /** PRNG seed of the initialization (default 0). */
  seed?: number;
  /** A GLU variant instead of SwiGLU: GEGLU, ReGLU, bilinear, gpt-oss clamps (see activation.ts). */
  activation?: GluActivation;
}

export interface SwiGLULayerGrads {
  wGate: Tensor;
  wUp: Tensor;
  bGate?: Tensor;
  bUp?: Tensor;
}

export class SwiGLU {
  readonly inFeatures: number;
  readonly hiddenFeatures: number;
  readonly dtype: DType;
  readonly layout: Layout;
  readonly device: Device;
  readonly weights: WeightViews;
  readonly bGate: Tensor | null;
  readonly bUp: Tensor | null;
  readonly activation: GluActivation | null;
  /** Accumulated gradients (null until the first backward, and after zeroGrad()). */
  grads: SwiGLULayerGrads | null = null;
  #ctx = new SwiGLUContext();
  #disposed = false;

  constructor(options: SwiGLUOptions) {
    const { inFeatures: K, hiddenFeatures: N } = options;
    if (!Number.isInteger(K) || K < 1) fail("FSG_ERR_INVALID_ARGUMENT", `inFeatures: expected an integer >= 1, got ${K}`);
    if (!Number.isInteger(N) || N < 1) fail("FSG_ERR_INVALID_ARGUMENT", `hiddenFeatures: expected an integer >= 1, got ${N}`);
    this.inFeatures = K;
    this.hiddenFeatures = N;
    this.dtype = options.dtype ?? "float32";
    this.layout = options.layout ?? "separate";
    // Checked now (a bad kind fails here, not in every forward) and copied (later edits by the
    // caller do not change the layer).
    if (options.activation) resolveActivation(options.activation);
    this.activation = options.activation ? Object.freeze({ ...options.activation }) : null;
    this.device = options.device ?? defaultDevice();
    const bound = 1 / Math.sqrt(K);
    const rand = mulberry32(options.seed ?? 0);
    const uniform = (n: number) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * bound);
    const opts = { dtype: this.dtype, device: this.device };
    this.weights = weightsIn(this.layout, K, N, opts);
    this.weights.storage.writeFloat32(uniform(numelOf(storageShape(this.layout, K, N))));
    this.weights.storage2?.writeFloat32(uniform(K * N));
    const bias = options.bias ?? false;
    this.bGate = bias ? Tensor.fromFloat32(uniform(N), [N], this.dtype, opts) : null;
    this.bUp = bias ? Tensor.fromFloat32(uniform(N), [N], this.dtype, opts) : null;
  }

  /** [K, N] view of the gate weights. */
  get wGate(): Tensor {
    return this.weights.gate;
  }

  /** [K, N] view of the up weights. */
  get wUp(): Tensor {
    return this.weights.up;
  }

  #assertLive(): void {
    if (this.#disposed) fail("FSG_ERR_INVALID_ARGUMENT", "layer was disposed");
  }

  /** z [..., N] for x [..., K]. Saves what backward needs unless saveForBackward is false. */
  forward(x: Tensor, options: { saveForBackward?: SaveMode } = {}): Tensor {
    this.#assertLive();
    return SwiGLUFunction.forward(this.#ctx, x, this.wGate, this.wUp, {
      bGate: this.bGate, bUp: this.bUp, saveForBackward: options.saveForBackward, activation: this.activation,
    });
  }

  /** Accumulates weight/bias gradients into .grads and returns dx (unless needsInputGrad is false). */
  backward(dz: Tensor, options: { needsInputGrad?: boolean } = {}): Tensor | null {
    this.#assertLive();
    const needsInputGrad = options.needsInputGrad ?? true;
    const into: SwiGLUGrads | undefined = this.grads
      ? { dwGate: this.grads.wGate, dwUp: this.grads.wUp, dbGate: this.grads.bGate, dbUp: this.grads.bUp }
      : undefined;
    const g = SwiGLUFunction.backward(this.#ctx, dz, { needsInputGrad, needsWeightGrad: true, accumulateInto: into });
    if (!this.grads) {
      this.grads = { wGate: g.dwGate!, wUp: g.dwUp! };
      if (g.dbGate) this.grads.bGate = g.dbGate;
      if (g.dbUp) this.grads.bUp = g.dbUp;
    }
    if (into?.dx === undefined && g.dx) return g.dx;
    return null;
  }

  /** Drops the accumulated gradients (the next backward allocates fresh ones). */
  zeroGrad(): void {
    if (!this.grads) return;
    for (const t of Object.values(this.grads)) (t as Tensor).dispose();
    this.grads = null;
  }

  /** The trainable tensors: the weight allocation(s), then the biases. */
  parameters(): Tensor[] {
    const out = [this.weights.storage];
    if (this.weights.storage2) out.push(this.weights.storage2);
    if (this.bGate) out.push(this.bGate);
    if (this.bUp) out.push(this.bUp);
    return out;
  }

  /** Parameters by name. */
  namedParameters(): Record<string, Tensor> {
    const out: Record<string, Tensor> = { wGate: this.wGate, wUp: this.wUp };
    if (this.bGate) out.bGate = this.bGate;
    if (this.bUp) out.bUp = this.bUp;
    return out;
  }

  /** Frees weights, biases, gradients and anything saved for backward. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#ctx.dispose();
    this.zeroGrad();
    disposeWeights(this.weights);
    this.bGate?.dispose();
    this.bUp?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
