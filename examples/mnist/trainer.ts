// trainer.ts: one model x[B, 784] -> SwiGLU(784 -> H) -> Linear(H -> 10) and its training step,
// epoch and evaluation. The SwiGLU layer is a block of either mode (blocks.ts); the head is the
// library's Linear; loss and AdamW run on the host. The SwiGLU layer's forward and backward are
// bracketed by events (CUDA events on a GPU, host time on the CPU backend) to give its share of
// each step without adding synchronizations.
import { Linear, Tensor, type Device, type DType, type Event } from "../../src/index.ts";
import { FusedBlock, UnfusedBlock, type Mode, type SavedBytes, type SwiGLUBlock } from "./blocks.ts";
import { mulberry32 } from "../../src/tensor.ts";
import { batchOf, CLASSES, PIXELS, type DigitSet } from "./data.ts";
import { softmaxCrossEntropy } from "./loss.ts";
import { HostAdamW } from "./optim.ts";

export interface ModelConfig {
  hidden: number;
  dtype: DType;
  device: Device;
  /** Seed of the initial weights: the same seed gives both modes the same weights. */
  seed: number;
  lr: number;
  weightDecay: number;
  /** What the fused layer keeps for backward. */
  save: "input" | "preactivations";
}

export interface EpochResult {
  /** Loss of every training step, in order. */
  stepLosses: number[];
  trainAccuracy: number;
  /** Wall time of the epoch's training steps (host loss and optimizer included). */
  ms: number;
  /** Time inside the SwiGLU layer's forward and backward. */
  swigluMs: number;
}

export interface EvalResult {
  loss: number;
  accuracy: number;
}

/** nn.Linear's initialization of the gate and up projections: uniform(-1/sqrt(784), 1/sqrt(784)). */
function initialSwiGLUWeights(hidden: number, seed: number): [Float32Array, Float32Array] {
  const rand = mulberry32(seed);
  const bound = 1 / Math.sqrt(PIXELS);
  const draw = () => Float32Array.from({ length: PIXELS * hidden }, () => (2 * rand() - 1) * bound);
  return [draw(), draw()];
}

export class MnistModel {
  readonly mode: Mode;
  readonly block: SwiGLUBlock;
  readonly head: Linear;
  readonly #opt: HostAdamW;
  readonly #dtype: DType;
  readonly #device: Device;
  readonly #events: Event[];
  /** Largest activation memory kept for backward by the SwiGLU layer over the steps so far. */
  savedPeak: SavedBytes = { input: 0, intermediate: 0 };

  constructor(mode: Mode, c: ModelConfig) {
    this.mode = mode;
    this.#dtype = c.dtype;
    this.#device = c.device;
    const [gate, up] = initialSwiGLUWeights(c.hidden, c.seed);
    this.block = mode === "fused"
      ? new FusedBlock(gate, up, PIXELS, c.hidden, c.dtype, c.device, c.save)
      : new UnfusedBlock(gate, up, PIXELS, c.hidden, c.dtype, c.device);
    this.head = new Linear({ inFeatures: c.hidden, outFeatures: CLASSES, dtype: c.dtype, device: c.device, seed: c.seed + 1 });
    this.#opt = new HostAdamW([
      { param: this.block.wGate, decay: true },
      { param: this.block.wUp, decay: true },
      { param: this.head.weight, decay: true },
      { param: this.head.bias!, decay: false },
    ], { lr: c.lr, weightDecay: c.weightDecay });
    this.#events = Array.from({ length: 4 }, () => c.device.createEvent());
  }

  #upload(images: Float32Array, rows: number): Tensor {
    return Tensor.fromFloat32(images, [rows, PIXELS], this.#dtype, { device: this.#device });
  }

  /** Forward and backward of one batch, then an AdamW update with `lr` (none when null: warm-up). */
  step(images: Float32Array, labels: Uint8Array, lr: number | null): { loss: number; correct: number; swigluMs: number } {
    const [e0, e1, e2, e3] = this.#events as [Event, Event, Event, Event];
    const rows = labels.length;
    const owned: (Tensor | null)[] = [];
    try {
      const x = this.#upload(images, rows);
      owned.push(x);
      e0.record();
      const z = this.block.forward(x, true);
      e1.record();
      owned.push(z);
      const saved = this.block.saved();
      this.savedPeak = {
        input: Math.max(this.savedPeak.input, saved.input),
        intermediate: Math.max(this.savedPeak.intermediate, saved.intermediate),
      };
      const logits = this.head.forward(z);
      owned.push(logits);
      const { loss, correct, dlogits } = softmaxCrossEntropy(logits.toFloat32(), labels, CLASSES, true);
      const dl = Tensor.fromFloat32(dlogits!, [rows, CLASSES], this.#dtype, { device: this.#device });
      owned.push(dl);
      const dz = this.head.backward(dl);
      owned.push(dz);
      e2.record();
      const g = this.block.backward(dz!);
      e3.record();
      owned.push(g.dwGate, g.dwUp);
      const head = this.head.grads!;
      if (lr !== null) this.#opt.step([g.dwGate, g.dwUp, head.weight, head.bias!], lr);
      this.head.zeroGrad();
      e3.synchronize();
      return { loss, correct, swigluMs: e0.elapsedMs(e1) + e2.elapsedMs(e3) };
    } finally {
      for (const t of owned) t?.dispose();
    }
  }

  /** One pass over `order`; lrAt(step) gives the learning rate of each global step. */
  trainEpoch(set: DigitSet, order: Uint32Array, batch: number, firstStep: number, lrAt: (step: number) => number): EpochResult {
    const steps = Math.ceil(order.length / batch);
    const stepLosses: number[] = [];
    let correct = 0;
    let swigluMs = 0;
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const b = batchOf(set, order, s, batch);
      const r = this.step(b.images, b.labels, lrAt(firstStep + s));
      stepLosses.push(r.loss);
      correct += r.correct;
      swigluMs += r.swigluMs;
    }
    this.#device.synchronize();
    return { stepLosses, trainAccuracy: correct / order.length, ms: performance.now() - t0, swigluMs };
  }

  /** Loss and accuracy over a whole set, forward only. */
  evaluate(set: DigitSet, batch = 500): EvalResult {
    let loss = 0;
    let correct = 0;
    for (let start = 0; start < set.count; start += batch) {
      const rows = Math.min(batch, set.count - start);
      const x = this.#upload(set.images.subarray(start * PIXELS, (start + rows) * PIXELS), rows);
      const z = this.block.forward(x, false);
      const logits = this.head.forward(z, { saveForBackward: false });
      const r = softmaxCrossEntropy(logits.toFloat32(), set.labels.subarray(start, start + rows), CLASSES, false);
      loss += r.loss * rows;
      correct += r.correct;
      for (const t of [x, z, logits]) t.dispose();
    }
    return { loss: loss / set.count, accuracy: correct / set.count };
  }

  dispose(): void {
    this.block.dispose();
    this.head.dispose();
    for (const e of this.#events) e.dispose();
  }
}
