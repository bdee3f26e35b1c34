// activation.ts: the GLU family's parameters (fsg_glu_params in the C ABI) and their encoding.
//   out = act(clamp(gateScale * g)) * (clamp(u) + upOffset) * outScale
// The defaults are plain SwiGLU; GPT_OSS and the named variants below cover the models people run.
import { fail } from "./errors.ts";
import { hostPtr } from "./ffi.ts";

/** The gate's activation: SwiGLU's silu, GEGLU's gelu (tanh approximation or exact), ReGLU's relu, bilinear GLU's identity. */
export type ActivationKind = "silu" | "gelu-tanh" | "gelu" | "relu" | "identity";

export interface GluActivation {
  /** Default "silu". */
  kind?: ActivationKind;
  /** silu only: x * sigmoid(alpha * x). Default 1 (gpt-oss: 1.702). */
  alpha?: number;
  /** > 0: gate clamped to <= limit, up to [-limit, limit] (gpt-oss: 7). Default 0: no clamp. */
  limit?: number;
  /** Added to the up branch after clamping (gpt-oss: 1). Default 0. */
  upOffset?: number;
  /** Multiplies the gate pre-activation first (Falcon-H1's gate multiplier). Default 1. */
  gateScale?: number;
  /** Multiplies the output (Falcon-H1's down multiplier, which commutes with the down projection). Default 1. */
  outScale?: number;
}

/** gpt-oss's clamped SwiGLU: (clamp(u) + 1) * g * sigmoid(1.702 g), g clamped to <= 7, u to [-7, 7]. */
export const GPT_OSS: Readonly<GluActivation> = Object.freeze({ kind: "silu", alpha: 1.702, limit: 7, upOffset: 1 });
export const GEGLU: Readonly<GluActivation> = Object.freeze({ kind: "gelu" });
export const GEGLU_TANH: Readonly<GluActivation> = Object.freeze({ kind: "gelu-tanh" });
export const REGLU: Readonly<GluActivation> = Object.freeze({ kind: "relu" });
export const BILINEAR: Readonly<GluActivation> = Object.freeze({ kind: "identity" });

const KIND_CODES: Record<ActivationKind, number> = { silu: 0, "gelu-tanh": 1, gelu: 2, relu: 3, identity: 4 };

/** The activation with every default filled in. */
export function resolveActivation(a: GluActivation = {}): Required<GluActivation> {
  const kind = a.kind ?? "silu";
  if (!Object.hasOwn(KIND_CODES, kind)) { // not `in`: "toString" would pass and run plain SwiGLU
    fail("FSG_ERR_INVALID_ARGUMENT", `activation.kind: expected one of ${Object.keys(KIND_CODES).join(", ")}, got ${String(kind)}`);
  }
  return { kind, alpha: a.alpha ?? 1, limit: a.limit ?? 0, upOffset: a.upOffset ?? 0, gateScale: a.gateScale ?? 1, outScale: a.outScale ?? 1 };
}

/**
 * The 24-byte fsg_glu_params struct {int32 activation; float alpha, limit, up_offset, gate_scale,
 * out_scale} for `a`, or null (a NULL pointer: plain SwiGLU) when absent. Keep the returned buffer
 * referenced until the call returns.
 */
export function encodeActivation(a: GluActivation | null | undefined): { buffer: ArrayBuffer; address: bigint } | null {
  if (!a) return null;
  const r = resolveActivation(a);
  const buffer = new ArrayBuffer(24);
  new Int32Array(buffer, 0, 1)[0] = KIND_CODES[r.kind];
  new Float32Array(buffer, 4, 5).set([r.alpha, r.limit, r.upOffset, r.gateScale, r.outScale]);
  return { buffer, address: hostPtr(new Uint8Array(buffer)) };
}
