// descriptor.ts: the 48-byte fsg_tensor struct (DLTensor-compatible) in a host buffer.
//
//   offset  field                 type
//        0  data                  u64 (device pointer, or host pointer on the CPU backend)
//        8  device.device_type    i32 (1 CPU, 2 CUDA)
//       12  device.device_id      i32
//       16  ndim                  i32
//       20  dtype.code            u8  (2 float, 4 bfloat)
//       21  dtype.bits            u8
//       22  dtype.lanes           u16
//       24  shape                 const int64_t*
//       32  strides               const int64_t* (elements)
//       40  byte_offset           u64
//
// A Descriptor keeps its shape and strides arrays referenced for as long as it lives; callers
// keep the Descriptor referenced until the native call returns.
import { hostPtr } from "./ffi.ts";

export const DESCRIPTOR_BYTES = 48;
export const DEVICE_CPU = 1;
export const DEVICE_CUDA = 2;

export interface RawDescriptorFields {
  data: bigint;
  deviceType: number;
  deviceId: number;
  dtype: { code: number; bits: number; lanes?: number };
  shape: readonly (number | bigint)[];
  /** In elements; null writes a NULL strides pointer (compact row-major). */
  strides: readonly (number | bigint)[] | null;
  byteOffset?: bigint | number;
}

export class Descriptor {
  readonly bytes = new Uint8Array(DESCRIPTOR_BYTES);
  readonly shape: BigInt64Array;
  readonly strides: BigInt64Array | null;
  /** Address of the struct, for the `const fsg_tensor*` arguments. */
  readonly address: bigint;

  constructor(f: RawDescriptorFields) {
    // ptr() of an empty array is not allowed: keep at least one element.
    this.shape = new BigInt64Array(Math.max(1, f.shape.length));
    f.shape.forEach((v, i) => (this.shape[i] = BigInt(v)));
    this.strides = f.strides === null ? null : new BigInt64Array(Math.max(1, f.strides.length));
    f.strides?.forEach((v, i) => (this.strides![i] = BigInt(v)));
    const view = new DataView(this.bytes.buffer);
    view.setBigUint64(0, BigInt.asUintN(64, f.data), true);
    view.setInt32(8, f.deviceType, true);
    view.setInt32(12, f.deviceId, true);
    view.setInt32(16, f.shape.length, true);
    view.setUint8(20, f.dtype.code);
    view.setUint8(21, f.dtype.bits);
    view.setUint16(22, f.dtype.lanes ?? 1, true);
    view.setBigUint64(24, hostPtr(this.shape), true);
    view.setBigUint64(32, this.strides === null ? 0n : hostPtr(this.strides), true);
    view.setBigUint64(40, BigInt(f.byteOffset ?? 0), true);
    this.address = hostPtr(this.bytes);
  }
}

/** A descriptor built field by field: for tests of what the TypeScript layer never produces. */
export function rawDescriptor(fields: RawDescriptorFields): Descriptor {
  return new Descriptor(fields);
}
