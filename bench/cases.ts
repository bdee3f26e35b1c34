// cases.ts: what is benchmarked. For one shape (M x K x N) and dtype, ShapeBench owns the
// buffers (rotated input sets, shared outputs) and builds, for every op, the runnable
// implementations, their FLOPs and minimum bytes, and the accuracy check of each against the
// float64 host reference on sampled rows/columns (reference.ts).
//
// Weights are one packed [K, 2N] allocation (gate columns first): the fused kernel reads its two
// [K, N] views, cuBLAS reads it as one [K, 2N] matrix, so every implementation reads the same bytes.
//
// Ops and their implementations:
//   fwd               z = silu(x·Wg)·(x·Wu)                      fused | lib-unfused | cublas-unfused | cublas-gemm
//   fwd-save          fwd + pre-activations a, b for backward     fused | (same baselines: unfused keeps y = [a|b] anyway)
//   bwd-store         dx, dWg, dWu from saved a, b                fused | lib-unfused | cublas-unfused | cublas-gemm
//   bwd-recompute     the same from x only (a, b recomputed)      fused | unfused baselines recompute y with a GEMM
//   fwdbwd-store      fwd-save then bwd-store                     fused | unfused fwd then bwd
//   fwdbwd-recompute  fwd (no save) then bwd-recompute            fused | unfused as above (it must keep y)
//   act-fwd           glu on packed y [M, 2N] (Megatron swiglu)   lib
//   act-bwd           its backward (dy [M, 2N])                   lib
// lib-unfused = the library's matmul (x·Wg, x·Wu into the halves of y) + its activation op;
// cublas-unfused = one cuBLAS GEMM x·[Wg|Wu] + our activation op; cublas-gemm = the cuBLAS GEMMs
// alone (the "GEMM floor": what the unfused path costs without its elementwise passes).
import {
  fusedSwiglu, fusedSwigluBackward, glu, matmul, swigluBackward, backwardWorkspaceSize, Storage, Tensor,
  type Device, type FloatDType,
} from "../src/index.ts";
import type { Cublas } from "./cublas.ts";
import { devicePtr, poison, randomRaw, upload } from "./data.ts";
import {
  ErrorAccumulator, referenceCols, referenceRows, sampleIndices, decodeAll, reader,
  type ColRef, type Raw, type RefProblem, type RowRef,
} from "./reference.ts";

export interface Shape {
  M: number;
  K: number;
  N: number;
}

export const OPS = ["fwd", "fwd-save", "bwd-store", "bwd-recompute", "fwdbwd-store", "fwdbwd-recompute", "act-fwd", "act-bwd"] as const;
export type Op = (typeof OPS)[number];
export const IMPLS = ["fused", "lib-unfused", "cublas-unfused", "cublas-gemm", "lib"] as const;
export type Impl = (typeof IMPLS)[number];

export const shapeKey = (s: Shape) => `${s.M}x${s.K}x${s.N}`;

export function parseShape(text: string): Shape {
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`--shapes: expected MxKxN (e.g. 8192x4096x14336), got '${text}'`);
  return { M: Number(m[1]), K: Number(m[2]), N: Number(m[3]) };
}

export const BYTES: Record<FloatDType, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** Matmul FLOPs the op must do (recompute counts only the useful 8·M·K·N). */
export function flopsOf(op: Op, s: Shape): number {
  const f = 2 * s.M * s.K * s.N;
  switch (op) {
    case "fwd":
    case "fwd-save":
      return 2 * f;
    case "bwd-store":
    case "bwd-recompute":
      return 4 * f;
    case "fwdbwd-store":
    case "fwdbwd-recompute":
      return 6 * f;
    default:
      return 0;
  }
}

/** Fewest bytes the op must move: each input read once, each output written once (no biases here). */
export function minBytesOf(op: Op, s: Shape, dtype: FloatDType): number {
  const { M, K, N } = s;
  const e = BYTES[dtype];
  const x = M * K, w = 2 * K * N, mn = M * N;
  switch (op) {
    case "fwd":
      return (x + w + mn) * e;
    case "fwd-save":
      return (x + w + 3 * mn) * e;
    case "bwd-store":
      return (mn + 2 * mn + x + w + x + w) * e; // read dz, a, b, x, W; write dx, dW
    case "bwd-recompute":
      return (mn + x + w + x + w) * e;
    case "fwdbwd-store":
    case "fwdbwd-recompute":
      return (x + w + mn + mn + x + w) * e; // read x, W, dz; write z, dx, dW
    case "act-fwd":
      return 3 * mn * e; // read y [M, 2N], write out [M, N]
    case "act-bwd":
      return 5 * mn * e; // read dout, y; write dy
  }
}

/** Bytes kept between forward and backward, and peak bytes of one forward+backward (from allocations). */
export function memoryOf(s: Shape, dtype: FloatDType, workspaceBytes: number) {
  const { M, K, N } = s;
  const e = BYTES[dtype];
  const x = M * K * e, w = 2 * K * N * e, mn = M * N * e;
  const common = x + w + mn /* dz */ + mn /* z */ + x /* dx */ + w; /* dW */
  return {
    savedStore: x + 2 * mn,
    savedRecompute: x,
    savedUnfused: x + 3 * mn, // x, a, b and silu(a), as an eager framework keeps them
    peakStore: common + 2 * mn + workspaceBytes,
    peakRecompute: common + workspaceBytes,
    peakUnfused: common + 3 * mn /* y, silu(a) */ + 2 * mn, /* dy */
    workspaceBytes,
  };
}

/** One input set (rotated between timed runs). */
interface InputSet {
  x: Tensor;
  w: Tensor; // [K, 2N]
  wg: Tensor;
  wu: Tensor;
  dz: Tensor;
  a: Tensor; // saved pre-activations (from the fused forward of this set)
  b: Tensor;
  y: Tensor; // [M, 2N] = x·W (library matmul): input of the activation ops and of unfused backward
  ya: Tensor;
  yb: Tensor;
}

export interface CheckResult {
  name: string;
  normwise: number;
  maxRelative: number;
}

export interface Runnable {
  op: Op;
  impl: Impl;
  run: (i: number) => void;
  /** Runs once on set 0 into poisoned outputs and compares sampled values with the reference. */
  check?: () => CheckResult[];
}

export interface ShapeBenchOptions {
  device: Device;
  shape: Shape;
  dtype: FloatDType;
  cublas: Cublas | null;
  /** Rotate input sets until they span this many bytes (0: one set). */
  rotateBytes: number;
  maxSets?: number;
  seed?: number;
  sampleRows?: number;
  sampleCols?: number;
}

export class ShapeBench {
  readonly device: Device;
  readonly shape: Shape;
  readonly dtype: FloatDType;
  readonly cublas: Cublas | null;
  readonly sets: InputSet[] = [];
  readonly host: RefProblem;
  readonly workspaceBytes: number;
  // shared outputs
  #z: Tensor;
  #dx: Tensor;
  #workspace: Storage;
  #dw: Tensor;
  #dwg: Tensor;
  #dwu: Tensor;
  #dy: Tensor;
  #dya: Tensor;
  #dyb: Tensor;
  #yOut: Tensor;
  #yOuta: Tensor;
  #yOutb: Tensor;
  #aOut: Tensor;
  #bOut: Tensor;
  #rows: number[];
  #cols: number[];
  #rowRef: RowRef[] | null = null;
  #colRef: ColRef[] | null = null;

  constructor(o: ShapeBenchOptions) {
    const { device, shape, dtype } = o;
    this.device = device;
    this.shape = shape;
    this.dtype = dtype;
    this.cublas = o.cublas;
    const { M, K, N } = shape;
    const e = BYTES[dtype];
    const setBytes = (M * K + 2 * K * N + M * N * 3 + 2 * M * N) * e;
    const nSets = Math.max(1, Math.min(o.maxSets ?? 32, Math.ceil(o.rotateBytes / setBytes)));
    const seed = o.seed ?? 1;
    const xRaw = randomRaw(dtype, M * K, 1, seed);
    const wRaw = randomRaw(dtype, 2 * K * N, 1 / Math.sqrt(K), seed + 1);
    const dzRaw = randomRaw(dtype, M * N, 1, seed + 2);
    const t = (shape: number[]) => Tensor.empty(shape, dtype, { device });
    this.#z = t([M, N]);
    this.#aOut = t([M, N]);
    this.#bOut = t([M, N]);
    this.#dx = t([M, K]);
    this.#dw = t([K, 2 * N]);
    [this.#dwg, this.#dwu] = this.#dw.chunk(2, 1) as [Tensor, Tensor];
    this.#dy = t([M, 2 * N]);
    [this.#dya, this.#dyb] = this.#dy.chunk(2, 1) as [Tensor, Tensor];
    this.#yOut = t([M, 2 * N]);
    [this.#yOuta, this.#yOutb] = this.#yOut.chunk(2, 1) as [Tensor, Tensor];
    for (let s = 0; s < nSets; s++) {
      const x = upload(xRaw, [M, K], dtype, device);
      const w = upload(wRaw, [K, 2 * N], dtype, device);
      const [wg, wu] = w.chunk(2, 1) as [Tensor, Tensor];
      const dz = upload(dzRaw, [M, N], dtype, device);
      const a = t([M, N]);
      const b = t([M, N]);
      fusedSwiglu(x, wg, wu, { out: this.#z, aOut: a, bOut: b });
      const y = t([M, 2 * N]);
      matmul(x, w, { out: y });
      const [ya, yb] = y.chunk(2, 1) as [Tensor, Tensor];
      this.sets.push({ x, w, wg, wu, dz, a, b, y, ya, yb });
      device.synchronize(); // releases the host arrays held for the uploads
    }
    this.host = {
      dtype, M, K, N, x: xRaw, dz: dzRaw,
      wg: { raw: wRaw, rs: 2 * N, cs: 1, off: 0 },
      wu: { raw: wRaw, rs: 2 * N, cs: 1, off: N },
    };
    this.workspaceBytes = backwardWorkspaceSize(this.sets[0]!.x, N);
    // Allocated once, like the baselines' buffers: a workspace allocated per call would put an
    // allocation (and, after each synchronize, a fresh mapping) inside the fused backward's time.
    this.#workspace = new Storage(device, Math.max(this.workspaceBytes, 1));
    this.#workspace.retain();
    this.#rows = sampleIndices(M, o.sampleRows ?? 4);
    this.#cols = sampleIndices(N, o.sampleCols ?? 3);
  }

  get nSets(): number {
    return this.sets.length;
  }

  #set(i: number): InputSet {
    return this.sets[i % this.sets.length]!;
  }

  /** Reference rows and columns (computed once, on first use). */
  #refs(): { rows: RowRef[]; cols: ColRef[] } {
    this.#rowRef ??= referenceRows(this.host, this.#rows);
    this.#colRef ??= referenceCols(this.host, this.#cols);
    return { rows: this.#rowRef, cols: this.#colRef };
  }

  // ---- building blocks ----

  #fusedFwd(s: InputSet, save: boolean): void {
    fusedSwiglu(s.x, s.wg, s.wu, save ? { out: this.#z, aOut: this.#aOut, bOut: this.#bOut } : { out: this.#z });
  }

  #fusedBwd(s: InputSet, stored: boolean, fromForward: boolean): void {
    const a = fromForward ? this.#aOut : s.a;
    const b = fromForward ? this.#bOut : s.b;
    fusedSwigluBackward(s.dz, s.x, s.wg, s.wu, {
      aSaved: stored ? a : null, bSaved: stored ? b : null,
      dx: this.#dx, dwGate: this.#dwg, dwUp: this.#dwu, workspace: this.#workspace, workspaceBytes: this.workspaceBytes,
    });
  }

  /** y = x·W: the library's two GEMMs into the halves of y, or one cuBLAS GEMM. */
  #gemmFwd(s: InputSet, cublas: boolean, y: Tensor, ya: Tensor, yb: Tensor): void {
    const { M, K, N } = this.shape;
    if (cublas) {
      this.cublas!.gemm({ dtype: this.dtype, M, N: 2 * N, K, a: devicePtr(s.x), lda: K, b: devicePtr(s.w), ldb: 2 * N, c: devicePtr(y), ldc: 2 * N });
    } else {
      matmul(s.x, s.wg, { out: ya });
      matmul(s.x, s.wu, { out: yb });
    }
  }

  /** dx = dy·W^T and dW = x^T·dy. */
  #gemmBwd(s: InputSet, cublas: boolean): void {
    const { M, K, N } = this.shape;
    if (cublas) {
      this.cublas!.gemm({ dtype: this.dtype, M, N: K, K: 2 * N, a: devicePtr(this.#dy), lda: 2 * N, b: devicePtr(s.w), ldb: 2 * N, transB: true, c: devicePtr(this.#dx), ldc: K });
      this.cublas!.gemm({ dtype: this.dtype, M: K, N: 2 * N, K: M, a: devicePtr(s.x), lda: K, transA: true, b: devicePtr(this.#dy), ldb: 2 * N, c: devicePtr(this.#dw), ldc: 2 * N });
    } else {
      const wt = s.w.t();
      const xt = s.x.t();
      try {
        matmul(this.#dy, wt, { out: this.#dx });
        matmul(xt, this.#dy, { out: this.#dw });
      } finally {
        wt.dispose();
        xt.dispose();
      }
    }
  }

  #unfusedFwd(s: InputSet, cublas: boolean): void {
    this.#gemmFwd(s, cublas, this.#yOut, this.#yOuta, this.#yOutb);
    glu(this.#yOut, { out: this.#z });
  }

  /** Unfused backward; y is the forward's packed pre-activations. */
  #unfusedBwd(s: InputSet, cublas: boolean, y: Tensor): void {
    swigluBackward(s.dz, y, { dy: this.#dy }).dy;
    this.#gemmBwd(s, cublas);
  }

  // ---- the runnables of one op ----

  runnables(op: Op): Runnable[] {
    const out: Runnable[] = [];
    const hasCublas = this.cublas !== null;
    const add = (impl: Impl, run: (i: number) => void, check?: () => CheckResult[]) => out.push({ op, impl, run, check });
    const baselines = (fwd: boolean, bwd: "none" | "store" | "recompute") => {
      for (const cublas of hasCublas ? [false, true] : [false]) {
        const impl: Impl = cublas ? "cublas-unfused" : "lib-unfused";
        add(impl, (i) => {
          const s = this.#set(i);
          if (fwd) this.#unfusedFwd(s, cublas);
          if (bwd === "recompute" && !fwd) this.#gemmFwd(s, cublas, this.#yOut, this.#yOuta, this.#yOutb);
          if (bwd !== "none") this.#unfusedBwd(s, cublas, fwd || bwd === "recompute" ? this.#yOut : s.y);
        }, () => this.#check(fwd, bwd !== "none", false));
      }
      if (hasCublas) {
        add("cublas-gemm", (i) => {
          const s = this.#set(i);
          if (fwd || bwd === "recompute") this.#gemmFwd(s, true, this.#yOut, this.#yOuta, this.#yOutb);
          if (bwd !== "none") this.#gemmBwd(s, true);
        }, fwd && bwd === "none" ? () => this.#checkY() : undefined);
      }
    };
    switch (op) {
      case "fwd":
      case "fwd-save": {
        const save = op === "fwd-save";
        add("fused", (i) => this.#fusedFwd(this.#set(i), save), () => this.#check(true, false, save));
        baselines(true, "none");
        break;
      }
      case "bwd-store":
      case "bwd-recompute": {
        const stored = op === "bwd-store";
        add("fused", (i) => this.#fusedBwd(this.#set(i), stored, false), () => this.#check(false, true, false));
        baselines(false, stored ? "store" : "recompute");
        break;
      }
      case "fwdbwd-store":
      case "fwdbwd-recompute": {
        const stored = op === "fwdbwd-store";
        add("fused", (i) => {
          const s = this.#set(i);
          this.#fusedFwd(s, stored);
          this.#fusedBwd(s, stored, true);
        }, () => this.#check(true, true, stored));
        baselines(true, stored ? "store" : "recompute");
        break;
      }
      case "act-fwd":
        add("lib", (i) => void glu(this.#set(i).y, { out: this.#z }), () => this.#check(true, false, false));
        break;
      case "act-bwd":
        add("lib", (i) => void swigluBackward(this.#set(i).dz, this.#set(i).y, { dy: this.#dy }), () => this.#checkDy());
        break;
    }
    // Each check closure runs its own runnable's run(0): bind them now that `out` is complete.
    return out.map((r) => ({ ...r, check: r.check ? () => this.#runAndCheck(r) : undefined }));
  }

  // ---- checks ----

  #runAndCheck(r: Runnable): CheckResult[] {
    for (const t of [this.#z, this.#aOut, this.#bOut, this.#dx, this.#dw, this.#dy, this.#yOut]) poison(t);
    r.run(0);
    this.device.synchronize();
    return r.check!();
  }

  #readRow(t: Tensor, r: number): Float64Array {
    const row = t.slice(0, r, 1);
    try {
      return decodeAll(this.dtype, row.toRaw() as Raw);
    } finally {
      row.dispose();
    }
  }

  #check(fwd: boolean, bwd: boolean, save: boolean): CheckResult[] {
    const { rows, cols } = this.#refs();
    const res: CheckResult[] = [];
    const acc = (name: string, pairs: [ArrayLike<number>, ArrayLike<number>][]) => {
      const e = new ErrorAccumulator();
      for (const [o, r] of pairs) e.add(o, r);
      res.push({ name, normwise: e.normwise, maxRelative: e.maxRelative });
    };
    if (fwd) acc("z", rows.map((r) => [this.#readRow(this.#z, r.row), r.z]));
    if (save) {
      acc("a", rows.map((r) => [this.#readRow(this.#aOut, r.row), r.a]));
      acc("b", rows.map((r) => [this.#readRow(this.#bOut, r.row), r.b]));
    }
    if (bwd) {
      acc("dx", rows.map((r) => [this.#readRow(this.#dx, r.row), r.dx]));
      const { K, N } = this.shape;
      const raw = this.#dw.toRaw() as Raw; // [K, 2N]
      const rd = reader(this.dtype);
      const col = (c: number) => Float64Array.from({ length: K }, (_, k) => rd(raw, k * 2 * N + c));
      acc("dWg", cols.map((c) => [col(c.col), c.dwg]));
      acc("dWu", cols.map((c) => [col(N + c.col), c.dwu]));
    }
    return res;
  }

  /** cuBLAS GEMM floor, forward: y = [a | b] on sampled rows (validates the cuBLAS binding). */
  #checkY(): CheckResult[] {
    const { rows } = this.#refs();
    const N = this.shape.N;
    const e = new ErrorAccumulator();
    for (const r of rows) {
      const y = this.#readRow(this.#yOut, r.row);
      e.add(y.subarray(0, N), r.a).add(y.subarray(N), r.b);
    }
    return [{ name: "y=[a|b]", normwise: e.normwise, maxRelative: e.maxRelative }];
  }

  /** act-bwd: dy = [dA | dB] on sampled rows (y from the library GEMM, so this checks it too). */
  #checkDy(): CheckResult[] {
    const { rows } = this.#refs();
    const N = this.shape.N;
    const e = new ErrorAccumulator();
    for (const r of rows) {
      const dy = this.#readRow(this.#dy, r.row);
      e.add(dy.subarray(0, N), r.dA).add(dy.subarray(N), r.dB);
    }
    return [{ name: "dy=[dA|dB]", normwise: e.normwise, maxRelative: e.maxRelative }];
  }

  dispose(): void {
    for (const s of this.sets) for (const t of Object.values(s)) (t as Tensor).dispose();
    this.sets.length = 0;
    for (const t of [this.#z, this.#aOut, this.#bOut, this.#dx, this.#dw, this.#dwg, this.#dwu, this.#dy, this.#dya, this.#dyb, this.#yOut, this.#yOuta, this.#yOutb]) t.dispose();
    this.#workspace.release();
  }
}
