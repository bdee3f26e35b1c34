// reference.ts: the float64 oracle of every op, forward and backward. Row-major dense arrays;
// weights are logical [K, N] whatever their layout on the device.
export type Arr = ArrayLike<number>;

export const sigmoid = (a: number): number => 1 / (1 + Math.exp(-a));
/** a * sigmoid(a): silu(-1e4) = -0, silu(-Inf) = NaN (as -Inf * 0 on the device). */
export const silu = (a: number): number => a * sigmoid(a);
export const dsilu = (a: number): number => {
  const s = sigmoid(a);
  return s * (1 + a * (1 - s));
};

/** c [M, N] = a [M, K] · b [K, N] (+ bias [N]) (+ c0 [M, N]). */
export function gemmRef(a: Arr, b: Arr, M: number, K: number, N: number, bias?: Arr | null, c0?: Arr | null): Float64Array {
  const c = new Float64Array(M * N);
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const aik = a[i * K + k]!;
      const off = k * N;
      for (let j = 0; j < N; j++) row[j] += aik * b[off + j]!;
    }
    for (let j = 0; j < N; j++) c[i * N + j] = row[j]! + (bias ? bias[j]! : 0) + (c0 ? c0[i * N + j]! : 0);
  }
  return c;
}

/** [R, C] -> [C, R]. */
export function transposeRef(a: Arr, R: number, C: number): Float64Array {
  const t = new Float64Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) t[c * R + r] = a[r * C + c]!;
  return t;
}

export interface FusedInputs {
  x: Arr; // [M, K]
  wGate: Arr; // [K, N]
  wUp: Arr; // [K, N]
  bGate?: Arr | null; // [N]
  bUp?: Arr | null; // [N]
  M: number;
  K: number;
  N: number;
}

/** z = silu(a) * b with a = x·Wg + bg, b = x·Wu + bu. */
export function swigluForwardRef(p: FusedInputs): { z: Float64Array; a: Float64Array; b: Float64Array } {
  const a = gemmRef(p.x, p.wGate, p.M, p.K, p.N, p.bGate);
  const b = gemmRef(p.x, p.wUp, p.M, p.K, p.N, p.bUp);
  const z = new Float64Array(p.M * p.N);
  for (let i = 0; i < z.length; i++) z[i] = silu(a[i]!) * b[i]!;
  return { z, a, b };
}

/**
 * The error scale of the forward: with Sa = |x|·|Wg| + |bg| and Sb = |x|·|Wu| + |bu| (what an
 * fp32 accumulation's error is proportional to), z's scale is |silu'(a)|·|b|·Sa + |silu(a)|·Sb + |z|.
 */
export function swigluForwardScaleRef(p: FusedInputs): { z: Float64Array; a: Float64Array; b: Float64Array } {
  const abs = (a: Arr | null | undefined) => (a ? Float64Array.from(a as ArrayLike<number>, Math.abs) : null);
  const { a, b, z } = swigluForwardRef(p);
  const xa = abs(p.x)!;
  const sa = gemmRef(xa, abs(p.wGate)!, p.M, p.K, p.N, abs(p.bGate));
  const sb = gemmRef(xa, abs(p.wUp)!, p.M, p.K, p.N, abs(p.bUp));
  const sz = new Float64Array(z.length);
  for (let i = 0; i < z.length; i++) {
    sz[i] = Math.abs(dsilu(a[i]!) * b[i]!) * sa[i]! + Math.abs(silu(a[i]!)) * sb[i]! + Math.abs(z[i]!);
  }
  return { z: sz, a: sa, b: sb };
}

export interface FusedGradsRef {
  dx: Float64Array;
  dwGate: Float64Array;
  dwUp: Float64Array;
  dbGate: Float64Array;
  dbUp: Float64Array;
}

export function columnSum(a: Arr, M: number, N: number): Float64Array {
  const s = new Float64Array(N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) s[j] += a[i * N + j]!;
  return s;
}

/** Gradients of sum(dz ⊙ z) w.r.t. x, Wg, Wu, bg, bu. */
export function swigluBackwardRef(p: FusedInputs, dz: Arr): FusedGradsRef {
  const { a, b } = swigluForwardRef(p);
  return swigluBackwardFromPreactivationsRef(p, a, b, dz);
}

/** The same from given pre-activations a, b [M, N] (e.g. the ones a stored-mode backward reads). */
export function swigluBackwardFromPreactivationsRef(p: FusedInputs, a: Arr, b: Arr, dz: Arr): FusedGradsRef {
  const { M, K, N } = p;
  const da = new Float64Array(M * N);
  const db = new Float64Array(M * N);
  for (let i = 0; i < M * N; i++) {
    da[i] = dz[i]! * b[i]! * dsilu(a[i]!);
    db[i] = dz[i]! * silu(a[i]!);
  }
  const dxg = gemmRef(da, transposeRef(p.wGate, K, N), M, N, K);
  const dx = gemmRef(db, transposeRef(p.wUp, K, N), M, N, K, null, dxg);
  const xt = transposeRef(p.x, M, K);
  return {
    dx,
    dwGate: gemmRef(xt, da, K, M, N),
    dwUp: gemmRef(xt, db, K, M, N),
    dbGate: columnSum(da, M, N),
    dbUp: columnSum(db, M, N),
  };
}

/** d²silu/da² = s(1-s)(2 + a(1-2s)), s = sigmoid(a). */
export const d2silu = (a: number): number => {
  const s = sigmoid(a);
  return s * (1 - s) * (2 + a * (1 - 2 * s));
};

/**
 * The error scale of the backward: the same computation on absolute values (|dA|·|Wg|^T + ...,
 * |x|^T·|dA|, sums of |dA|), so that cancellation in the exact result does not inflate the
 * relative error of rounded intermediates (dA, dB are held in the call's dtype). dA and dB also
 * carry the error of the pre-activations they are computed from (accumulated in fp32, and
 * rounded to the dtype when stored): their sensitivity to a and b times the error scales of a and
 * b (Sa = |x|·|Wg| + |bg|, Sb likewise), as in swigluForwardScaleRef. Without it a dA near a
 * zero of silu' (a = -1.28) has an unbounded relative error.
 */
export function swigluBackwardScaleRef(p: FusedInputs, dz: Arr): FusedGradsRef {
  const abs = (a: Arr) => Float64Array.from(a as ArrayLike<number>, Math.abs);
  const { M, K, N } = p;
  const { a, b } = swigluForwardRef(p);
  const fwd = swigluForwardScaleRef(p);
  const da = new Float64Array(M * N);
  const db = new Float64Array(M * N);
  for (let i = 0; i < M * N; i++) {
    const d = Math.abs(dz[i]!), ai = a[i]!, bi = b[i]!;
    da[i] = d * (Math.abs(bi * dsilu(ai)) + Math.abs(bi * d2silu(ai)) * fwd.a[i]! + Math.abs(dsilu(ai)) * fwd.b[i]!);
    db[i] = d * (Math.abs(silu(ai)) + Math.abs(dsilu(ai)) * fwd.a[i]!);
  }
  const wg = abs(p.wGate);
  const wu = abs(p.wUp);
  const dxg = gemmRef(da, transposeRef(wg, K, N), M, N, K);
  const xt = transposeRef(abs(p.x), M, K);
  return {
    dx: gemmRef(db, transposeRef(wu, K, N), M, N, K, null, dxg),
    dwGate: gemmRef(xt, da, K, M, N),
    dwUp: gemmRef(xt, db, K, M, N),
    dbGate: columnSum(da, M, N),
    dbUp: columnSum(db, M, N),
  };
}

export interface GluInputs {
  y: Arr; // [M, 2N]
  M: number;
  N: number;
  bias?: Arr | null; // [2N]
  weights?: Arr | null; // [M]
}

/** out = silu(y1 + b1) * (y2 + b2) * w. */
export function gluForwardRef(p: GluInputs): Float64Array {
  const { M, N, y, bias, weights } = p;
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const g = y[i * 2 * N + j]! + (bias ? bias[j]! : 0);
      const u = y[i * 2 * N + N + j]! + (bias ? bias[N + j]! : 0);
      out[i * N + j] = silu(g) * u * (weights ? weights[i]! : 1);
    }
  }
  return out;
}

/** Gradients of sum(dout ⊙ out) w.r.t. y [M, 2N], bias [2N] and weights [M]. */
export function gluBackwardRef(p: GluInputs, dout: Arr): { dy: Float64Array; dbias: Float64Array; dweights: Float64Array } {
  const { M, N, y, bias, weights } = p;
  const dy = new Float64Array(M * 2 * N);
  const dweights = new Float64Array(M);
  for (let i = 0; i < M; i++) {
    const w = weights ? weights[i]! : 1;
    let sw = 0;
    for (let j = 0; j < N; j++) {
      const g = y[i * 2 * N + j]! + (bias ? bias[j]! : 0);
      const u = y[i * 2 * N + N + j]! + (bias ? bias[N + j]! : 0);
      const d = dout[i * N + j]!;
      dy[i * 2 * N + j] = d * w * u * dsilu(g);
      dy[i * 2 * N + N + j] = d * w * silu(g);
      sw += d * silu(g) * u;
    }
    dweights[i] = sw;
  }
  return { dy, dbias: columnSum(dy, M, 2 * N), dweights };
}
