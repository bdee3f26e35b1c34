// fp8.ts: fp8 storage of what backward keeps (Megatron's fp8_input_store, with scales so nothing
// underflows or saturates). A quantized tensor is two device tensors: `data` float8_e4m3fn of the
// original shape, and `scale` float8_e8m0fnu [..., ceil(C / 32)]: every run of 32 columns of a row
// shares one power-of-two scale chosen so its largest value fits e4m3's ±448 (OCP MXFP8 blocks).
// Relative error per element <= 2^-4 of its value (plus 2^-10 of the block scale for values far
// below the block's largest). fused_swiglu.h ("fp8 storage") has the exact rules.
import type { Device } from "./device.ts";
import { check } from "./errors.ts";
import { lib } from "./ffi.ts";
import type { DType } from "./dtype.ts";
import { Tensor } from "./tensor.ts";

/** Columns sharing one scale. */
export const FP8_BLOCK = 32;

export interface Fp8Tensor {
  /** float8_e4m3fn, the original shape. */
  data: Tensor;
  /** float8_e8m0fnu, [..., ceil(C / 32)]. */
  scale: Tensor;
}

/** The scale tensor's shape for data of `shape` ([..., C]). */
export function fp8ScaleShape(shape: readonly number[]): number[] {
  const c = shape[shape.length - 1] ?? 0;
  return [...shape.slice(0, -1), Math.ceil(c / FP8_BLOCK)];
}

/** Uninitialised fp8 storage for a tensor of `shape` (for fusedSwiglu's aOut/bOut and aScale/bScale). */
export function emptyFp8(shape: readonly number[], device: Device): Fp8Tensor {
  const data = Tensor.empty(shape, "float8_e4m3fn", { device });
  try {
    return { data, scale: Tensor.empty(fp8ScaleShape(shape), "float8_e8m0fnu", { device }) };
  } catch (e) {
    data.dispose();
    throw e;
  }
}

/** Bytes an fp8 copy of a [..., C] tensor takes (data + scales). */
export function fp8Bytes(shape: readonly number[]): number {
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const c = shape[shape.length - 1] ?? 0;
  return rows * (c + Math.ceil(c / FP8_BLOCK));
}

/** The fp8 copy of `src` ([..., C], float32/float16/bfloat16), one kernel. */
export function quantizeFp8(src: Tensor, out?: Fp8Tensor): Fp8Tensor {
  src.assertLive("src");
  const q = out ?? emptyFp8(src.shape, src.device);
  try {
    check(lib.fsg_quantize_fp8(src.device.handle, src.descriptor("src").address, q.data.descriptor("dst").address,
      q.scale.descriptor("scale").address), "fsg_quantize_fp8");
    return q;
  } catch (e) {
    if (!out) disposeFp8(q);
    throw e;
  }
}

/** Back to `dtype` (default bfloat16), or into `out`. */
export function dequantizeFp8(q: Fp8Tensor, options: { dtype?: DType; out?: Tensor } = {}): Tensor {
  q.data.assertLive("src");
  const out = options.out ?? Tensor.empty(q.data.shape, options.dtype ?? "bfloat16", { device: q.data.device });
  try {
    check(lib.fsg_dequantize_fp8(q.data.device.handle, q.data.descriptor("src").address, q.scale.descriptor("scale").address,
      out.descriptor("out").address), "fsg_dequantize_fp8");
    return out;
  } catch (e) {
    if (!options.out) out.dispose();
    throw e;
  }
}

export function disposeFp8(q: Fp8Tensor | null | undefined): void {
  q?.data.dispose();
  q?.scale.dispose();
}
