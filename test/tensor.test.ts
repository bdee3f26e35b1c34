// Tensor: dtype conversions (RNE ties, NaN, Inf, fp16 subnormals), upload/download roundtrips,
// views and strided downloads/writes, dispose semantics, devices, streams and events.
import { describe, expect, test } from "bun:test";
import { cudaArchs, Device } from "../src/device.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundTo } from "../src/dtype.ts";
import { FusedSwiGLUError } from "../src/errors.ts";
import { weightsIn } from "../src/layouts.ts";
import { Storage, Tensor } from "../src/tensor.ts";
import { DTYPE_LIST, expectError, forEachBackend, randomValues } from "./helpers.ts";

describe("dtype conversions (host)", () => {
  test("bfloat16: round to nearest even on ties, overflow to inf, NaN stays NaN", () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even (down)
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie -> up
    expect(f32ToBf16Bits(-2)).toBe(0xc000);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // max float32 rounds up to inf
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133); // bf16 subnormal
  });

  test("float16: ties to even, overflow, subnormals, NaN", () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie at the top -> inf
    expect(f32ToF16Bits(-1e6)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie -> even (2)
    expect(f32ToF16Bits(2 ** -25 + 2 ** -35)).toBe(0x0001); // above the tie
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(1e-10)).toBe(0);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
  });

  test("every float16 and bfloat16 bit pattern survives decode -> encode", () => {
    for (let h = 0; h < 0x10000; h++) {
      const f = f16BitsToF32(h);
      if (Number.isNaN(f)) expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(f)))).toBe(true);
      else if (f32ToF16Bits(f) !== h) throw new Error(`float16 0x${h.toString(16)} -> ${f} -> 0x${f32ToF16Bits(f).toString(16)}`);
      const b = bf16BitsToF32(h);
      if (!Number.isNaN(b) && f32ToBf16Bits(b) !== h) throw new Error(`bfloat16 0x${h.toString(16)} -> ${b} -> 0x${f32ToBf16Bits(b).toString(16)}`);
    }
  });

  test("float16 encoding agrees with Math.f16round where the runtime has it", () => {
    const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round;
    if (!f16round) return;
    const values = randomValues(20000, 70000);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]! * 10 ** ((i % 12) - 8);
      const f = Math.fround(v);
      expect(f16BitsToF32(f32ToF16Bits(f))).toBe(f16round(f));
    }
  });
});

forEachBackend("tensor", (device) => {
  for (const dtype of DTYPE_LIST) {
    test(`${dtype}: upload/download roundtrip equals host rounding; raw roundtrip is exact`, () => {
      const dev = device();
      const data = randomValues(1000, 100);
      data[0] = NaN;
      data[1] = Infinity;
      data[2] = -0;
      data[3] = 1e-7;
      const t = Tensor.fromFloat32(data, [10, 100], dtype, { device: dev });
      const back = t.toFloat32();
      const want = roundTo(dtype, data);
      expect(Number.isNaN(back[0]!)).toBe(true);
      expect(Array.from(back.subarray(1))).toEqual(Array.from(want.subarray(1)));
      expect(Object.is(back[2], -0)).toBe(true);
      const raw = t.toRaw();
      const t2 = Tensor.fromRaw(raw, [10, 100], dtype, { device: dev });
      expect(Array.from(t2.toRaw())).toEqual(Array.from(raw));
      t.dispose();
      t2.dispose();
    });
  }

  test("randn/uniform are deterministic per seed and never all zeros", () => {
    const dev = device();
    const a = Tensor.randn([64], "float32", { device: dev, seed: 7, scale: 2 });
    const b = Tensor.randn([64], "float32", { device: dev, seed: 7, scale: 2 });
    const c = Tensor.randn([64], "float32", { device: dev, seed: 8, scale: 2 });
    expect(Array.from(a.toFloat32())).toEqual(Array.from(b.toFloat32()));
    expect(Array.from(a.toFloat32())).not.toEqual(Array.from(c.toFloat32()));
    expect(a.toFloat32().some((v) => v !== 0)).toBe(true);
    const u = Tensor.uniform([1000], -0.5, 0.25, "float32", { device: dev, seed: 3 }).toFloat32();
    expect(u.every((v) => v >= -0.5 && v < 0.25)).toBe(true);
    for (const t of [a, b, c]) t.dispose();
  });

  test("zeros, full, fill (contiguous and strided)", () => {
    const dev = device();
    const z = Tensor.zeros([3, 4], "bfloat16", { device: dev });
    expect(Array.from(z.toFloat32())).toEqual(new Array(12).fill(0));
    const f = Tensor.full([5], 2.5, "float16", { device: dev });
    expect(Array.from(f.toFloat32())).toEqual([2.5, 2.5, 2.5, 2.5, 2.5]);
    const base = Tensor.fromFloat32(Array.from({ length: 12 }, (_, i) => i), [3, 4], "float32", { device: dev });
    base.slice(1, 1, 2).fill(-1); // columns 1..2
    expect(Array.from(base.toFloat32())).toEqual([0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11]);
    base.t().slice(0, 3, 1).fill(NaN); // column 3 through a transposed view
    const v = base.toFloat32();
    expect([3, 7, 11].every((i) => Number.isNaN(v[i]!))).toBe(true);
    expect(v[0]).toBe(0);
    for (const t of [z, f, base]) t.dispose();
  });

  test("views: transpose, slice, chunk, asStrided, reshape read the right elements", () => {
    const dev = device();
    const vals = Array.from({ length: 24 }, (_, i) => i);
    const t = Tensor.fromFloat32(vals, [4, 6], "float32", { device: dev });
    const tt = t.t();
    expect(tt.shape).toEqual([6, 4]);
    expect(tt.strides).toEqual([1, 6]);
    expect(Array.from(tt.toFloat32())).toEqual([0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23]);
    const s = t.slice(1, 2, 3);
    expect(s.offset).toBe(2);
    expect(Array.from(s.toFloat32())).toEqual([2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22]);
    const rows = t.slice(0, 1, 2);
    expect(rows.isContiguous()).toBe(true);
    expect(Array.from(rows.toFloat32())).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    const [left, right] = t.chunk(2, -1) as [Tensor, Tensor];
    expect(Array.from(right.toFloat32())).toEqual([3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23]);
    const even = t.asStrided([4, 3], [6, 2], 0);
    expect(Array.from(even.toFloat32())).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]);
    const bcast = t.asStrided([2, 3], [0, 1], 1);
    expect(Array.from(bcast.toFloat32())).toEqual([1, 2, 3, 1, 2, 3]);
    const r = t.reshape([2, -1, 3]);
    expect(r.shape).toEqual([2, 4, 3]);
    expect(Array.from(r.toFloat32())).toEqual(vals);
    expect(r.transpose(0, 2).shape).toEqual([3, 4, 2]);
    expect(Array.from(t.slice(0, 0, 0).toFloat32())).toEqual([]);
    for (const v of [t, tt, s, rows, left, right, even, bcast, r]) v.dispose();
  });

  test("writeFloat32 into a strided view changes only its elements (read-modify-write)", () => {
    const dev = device();
    const t = Tensor.fromFloat32(new Array(12).fill(1), [3, 4], "float16", { device: dev });
    t.asStrided([3, 2], [4, 2], 1).writeFloat32([10, 11, 12, 13, 14, 15]);
    expect(Array.from(t.toFloat32())).toEqual([1, 10, 1, 11, 1, 12, 1, 13, 1, 14, 1, 15]);
    t.dispose();
  });

  test("layouts are views of one storage with the documented strides", () => {
    const dev = device();
    const [K, N] = [3, 2];
    const lin = weightsIn("linear", K, N, { device: dev });
    expect(lin.storage.shape).toEqual([2 * N, K]);
    expect(lin.gate.strides).toEqual([1, K]);
    expect(lin.up.offset).toBe(N * K);
    lin.storage.writeFloat32(Array.from({ length: 2 * N * K }, (_, i) => i));
    expect(Array.from(lin.gate.toFloat32())).toEqual([0, 3, 1, 4, 2, 5]); // [K, N] = transpose of rows 0..N-1
    const pk = weightsIn("packed-up-gate", K, N, { device: dev });
    pk.storage.writeFloat32(Array.from({ length: 2 * N * K }, (_, i) => i));
    expect(Array.from(pk.up.toFloat32())).toEqual([0, 1, 4, 5, 8, 9]);
    expect(Array.from(pk.gate.toFloat32())).toEqual([2, 3, 6, 7, 10, 11]);
    const il = weightsIn("interleaved", K, N, { device: dev });
    il.storage.writeFloat32(Array.from({ length: 2 * N * K }, (_, i) => i));
    expect(Array.from(il.gate.toFloat32())).toEqual([0, 2, 4, 6, 8, 10]);
    expect(Array.from(il.up.toFloat32())).toEqual([1, 3, 5, 7, 9, 11]);
    for (const w of [lin, pk, il]) for (const t of [w.gate, w.up, w.storage]) t.dispose();
  });

  test("dispose: views keep the storage alive; the last one frees it; double dispose is a no-op; using works", () => {
    const dev = device();
    const base = Tensor.randn([8, 8], "float32", { device: dev, seed: 1 });
    const storage = base.storage;
    const view = base.slice(0, 2, 3);
    expect(storage.refs).toBe(2);
    const expected = Array.from(view.toFloat32());
    base.dispose();
    expect(base.disposed).toBe(true);
    expect(storage.freed).toBe(false);
    expect(Array.from(view.toFloat32())).toEqual(expected);
    base.dispose(); // no-op: does not drop the view's reference
    expect(storage.refs).toBe(1);
    view.dispose();
    expect(storage.freed).toBe(true);
    let err: unknown = null;
    try {
      view.toFloat32();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FusedSwiGLUError);
    expect((err as FusedSwiGLUError).code).toBe("FSG_ERR_INVALID_ARGUMENT");
    let inner: Tensor | null = null;
    {
      using scoped = Tensor.zeros([4], "float32", { device: dev });
      inner = scoped;
    }
    expect(inner.disposed).toBe(true);
    expect(inner.storage.freed).toBe(true);
  });

  test("device properties", () => {
    const dev = device();
    expect(dev.name.length).toBeGreaterThan(0);
    if (dev.backend === "cpu") {
      expect(dev.computeCapability).toBe(0);
      expect(dev.hopperKernels).toBe(false);
      expect(dev.name).toContain("CPU");
      dev.setNumThreads(1);
      dev.setNumThreads(0);
    } else {
      expect(dev.computeCapability).toBeGreaterThanOrEqual(80);
      // The sm_90a kernels run exactly where the GPU is 9.0 and the library has sm_90a SASS, unless
      // CUDA_FORCE_PTX_JIT=1 makes the driver compile the PTX (compute_90: no sm_90a code) instead.
      const sass90a = cudaArchs().split(" ").includes("sm_90a") && process.env.CUDA_FORCE_PTX_JIT !== "1";
      expect(dev.hopperKernels).toBe(dev.computeCapability === 90 && sass90a);
      const m = dev.memInfo();
      expect(m.total).toBeGreaterThan(0);
      expect(m.free).toBeLessThanOrEqual(m.total);
    }
    const m = dev.memInfo();
    expect(typeof m.free).toBe("number");
    dev.synchronize();
  });

  test("streams and events: record, query, synchronize, elapsed time, withStream", () => {
    const dev = device();
    using stream = dev.createStream();
    using start = dev.createEvent();
    using end = dev.createEvent();
    const result = dev.withStream(stream, () => {
      expect(dev.stream).toBe(stream);
      start.record();
      const t = Tensor.randn([256, 256], "float32", { device: dev, seed: 5 });
      const sum = t.toFloat32().reduce((a, b) => a + Math.abs(b), 0);
      end.record();
      t.dispose();
      return sum;
    });
    expect(result).toBeGreaterThan(0);
    expect(dev.stream).toBeNull();
    end.synchronize();
    expect(end.query()).toBe(true);
    expect(start.query()).toBe(true);
    const ms = start.elapsedMs(end);
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(ms).toBeLessThan(60_000);
    stream.synchronize();
    expect(stream.query()).toBe(true);
    dev.stream = stream;
    stream.dispose(); // the device falls back to the default stream
    expect(dev.stream).toBeNull();
    expect(() => stream.query()).toThrow(FusedSwiGLUError);
    stream.dispose(); // no-op
  });

  test("bad sizes, raw arrays and offsets are refused before anything is allocated or read", () => {
    const dev = device();
    const before = dev.liveStorages;
    // A Float32Array for bfloat16 would copy twice the allocation; a Uint16Array for float32 half.
    expectError(() => Tensor.fromRaw(new Float32Array(8), [8], "bfloat16", { device: dev }), "FSG_ERR_DTYPE", "Uint16Array", "Float32Array");
    expectError(() => Tensor.fromRaw(new Uint16Array(8), [8], "float32", { device: dev }), "FSG_ERR_DTYPE", "Float32Array", "Uint16Array");
    // 2^64 bytes would wrap to a 1-byte allocation in the FFI's u64.
    expectError(() => Tensor.empty([2 ** 31, 2 ** 31, 4], "float32", { device: dev }), "FSG_ERR_TOO_LARGE", "shape");
    expectError(() => new Storage(dev, 2 ** 64), "FSG_ERR_TOO_LARGE", "bytes");
    for (const bytes of [-1, 10.5, NaN]) expectError(() => new Storage(dev, bytes), "FSG_ERR_INVALID_ARGUMENT", "bytes");
    const t = Tensor.fromFloat32([1, 2, 3, 4], [4], "float32", { device: dev });
    for (const offset of [0.5, -1]) expectError(() => t.asStrided([2], [1], offset), "FSG_ERR_INVALID_ARGUMENT", "offset");
    const tail = t.asStrided([2], [1], 2);
    expect(Array.from(tail.toFloat32())).toEqual([3, 4]);
    tail.dispose();
    t.dispose();
    expect(dev.liveStorages).toBe(before);
  });

  test("a disposed stream or event is refused, not used", () => {
    const dev = device();
    const s = dev.createStream();
    s.dispose();
    expectError(() => { dev.stream = s; }, "FSG_ERR_INVALID_ARGUMENT", "stream", "disposed");
    expectError(() => dev.withStream(s, () => 1), "FSG_ERR_INVALID_ARGUMENT", "stream", "disposed");
    expect(dev.stream).toBeNull();
    const start = dev.createEvent();
    const end = dev.createEvent();
    start.record();
    end.record();
    end.dispose();
    expectError(() => start.elapsedMs(end), "FSG_ERR_INVALID_ARGUMENT", "end", "disposed");
    start.dispose();
  });

  test("fill(0) on a tensor of a disposed device is refused like any other fill", () => {
    const other = Device.open({ backend: device().backend });
    const t = Tensor.zeros([4], "float32", { device: other });
    other.dispose(); // t keeps the context alive, but the device is closed to new work
    expectError(() => t.fill(0), "FSG_ERR_INVALID_ARGUMENT", "disposed");
    expectError(() => t.fill(1), "FSG_ERR_INVALID_ARGUMENT", "disposed");
    t.dispose();
  });

  test("a tensor moves between devices through the host", () => {
    const dev = device();
    using cpu = Device.open({ backend: "cpu" });
    const t = Tensor.randn([5, 7], "bfloat16", { device: dev, seed: 11 });
    const moved = t.to(cpu);
    expect(moved.device).toBe(cpu);
    expect(Array.from(moved.toFloat32())).toEqual(Array.from(t.toFloat32()));
    const c = t.t().contiguous();
    expect(c.isContiguous()).toBe(true);
    expect(Array.from(c.toFloat32())).toEqual(Array.from(t.t().toFloat32()));
    for (const x of [t, moved, c]) x.dispose();
  });
});
