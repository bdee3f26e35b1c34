// optim.ts: AdamW on the host (Loshchilov & Hutter: decoupled weight decay) with float32 master
// weights: each step reads the gradients from the device, updates the masters, and writes them
// back rounded to the parameter's dtype. Plain TypeScript, to keep the example readable; the
// layers' forward and backward are the library's.
import type { Tensor } from "../../src/index.ts";

export interface AdamWConfig {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Applied to the parameters registered with decay: true (weights, not biases). */
  weightDecay?: number;
}

interface Slot {
  param: Tensor;
  decay: boolean;
  master: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export class HostAdamW {
  readonly #slots: Slot[];
  readonly #cfg: Required<AdamWConfig>;
  #t = 0;

  /** `params` in the order their gradients will be passed to step(). */
  constructor(params: { param: Tensor; decay: boolean }[], config: AdamWConfig) {
    this.#cfg = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, ...config };
    this.#slots = params.map(({ param, decay }) => {
      const master = param.toFloat32().slice();
      return { param, decay, master, m: new Float32Array(master.length), v: new Float32Array(master.length) };
    });
  }

  /** One update with the learning rate `lr` (default: the configured one). */
  step(grads: Tensor[], lr = this.#cfg.lr): void {
    if (grads.length !== this.#slots.length) throw new Error(`HostAdamW.step: ${grads.length} gradients for ${this.#slots.length} parameters`);
    const { beta1, beta2, eps, weightDecay } = this.#cfg;
    this.#t++;
    const c1 = 1 / (1 - beta1 ** this.#t);
    const c2 = 1 / (1 - beta2 ** this.#t);
    this.#slots.forEach((s, i) => {
      const g = grads[i]!.toFloat32();
      if (g.length !== s.master.length) throw new Error(`HostAdamW.step: gradient ${i} has ${g.length} values, its parameter ${s.master.length}`);
      const decay = s.decay ? 1 - lr * weightDecay : 1;
      const { master, m, v } = s;
      for (let j = 0; j < master.length; j++) {
        const gj = g[j]!;
        m[j] = beta1 * m[j]! + (1 - beta1) * gj;
        v[j] = beta2 * v[j]! + (1 - beta2) * gj * gj;
        master[j] = master[j]! * decay - (lr * (m[j]! * c1)) / (Math.sqrt(v[j]! * c2) + eps);
      }
      s.param.writeFloat32(master);
    });
  }
}
