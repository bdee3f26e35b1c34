// mlp.ts: SwiGLUMLP, the full feed-forward block of Llama-style models, for inference:
//
//   y = (silu(x·Wg) ⊙ (x·Wu)) · Wd            [..., K] -> [..., N] -> [..., K]
//   y = x + (silu(x·Wg) ⊙ (x·Wu)) · Wd        with residual: true
//
// The gate/up projections and the gate are one fused kernel (fusedSwiglu); the down projection
// is the library's own GEMM (matmul), whose accumulate option adds the residual in place. Wg and
// Wu are [K, N] views, Wd a [N, K] view, each in any layout of layouts.ts (nn.Linear [out, in]
// storage is the transposed view): nothing is copied.
import type { Device } from "./device.ts";
import { check, fail } from "./errors.ts";
import { lib } from "./ffi.ts";
import { weightsIn, type Layout } from "./layouts.ts";
import { fusedSwiglu, matmul } from "./ops.ts";
import { mulberry32, Tensor, type DType } from "./tensor.ts";

export interface SwiGLUMLPWeights {
  /** [K, N] view. */
  gate: Tensor;
  /** [K, N] view. */
  up: Tensor;
  /** [N, K] view (nn.Linear's down_proj.weight [K, N] seen transposed). */
  down: Tensor;
}

export interface SwiGLUMLPOptions extends SwiGLUMLPWeights {
  /** out = x + mlp(x) (default false). */
  residual?: boolean;
  /** Tensors the block owns and disposes with itself (the weights' allocations). */
  owned?: Tensor[];
}

export interface RandomMLPOptions {
  K: number;
  N: number;
  dtype?: DType;
  device?: Device;
  /** Gate/up storage layout (default "linear": nn.Linear [N, K] pair). */
  layout?: Layout;
  residual?: boolean;
  seed?: number;
}

export interface MLPForwardOptions {
  /** Write the result here ([..., K], x's dtype) instead of allocating it. */
  out?: Tensor;
  /** Overrides the block's residual setting for this call. */
  residual?: boolean;
}

export class SwiGLUMLP {
  readonly gate: Tensor;
  readonly up: Tensor;
  readonly down: Tensor;
  readonly residual: boolean;
  /** Input/output features. */
  readonly K: number;
  /** Hidden features. */
  readonly N: number;
  readonly dtype: DType;
  #owned: Tensor[];
  #disposed = false;

  constructor(options: SwiGLUMLPOptions) {
    const { gate, up, down } = options;
    for (const [name, t] of [["gate", gate], ["up", up], ["down", down]] as const) {
      if (!t) fail("FSG_ERR_INVALID_ARGUMENT", `SwiGLUMLP: ${name} weight is required`);
      t.assertLive(name);
      if (t.ndim !== 2) fail("FSG_ERR_SHAPE", `SwiGLUMLP: ${name}: expected a 2-D view, got [${t.shape.join(", ")}]`);
    }
    const [K, N] = gate.shape as [number, number];
    if (up.shape[0] !== K || up.shape[1] !== N) {
      fail("FSG_ERR_SHAPE", `SwiGLUMLP: up: expected [${K}, ${N}] like gate, got [${up.shape.join(", ")}]`);
    }
    if (down.shape[0] !== N || down.shape[1] !== K) {
      fail("FSG_ERR_SHAPE", `SwiGLUMLP: down: expected [N, K] = [${N}, ${K}], got [${down.shape.join(", ")}]`);
    }
    for (const [name, t] of [["up", up], ["down", down]] as const) {
      if (t.dtype !== gate.dtype) fail("FSG_ERR_DTYPE", `SwiGLUMLP: ${name}: expected ${gate.dtype} like gate, got ${t.dtype}`);
      if (t.device !== gate.device) fail("FSG_ERR_DEVICE_MISMATCH", `SwiGLUMLP: ${name}: lives on another device than gate`);
    }
    this.gate = gate;
    this.up = up;
    this.down = down;
    this.K = K;
    this.N = N;
    this.dtype = gate.dtype;
    this.residual = options.residual ?? false;
    this.#owned = options.owned ?? [];
  }

  /** A block with random weights (uniform, variance 1/K for gate/up and 1/N for down), for demos and load tests. */
  static random(options: RandomMLPOptions): SwiGLUMLP {
    const { K, N } = options;
    const dtype = options.dtype ?? "float32";
    const rand = mulberry32(options.seed ?? 1);
    const uniform = (n: number, variance: number): Float32Array => {
      const a = Math.sqrt(3 * variance);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) v[i] = (2 * rand() - 1) * a;
      return v;
    };
    const w = weightsIn(options.layout ?? "linear", K, N, { dtype, device: options.device });
    const owned: Tensor[] = [w.gate, w.up, w.storage];
    if (w.storage2) owned.push(w.storage2);
    try {
      w.storage.writeFloat32(uniform(w.storage.numel, 1 / K));
      w.storage2?.writeFloat32(uniform(w.storage2.numel, 1 / K));
      // down_proj.weight in nn.Linear storage [K, N], used as the [N, K] view.
      const downStorage = Tensor.fromFloat32(uniform(K * N, 1 / N), [K, N], dtype, { device: w.storage.device });
      owned.push(downStorage);
      const down = downStorage.t();
      owned.push(down);
      return new SwiGLUMLP({ gate: w.gate, up: w.up, down, residual: options.residual ?? false, owned });
    } catch (e) {
      for (const t of owned) t.dispose();
      throw e;
    }
  }

  get device(): Device {
    return this.gate.device;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** y [..., K] for x [..., K] (x's leading dims are the rows M; M = 0 gives an empty result). */
  forward(x: Tensor, options: MLPForwardOptions = {}): Tensor {
    if (this.#disposed) fail("FSG_ERR_INVALID_ARGUMENT", "SwiGLUMLP: the block was disposed");
    x.assertLive("x");
    const K = this.K;
    if (x.ndim < 1 || x.shape[x.ndim - 1] !== K) {
      fail("FSG_ERR_SHAPE", `SwiGLUMLP.forward: x: expected [..., ${K}], got [${x.shape.join(", ")}]`);
    }
    if (x.dtype !== this.dtype) fail("FSG_ERR_DTYPE", `SwiGLUMLP.forward: x: expected ${this.dtype}, got ${x.dtype}`);
    const residual = options.residual ?? this.residual;
    const device = x.device;
    const M = x.numel / K;
    const shape = x.shape;
    if (options.out) {
      const o = options.out;
      o.assertLive("out");
      if (o.numel !== M * K || o.shape[o.ndim - 1] !== K || o.dtype !== this.dtype) {
        fail("FSG_ERR_SHAPE", `SwiGLUMLP.forward: out: expected ${this.dtype} [${shape.join(", ")}], got ${o.dtype} [${o.shape.join(", ")}]`);
      }
      if (!o.isContiguous()) fail("FSG_ERR_LAYOUT", "SwiGLUMLP.forward: out must be contiguous");
    }
    // x's [M, K] view first: if x cannot be flattened, nothing is allocated yet.
    const x2 = x.ndim === 2 ? x.view() : x.reshape([M, K]);
    let out: Tensor | null = null;
    let out2: Tensor | null = null;
    let z: Tensor | null = null;
    try {
      out = options.out ?? Tensor.empty(shape, this.dtype, { device });
      out2 = out.ndim === 2 ? out.view() : out.reshape([M, K]);
      if (M > 0) {
        z = fusedSwiglu(x2, this.gate, this.up);
        if (residual) copyInto(out2, x2);
        matmul(z, this.down, { out: out2, accumulate: residual });
      }
      return out;
    } catch (e) {
      if (!options.out) out?.dispose();
      throw e;
    } finally {
      z?.dispose(); // stream-ordered: freed after the GEMM that reads it
      x2.dispose();
      out2?.dispose();
    }
  }

  /** Frees the weights the block owns. A second call is a no-op. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of this.#owned) t.dispose();
    this.#owned = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** dst = src on the device (stream-ordered), both contiguous with the same shape and dtype. */
function copyInto(dst: Tensor, src: Tensor): void {
  if (!src.isContiguous()) fail("FSG_ERR_LAYOUT", "SwiGLUMLP.forward: the residual needs a contiguous x");
  const bytes = src.numel * src.itemSize;
  const to = dst.storage.ptr + BigInt(dst.byteOffset);
  const from = src.storage.ptr + BigInt(src.byteOffset);
  if (to === from || bytes === 0) return; // in place: out is x
  check(lib.fsg_memcpy_d2d_async(dst.device.handle, to, from, BigInt(bytes)), "fsg_memcpy_d2d_async");
}
