// blocks.ts: the model's SwiGLU layer, z = silu(x·Wg) ⊙ (x·Wu), two ways over the same [K, H]
// weights: "fused" (one fused forward kernel, the fused backward: SwiGLUFunction) and "unfused"
// (the library's matmul twice into a packed [B, 2H] buffer, the swiglu activation op, its
// backward, and linearBackward for each projection), so that a run of each from the same
// weights and batches differs only in how the layer is computed.
import {
  linearBackward, matmul, swiglu, swigluBackward, SwiGLUContext, SwiGLUFunction, Tensor,
  type Device, type DType, type SaveMode,
} from "../../src/index.ts";

export type Mode = "fused" | "unfused";

export interface SwiGLUWeightGrads {
  dwGate: Tensor;
  dwUp: Tensor;
}

/** Bytes of activations a block keeps between forward and backward. */
export interface SavedBytes {
  /** The layer's input x (the batch itself here). */
  input: number;
  /** Pre-activations (x·Wg, x·Wu) or anything else computed in forward. */
  intermediate: number;
}

export interface SwiGLUBlock {
  readonly mode: Mode;
  /** [K, H] */
  readonly wGate: Tensor;
  /** [K, H] */
  readonly wUp: Tensor;
  /** z [B, H]; keeps what backward needs when `train`. */
  forward(x: Tensor, train: boolean): Tensor;
  /** Weight gradients for dz = dL/dz (no dx: x is the network's input). Releases the saved tensors. */
  backward(dz: Tensor): SwiGLUWeightGrads;
  /** What the last training forward kept (0 after backward). */
  saved(): SavedBytes;
  dispose(): void;
}

const bytesOf = (...ts: (Tensor | null)[]): number => ts.reduce((s, t) => s + (t ? t.numel * t.itemSize : 0), 0);

/** Gate and up weights [K, H] from host values (float32, rounded to dtype). */
function uploadWeights(gate: Float32Array, up: Float32Array, K: number, H: number, dtype: DType, device: Device): [Tensor, Tensor] {
  return [Tensor.fromFloat32(gate, [K, H], dtype, { device }), Tensor.fromFloat32(up, [K, H], dtype, { device })];
}

/** The fused layer: SwiGLUFunction over the library's fused kernels. */
export class FusedBlock implements SwiGLUBlock {
  readonly mode = "fused";
  readonly wGate: Tensor;
  readonly wUp: Tensor;
  readonly #save: Exclude<SaveMode, false>;
  readonly #ctx = new SwiGLUContext();

  constructor(gate: Float32Array, up: Float32Array, K: number, H: number, dtype: DType, device: Device, save: Exclude<SaveMode, false>) {
    [this.wGate, this.wUp] = uploadWeights(gate, up, K, H, dtype, device);
    this.#save = save;
  }

  forward(x: Tensor, train: boolean): Tensor {
    return SwiGLUFunction.forward(this.#ctx, x, this.wGate, this.wUp, { saveForBackward: train ? this.#save : false });
  }

  backward(dz: Tensor): SwiGLUWeightGrads {
    const g = SwiGLUFunction.backward(this.#ctx, dz, { needsInputGrad: false });
    return { dwGate: g.dwGate!, dwUp: g.dwUp! };
  }

  saved(): SavedBytes {
    const c = this.#ctx;
    return { input: bytesOf(c.x), intermediate: bytesOf(c.aSaved, c.bSaved) };
  }

  dispose(): void {
    this.#ctx.dispose();
    this.wGate.dispose();
    this.wUp.dispose();
  }
}

/** The unfused baseline: two GEMMs, the activation op, and their backward, all library calls. */
export class UnfusedBlock implements SwiGLUBlock {
  readonly mode = "unfused";
  readonly wGate: Tensor;
  readonly wUp: Tensor;
  #x: Tensor | null = null;
  /** [B, 2H]: x·Wg in the first half of each row, x·Wu in the second. */
  #y: Tensor | null = null;

  constructor(gate: Float32Array, up: Float32Array, K: number, H: number, dtype: DType, device: Device) {
    [this.wGate, this.wUp] = uploadWeights(gate, up, K, H, dtype, device);
  }

  forward(x: Tensor, train: boolean): Tensor {
    this.#release();
    const H = this.wGate.shape[1]!;
    const y = Tensor.empty([x.shape[0]!, 2 * H], x.dtype, { device: x.device });
    const [ya, yb] = y.chunk(2, 1) as [Tensor, Tensor];
    try {
      matmul(x, this.wGate, { out: ya });
      matmul(x, this.wUp, { out: yb });
      const z = swiglu(y);
      if (train) {
        this.#x = x.view();
        this.#y = y.view();
      }
      return z;
    } finally {
      for (const t of [y, ya, yb]) t.dispose();
    }
  }

  backward(dz: Tensor): SwiGLUWeightGrads {
    const x = this.#x;
    const y = this.#y;
    if (!x || !y) throw new Error("UnfusedBlock.backward: no saved forward");
    const { dy } = swigluBackward(dz, y);
    const [dya, dyb] = dy.chunk(2, 1) as [Tensor, Tensor];
    const dwGate = Tensor.empty(this.wGate.shape, this.wGate.dtype, { device: x.device });
    const dwUp = Tensor.empty(this.wUp.shape, this.wUp.dtype, { device: x.device });
    try {
      linearBackward(dya, x, this.wGate, { dw: dwGate });
      linearBackward(dyb, x, this.wUp, { dw: dwUp });
    } catch (e) {
      dwGate.dispose();
      dwUp.dispose();
      throw e;
    } finally {
      for (const t of [dy, dya, dyb]) t.dispose();
      this.#release();
    }
    return { dwGate, dwUp };
  }

  saved(): SavedBytes {
    return { input: bytesOf(this.#x), intermediate: bytesOf(this.#y) };
  }

  #release(): void {
    this.#x?.dispose();
    this.#y?.dispose();
    this.#x = this.#y = null;
  }

  dispose(): void {
    this.#release();
    this.wGate.dispose();
    this.wUp.dispose();
  }
}
