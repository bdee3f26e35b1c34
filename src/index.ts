// fused-swiglu: the public API.
export { FusedSwiGLUError, Status, statusName, type StatusCode } from "./errors.ts";
export { libraryPath, ABI_VERSION } from "./ffi.ts";
export {
  GPT_OSS, GEGLU, GEGLU_TANH, REGLU, BILINEAR, resolveActivation, type ActivationKind, type GluActivation,
} from "./activation.ts";
export { Device, Stream, Event, defaultDevice, hasCuda, cudaDeviceCount, cudaArchs, type Backend, type DeviceOptions, type KernelPath } from "./device.ts";
export { Tensor, Storage, contiguousStrides, type TensorOptions } from "./tensor.ts";
export { Graph, captureGraph, type CaptureOptions } from "./graph.ts";
export {
  f32ToBf16Bits, bf16BitsToF32, f32ToF16Bits, f16BitsToF32, f32ToE4m3Bits, e4m3BitsToF32, e8m0BitsToF32, roundTo,
  type DType,
  type FloatDType,
} from "./dtype.ts";
export { FP8_BLOCK, emptyFp8, fp8ScaleShape, fp8Bytes, quantizeFp8, dequantizeFp8, disposeFp8, type Fp8Tensor } from "./fp8.ts";
export {
  weightsIn, weightsSeparate, weightsLinear, weightsPacked, weightsInterleaved, viewsOf, storageShape, disposeWeights,
  LAYOUTS, type Layout, type WeightViews,
} from "./layouts.ts";
export {
  fusedSwiglu, fusedSwigluBackward, backwardWorkspaceSize, glu, swiglu, biasSwiglu, weightedSwiglu, swigluBackward,
  matmul, unfusedSwiglu,
  type FusedForwardOptions, type FusedBackwardArgs, type GluOptions, type GluBackwardOptions, type GluBackwardResult,
  type MatmulOptions,
} from "./ops.ts";
export {
  SwiGLUFunction, SwiGLUContext, weightGradsLike,
  type SaveMode, type SwiGLUForwardOptions, type SwiGLUBackwardOptions, type SwiGLUGrads,
} from "./function.ts";
export { SwiGLU, type SwiGLUOptions, type SwiGLULayerGrads } from "./layer.ts";
export {
  linear, linearBackward, linearGrads, Linear,
  type LinearOptions, type LinearGrads, type LinearBackwardArgs, type LinearGradOptions, type LinearLayerOptions, type LinearLayerGrads,
} from "./linear.ts";
export { encode as encodeElements, decode as decodeElements } from "./dtype.ts";
export {
  eventDone, streamDone, deviceDone, uploadAsync, toRawAsync, toFloat32Async, pollUntil, pendingHostBuffers,
  type WaitOptions, type UploadOptions, type RawElements,
} from "./async.ts";
export { SwiGLUMLP, type SwiGLUMLPWeights, type SwiGLUMLPOptions, type RandomMLPOptions, type MLPForwardOptions } from "./mlp.ts";
export {
  SafetensorsError, parseSafetensors, openSafetensors, entryOf, loadTensor, loadSwiGLUMLP, encodeSafetensors, writeSafetensors,
  MAX_HEADER_BYTES, type SafetensorsFile, type SafetensorsEntry, type SafetensorsDType, type LoadTensorOptions,
  type LoadMLPOptions, type TensorToWrite,
} from "./safetensors.ts";
