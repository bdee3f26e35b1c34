// function.ts: SwiGLUFunction, an autograd-style pair forward/backward over the fused ops.
// The context holds its own references (views) to what backward needs, so callers may dispose
// their tensors after forward; ctx.dispose() (or backward with `release`) lets them go.
import type { GluActivation } from "./activation.ts";
import { fail } from "./errors.ts";
import { emptyFp8 } from "./fp8.ts";
import { fusedSwiglu, fusedSwigluBackward } from "./ops.ts";
import { emptyLikeLayout, Storage, Tensor } from "./tensor.ts";

export type SaveMode = "preactivations" | "preactivations-fp8" | "input" | false;

export interface SwiGLUForwardOptions {
  bGate?: Tensor | null;
  bUp?: Tensor | null;
  /**
   * What backward will use: "preactivations" (default) keeps x·Wg+bg and x·Wu+bu (2·M·N
   * elements, fastest backward); "preactivations-fp8" keeps them in fp8 with block scales, written
   * by the forward kernel itself (1.03 bytes per element instead of 2 for bf16; see fp8.ts for
   * the error); "input" keeps only x and recomputes them; false keeps nothing.
   */
  saveForBackward?: SaveMode;
  out?: Tensor;
  /** A GLU variant instead of SwiGLU (see activation.ts); backward uses the same. */
  activation?: GluActivation | null;
}

export interface SwiGLUGrads {
  dx?: Tensor;
  dwGate?: Tensor;
  dwUp?: Tensor;
  dbGate?: Tensor;
  dbUp?: Tensor;
}

export interface SwiGLUBackwardOptions {
  /** Default true. */
  needsInputGrad?: boolean;
  /** Default true. */
  needsWeightGrad?: boolean;
  /** Default: true when the forward had biases. */
  needsBiasGrad?: boolean;
  /** Existing gradients to add into (e.g. accumulated over micro-batches); returned as is. */
  accumulateInto?: SwiGLUGrads;
  /** Dispose the saved tensors after this backward (default true). */
  release?: boolean;
}

/** What forward saved for backward. */
export class SwiGLUContext {
  saved: SaveMode = false;
  x: Tensor | null = null;
  wGate: Tensor | null = null;
  wUp: Tensor | null = null;
  bGate: Tensor | null = null;
  bUp: Tensor | null = null;
  aSaved: Tensor | null = null;
  bSaved: Tensor | null = null;
  /** Block scales of aSaved/bSaved in "preactivations-fp8" mode. */
  aScale: Tensor | null = null;
  bScale: Tensor | null = null;
  activation: GluActivation | null = null;

  /** Bytes held for backward beyond x and the weights (the saved pre-activations and scales). */
  get savedBytes(): number {
    let n = 0;
    for (const t of [this.aSaved, this.bSaved, this.aScale, this.bScale]) if (t) n += t.numel * t.itemSize;
    return n;
  }

  /** Releases every saved tensor. Safe to call more than once. */
  dispose(): void {
    const held = [this.x, this.wGate, this.wUp, this.bGate, this.bUp, this.aSaved, this.bSaved, this.aScale, this.bScale];
    for (const t of held) t?.dispose();
    this.x = this.wGate = this.wUp = this.bGate = this.bUp = this.aSaved = this.bSaved = null;
    this.aScale = this.bScale = null;
    this.activation = null;
    this.saved = false;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Gradients for weights `wGate`/`wUp`, laid out like them: when both views share one
 * allocation, the two gradients share one allocation of the same size with the same offsets and
 * strides, so an optimizer can update weight storage from gradient storage elementwise.
 */
export function weightGradsLike(wGate: Tensor, wUp: Tensor): { dwGate: Tensor; dwUp: Tensor } {
  if (wGate.storage === wUp.storage) {
    const storage = new Storage(wGate.device, wGate.storage.bytes);
    storage.retain();
    try {
      return {
        dwGate: new Tensor(storage, wGate.shape, wGate.strides, wGate.offset, wGate.dtype),
        dwUp: new Tensor(storage, wUp.shape, wUp.strides, wUp.offset, wUp.dtype),
      };
    } finally {
      storage.release();
    }
  }
  return { dwGate: emptyLikeLayout(wGate), dwUp: emptyLikeLayout(wUp) };
}

export const SwiGLUFunction = {
  /** z = silu(x·Wg + bg) ⊙ (x·Wu + bu); fills ctx for backward. */
  forward(ctx: SwiGLUContext, x: Tensor, wGate: Tensor, wUp: Tensor, options: SwiGLUForwardOptions = {}): Tensor {
    const mode = options.saveForBackward ?? "preactivations";
    const { bGate = null, bUp = null } = options;
    ctx.dispose();
    let aSaved: Tensor | null = null;
    let bSaved: Tensor | null = null;
    let aScale: Tensor | null = null;
    let bScale: Tensor | null = null;
    const release = () => {
      for (const t of [aSaved, bSaved, aScale, bScale]) t?.dispose();
    };
    let z: Tensor;
    try {
      if (mode === "preactivations" || mode === "preactivations-fp8") {
        wGate.assertLive("wGate");
        const shape = [...x.shape.slice(0, -1), wGate.shape[wGate.ndim - 1] ?? 0];
        if (mode === "preactivations") {
          aSaved = Tensor.empty(shape, x.dtype, { device: x.device });
          bSaved = Tensor.empty(shape, x.dtype, { device: x.device });
        } else {
          ({ data: aSaved, scale: aScale } = emptyFp8(shape, x.device));
          const b = emptyFp8(shape, x.device);
          bSaved = b.data;
          bScale = b.scale;
        }
      } else if (mode !== "input" && mode !== false) {
        fail("FSG_ERR_INVALID_ARGUMENT", `saveForBackward: expected "preactivations", "preactivations-fp8", "input" or false, got ${String(mode)}`);
      }
      z = fusedSwiglu(x, wGate, wUp, {
        bGate, bUp, out: options.out, aOut: aSaved, bOut: bSaved, aScale, bScale, activation: options.activation,
      });
    } catch (e) {
      release();
      throw e;
    }
    if (mode === false) {
      release();
    } else {
      ctx.saved = mode;
      ctx.x = x.view();
      ctx.wGate = wGate.view();
      ctx.wUp = wUp.view();
      ctx.bGate = bGate?.view() ?? null;
      ctx.bUp = bUp?.view() ?? null;
      ctx.aSaved = aSaved;
      ctx.bSaved = bSaved;
      ctx.aScale = aScale;
      ctx.bScale = bScale;
      // A copy: the backward differentiates what the forward ran, whatever the caller changes after.
      ctx.activation = options.activation ? { ...options.activation } : null;
    }
    return z;
  },

  /** Gradients of the requested inputs given dz = dL/dz. */
  backward(ctx: SwiGLUContext, dz: Tensor, options: SwiGLUBackwardOptions = {}): SwiGLUGrads {
    const { x, wGate, wUp, bGate, bUp } = ctx;
    if (ctx.saved === false || !x || !wGate || !wUp) {
      fail("FSG_ERR_INVALID_ARGUMENT", "ctx: nothing was saved for backward (forward with saveForBackward: false, or already released)");
    }
    const needsInput = options.needsInputGrad ?? true;
    const needsWeight = options.needsWeightGrad ?? true;
    const needsBias = (options.needsBiasGrad ?? true) && (bGate !== null || bUp !== null);
    const into = options.accumulateInto;
    const accumulate = into !== undefined;
    const device = x.device;
    const fresh: Tensor[] = [];
    // With accumulation every computed gradient is added into: missing targets start at zero.
    const alloc = (t: Tensor): Tensor => {
      fresh.push(t);
      return accumulate ? t.fill(0) : t;
    };
    const grads: SwiGLUGrads = {};
    try {
      if (needsInput) grads.dx = into?.dx ?? alloc(Tensor.empty(x.shape, x.dtype, { device }));
      if (needsWeight) {
        if (into?.dwGate && into?.dwUp) {
          grads.dwGate = into.dwGate;
          grads.dwUp = into.dwUp;
        } else {
          const w = weightGradsLike(wGate, wUp);
          grads.dwGate = into?.dwGate ?? alloc(w.dwGate);
          grads.dwUp = into?.dwUp ?? alloc(w.dwUp);
          if (into?.dwGate) w.dwGate.dispose();
          if (into?.dwUp) w.dwUp.dispose();
        }
      }
      if (needsBias) {
        if (bGate) grads.dbGate = into?.dbGate ?? alloc(Tensor.empty(bGate.shape, bGate.dtype, { device }));
        if (bUp) grads.dbUp = into?.dbUp ?? alloc(Tensor.empty(bUp.shape, bUp.dtype, { device }));
      }
      fusedSwigluBackward(dz, x, wGate, wUp, {
        bGate, bUp,
        aSaved: ctx.saved === "input" ? null : ctx.aSaved,
        bSaved: ctx.saved === "input" ? null : ctx.bSaved,
        aScale: ctx.aScale,
        bScale: ctx.bScale,
        ...grads,
        accumulate,
        activation: ctx.activation,
      });
    } catch (e) {
      for (const t of fresh) t.dispose();
      throw e;
    }
    if (options.release ?? true) ctx.dispose();
    return grads;
  },
};
