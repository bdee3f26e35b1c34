// Bad inputs: each case asserts the error class, the code, that the message names the argument,
// and that the next valid call still works.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Descriptor, DEVICE_CUDA, rawDescriptor, type RawDescriptorFields } from "../src/descriptor.ts";
import { cudaArchs, Device, type KernelPath } from "../src/device.ts";
import { DTYPES } from "../src/dtype.ts";
import { check } from "../src/errors.ts";
import { hostPtr, lib } from "../src/ffi.ts";
import { disposeWeights, weightsIn, type WeightViews } from "../src/layouts.ts";
import { SwiGLU } from "../src/layer.ts";
import { linearBackward } from "../src/linear.ts";
import { backwardWorkspaceSize, fusedSwiglu, fusedSwigluBackward, glu, matmul, swigluBackward } from "../src/ops.ts";
import { Storage, Tensor } from "../src/tensor.ts";
import { SwiGLUContext, SwiGLUFunction } from "../src/function.ts";
import { expectError, f64, hasCuda, randn, randomWeights, RTOL } from "./helpers.ts";
import { swigluForwardRef } from "./reference.ts";

/** The fields of a tensor's descriptor, to alter one of them. */
function fieldsOf(t: Tensor): RawDescriptorFields {
  return {
    data: t.storage.ptr,
    deviceType: t.device.deviceType,
    deviceId: t.device.ordinal,
    dtype: DTYPES[t.dtype],
    shape: t.shape,
    strides: t.strides,
    byteOffset: t.byteOffset,
  };
}

const A = (d: Descriptor | null): bigint => d?.address ?? 0n;

describe("errors [cpu backend]", () => {
  let dev: Device;
  let x: Tensor;
  let w: WeightViews;
  const [M, K, N] = [6, 8, 5];
  beforeAll(() => {
    dev = Device.open({ backend: "cpu" });
    x = randn([M, K], "float32", dev);
    w = randomWeights("packed", K, N, "float32", dev);
  });
  afterAll(() => {
    x.dispose();
    disposeWeights(w);
    dev.dispose();
  });

  /** A valid forward that must still succeed after any error. */
  function stillWorks(): void {
    const z = fusedSwiglu(x, w.gate, w.up);
    const ref = swigluForwardRef({ x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M, K, N });
    expect(z.toFloat32()).toBeAllClose(ref.z, { rtol: RTOL.float32 });
    z.dispose();
  }

  /** A raw forward with x replaced by a hand-made descriptor. */
  function rawForward(xd: Descriptor, z: Tensor): void {
    check(
      lib.fsg_swiglu_forward(dev.handle, xd.address, w.gate.descriptor().address, w.up.descriptor().address, 0n, 0n,
        z.descriptor().address, 0n, 0n, 0n, 0n, 0n),
      "fsg_swiglu_forward",
    );
  }

  test("wrong rank of x and of a weight", () => {
    const x1 = randn([K], "float32", dev);
    expectError(() => fusedSwiglu(x1, w.gate, w.up), "FSG_ERR_SHAPE", "x", "rank");
    stillWorks();
    const w3 = randn([1, K, N], "float32", dev);
    expectError(() => fusedSwiglu(x, w3, w.up), "FSG_ERR_SHAPE", "w_gate", "rank");
    stillWorks();
    x1.dispose();
    w3.dispose();
  });

  test("K mismatch, N mismatch, bias size mismatch", () => {
    const wk = randn([K + 1, N], "float32", dev);
    expectError(() => fusedSwiglu(x, wk, w.up), "FSG_ERR_SHAPE", "w_gate", String(K));
    expectError(() => fusedSwiglu(x, w.gate, wk), "FSG_ERR_SHAPE", "w_up");
    const wn = randn([K, N + 1], "float32", dev);
    expectError(() => fusedSwiglu(x, w.gate, wn), "FSG_ERR_SHAPE", "w_up", "N");
    const b = randn([N + 1], "float32", dev);
    expectError(() => fusedSwiglu(x, w.gate, w.up, { bGate: b }), "FSG_ERR_SHAPE", "b_gate");
    expectError(() => fusedSwiglu(x, w.gate, w.up, { bUp: b }), "FSG_ERR_SHAPE", "b_up");
    const zBad = Tensor.empty([M, N + 1], "float32", { device: dev });
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: zBad }), "FSG_ERR_SHAPE", "z");
    const zRows = Tensor.empty([M + 1, N], "float32", { device: dev });
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: zRows }), "FSG_ERR_SHAPE", "z");
    stillWorks();
    for (const t of [wk, wn, b, zBad, zRows]) t.dispose();
  });

  test("dtype mismatch between arguments", () => {
    const wh = randn([K, N], "float16", dev);
    expectError(() => fusedSwiglu(x, wh, w.up), "FSG_ERR_DTYPE", "w_gate", "float16", "float32");
    const bb = randn([N], "bfloat16", dev);
    expectError(() => fusedSwiglu(x, w.gate, w.up, { bGate: bb }), "FSG_ERR_DTYPE", "b_gate");
    const zh = Tensor.empty([M, N], "float16", { device: dev });
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: zh }), "FSG_ERR_DTYPE", "z");
    stillWorks();
    for (const t of [wh, bb, zh]) t.dispose();
  });

  test("unsupported dtype (raw descriptor {code 0, bits 32} and lanes 2)", () => {
    const z = Tensor.empty([M, N], "float32", { device: dev });
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), dtype: { code: 0, bits: 32 } }), z), "FSG_ERR_DTYPE", "x", "dtype");
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), dtype: { code: 2, bits: 64 } }), z), "FSG_ERR_DTYPE", "x");
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), dtype: { code: 2, bits: 32, lanes: 2 } }), z), "FSG_ERR_DTYPE", "x");
    // NULL strides means compact row-major: valid.
    rawForward(rawDescriptor({ ...fieldsOf(x), strides: null }), z);
    stillWorks();
    z.dispose();
  });

  test("negative strides are rejected", () => {
    const store = randn([K, N], "float32", dev);
    const flipped = store.asStrided([K, N], [-N, 1], (K - 1) * N); // rows in reverse order
    expectError(() => fusedSwiglu(x, flipped, w.up), "FSG_ERR_LAYOUT", "w_gate", "negative stride");
    stillWorks();
    flipped.dispose();
    store.dispose();
  });

  test("outputs whose strides write an element twice", () => {
    const small = Tensor.empty([1, N], "float32", { device: dev });
    const broadcast = small.asStrided([M, N], [0, 1], 0);
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: broadcast }), "FSG_ERR_LAYOUT", "z");
    const yv = randn([M, 2 * N], "float32", dev);
    const out1 = Tensor.empty([N], "float32", { device: dev });
    const outB = out1.asStrided([M, N], [0, 1], 0);
    expectError(() => glu(yv, { out: outB }), "FSG_ERR_LAYOUT", "out");
    stillWorks();
    for (const t of [small, broadcast, yv, out1, outB]) t.dispose();
  });

  test("an output aliasing an input or another output", () => {
    const xz = randn([M, K], "float32", dev);
    const zOnX = xz.asStrided([M, N], [K, 1], 0);
    expectError(() => fusedSwiglu(xz, w.gate, w.up, { out: zOnX }), "FSG_ERR_ALIAS", "z", "x");
    const a = Tensor.empty([M, N], "float32", { device: dev });
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: a, aOut: a.view() }), "FSG_ERR_ALIAS", "a_out");
    const zOnW = w.storage.asStrided([M, N], [2 * N, 1], 0);
    expectError(() => fusedSwiglu(x, w.gate, w.up, { out: zOnW }), "FSG_ERR_ALIAS", "z", "w_gate");
    const y = randn([M, 2 * N], "float32", dev);
    expectError(() => glu(y, { out: y.slice(1, 0, N) }), "FSG_ERR_ALIAS", "out", "y");
    expectError(() => matmul(x, w.gate, { out: x.slice(1, 0, N) }), "FSG_ERR_ALIAS", "c", "a");
    stillWorks();
    for (const t of [xz, zOnX, a, zOnW, y]) t.dispose();
  });

  test("a tensor claiming another device (a CUDA descriptor given to a CPU context)", () => {
    const z = Tensor.empty([M, N], "float32", { device: dev });
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), deviceType: DEVICE_CUDA, deviceId: 0 }), z), "FSG_ERR_DEVICE_MISMATCH", "x");
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), deviceId: 3 }), z), "FSG_ERR_DEVICE_MISMATCH", "x");
    stillWorks();
    z.dispose();
  });

  test.if(hasCuda)("a CPU-backend tensor given to a CUDA device", () => {
    using cuda = Device.open({ backend: "cuda" });
    using xc = randn([M, K], "float32", cuda);
    const wc = randomWeights("packed", K, N, "float32", cuda);
    expectError(() => fusedSwiglu(xc, w.gate, wc.up), "FSG_ERR_DEVICE_MISMATCH", "w_gate");
    expectError(() => fusedSwiglu(x, wc.gate, wc.up), "FSG_ERR_DEVICE_MISMATCH");
    using zc = fusedSwiglu(xc, wc.gate, wc.up);
    expect(zc.toFloat32().length).toBe(M * N);
    disposeWeights(wc);
    stillWorks();
  });

  test("NULL pointers: data, descriptor, context", () => {
    const z = Tensor.empty([M, N], "float32", { device: dev });
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), data: 0n }), z), "FSG_ERR_INVALID_ARGUMENT", "x", "NULL");
    expectError(
      () => check(lib.fsg_swiglu_forward(dev.handle, 0n, A(w.gate.descriptor()), A(w.up.descriptor()), 0n, 0n, A(z.descriptor()), 0n, 0n, 0n, 0n, 0n), "fsg_swiglu_forward"),
      "FSG_ERR_INVALID_ARGUMENT", "x",
    );
    expectError(
      () => check(lib.fsg_swiglu_forward(dev.handle, A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()), 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n), "fsg_swiglu_forward"),
      "FSG_ERR_INVALID_ARGUMENT", "z",
    );
    expectError(() => check(lib.fsg_context_synchronize(0n), "fsg_context_synchronize"), "FSG_ERR_INVALID_ARGUMENT", "ctx");
    expectError(
      () => check(lib.fsg_glu_forward(dev.handle, A(x.descriptor()), 0n, 0n, 0n, 0n), "fsg_glu_forward"),
      "FSG_ERR_INVALID_ARGUMENT", "out",
    );
    stillWorks();
    z.dispose();
  });

  test("disposed tensor: clear error naming the argument; double dispose is a no-op", () => {
    const xd = randn([M, K], "float32", dev);
    xd.dispose();
    expect(xd.disposed).toBe(true);
    expect(() => xd.dispose()).not.toThrow(); // double dispose: no-op
    const err = expectError(() => fusedSwiglu(xd, w.gate, w.up), "FSG_ERR_INVALID_ARGUMENT", "tensor 'x' was disposed");
    expect(err.status).toBe(1);
    expectError(() => xd.toFloat32(), "FSG_ERR_INVALID_ARGUMENT", "was disposed");
    const wd = randn([K, N], "float32", dev);
    wd.dispose();
    wd.dispose();
    expectError(() => fusedSwiglu(x, wd, w.up), "FSG_ERR_INVALID_ARGUMENT", "tensor 'wGate' was disposed");
    expectError(() => fusedSwiglu(x, w.gate, wd), "FSG_ERR_INVALID_ARGUMENT", "tensor 'wUp' was disposed");
    expectError(() => matmul(x, wd), "FSG_ERR_INVALID_ARGUMENT", "tensor 'b' was disposed");
    expectError(() => xd.slice(0, 0, 1), "FSG_ERR_INVALID_ARGUMENT", "was disposed");
    stillWorks();
  });

  test("sizes beyond int32 give FSG_ERR_TOO_LARGE (raw descriptors, nothing is touched)", () => {
    const z = Tensor.empty([M, N], "float32", { device: dev });
    const big = 2 ** 31;
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), shape: [big, K], strides: [K, 1] }), z), "FSG_ERR_TOO_LARGE", "x");
    expectError(() => rawForward(rawDescriptor({ ...fieldsOf(x), shape: [2 ** 16, 2 ** 16, K], strides: [2 ** 16 * K, K, 1] }), z), "FSG_ERR_TOO_LARGE", "x");
    const wBig = rawDescriptor({ ...fieldsOf(w.gate), shape: [K, big], strides: [1, 1] });
    expectError(
      () => check(lib.fsg_swiglu_forward(dev.handle, A(x.descriptor()), wBig.address, A(w.up.descriptor()), 0n, 0n, A(z.descriptor()), 0n, 0n, 0n, 0n, 0n), "fsg_swiglu_forward"),
      "FSG_ERR_TOO_LARGE", "w_gate",
    );
    expectError(() => backwardWorkspaceSize(x, big), "FSG_ERR_TOO_LARGE", "n");
    // The backward's float32 [M, 2N] gradients past 2^62 bytes: rows and n each within int32, and
    // stride-0 rows make such an x cheap. A size wrapped past 2^64 would let dA/dB overrun the
    // workspace; just under the limit the size is exact.
    const xRows = rawDescriptor({ ...fieldsOf(x), shape: [2 ** 31 - 1, K], strides: [0, 1] });
    const size = new BigUint64Array(1);
    const workspaceSize = (n: number): void =>
      check(lib.fsg_swiglu_backward_workspace_size(dev.handle, xRows.address, BigInt(n), hostPtr(size)), "fsg_swiglu_backward_workspace_size");
    expectError(() => workspaceSize(2 ** 30 + 1), "FSG_ERR_TOO_LARGE", "workspace", "2147483647 rows");
    workspaceSize(2 ** 28);
    expect(size[0]).toBe(BigInt(2 ** 31 - 1) * 2n * BigInt(2 ** 28) * 4n);
    stillWorks();
    z.dispose();
  });

  test("an allocation whose 256-byte rounding would wrap is refused, not made empty", () => {
    const out = new BigUint64Array(1);
    for (const bytes of [2n ** 64n - 1n, 2n ** 64n - 255n]) {
      expectError(() => check(lib.fsg_malloc(dev.handle, bytes, hostPtr(out)), "fsg_malloc"), "FSG_ERR_OUT_OF_MEMORY", "fsg_malloc");
      expect(out[0]).toBe(0n);
    }
    stillWorks();
  });

  test("workspace too small, unaligned or missing", () => {
    const dz = randn([M, N], "float32", dev);
    const dx = Tensor.empty([M, K], "float32", { device: dev });
    const need = backwardWorkspaceSize(x, N);
    expect(need).toBeGreaterThan(0);
    expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx, workspaceBytes: need - 1 }), "FSG_ERR_INVALID_ARGUMENT", "workspace");
    expectError(
      () => check(lib.fsg_swiglu_backward(dev.handle, A(dz.descriptor()), A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()),
        0n, 0n, 0n, 0n, 0n, 0n, A(dx.descriptor()), 0n, 0n, 0n, 0n, 0, 0n, BigInt(need), 0n), "fsg_swiglu_backward"),
      "FSG_ERR_INVALID_ARGUMENT", "workspace",
    );
    const ws = Tensor.empty([need / 4 + 64], "float32", { device: dev });
    expectError(
      () => check(lib.fsg_swiglu_backward(dev.handle, A(dz.descriptor()), A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()),
        0n, 0n, 0n, 0n, 0n, 0n, A(dx.descriptor()), 0n, 0n, 0n, 0n, 0, ws.storage.ptr + 4n, BigInt(need), 0n), "fsg_swiglu_backward"),
      "FSG_ERR_INVALID_ARGUMENT", "workspace",
    );
    fusedSwigluBackward(dz, x, w.gate, w.up, { dx, workspaceBytes: need }); // exactly enough: fine
    stillWorks();
    for (const t of [dz, dx, ws]) t.dispose();
  });

  test("workspace: declared past its storage, or overlapping a tensor of the call", () => {
    const dz = randn([M, N], "float32", dev);
    const dx = Tensor.empty([M, K], "float32", { device: dev });
    const need = backwardWorkspaceSize(x, N);
    const small = new Storage(dev, 256);
    small.retain();
    expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx, workspace: small, workspaceBytes: 257 }), "FSG_ERR_INVALID_ARGUMENT", "workspaceBytes");
    small.release();
    for (const bytes of [-1, 0.5]) expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx, workspaceBytes: bytes }), "FSG_ERR_INVALID_ARGUMENT", "workspaceBytes");
    // One storage: the workspace at its start (256-byte aligned), tensors of the call inside it or past it.
    const block = Tensor.empty([need / 4 + M * K + M * N + 64], "float32", { device: dev });
    const backward = (dzT: Tensor, dxT: Tensor): void =>
      check(lib.fsg_swiglu_backward(dev.handle, A(dzT.descriptor()), A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()),
        0n, 0n, 0n, 0n, 0n, 0n, A(dxT.descriptor()), 0n, 0n, 0n, 0n, 0, block.storage.ptr, BigInt(need), 0n), "fsg_swiglu_backward");
    const dxIn = block.asStrided([M, K], [K, 1], need / 4 - 4); // its first row ends inside the workspace
    expectError(() => backward(dz, dxIn), "FSG_ERR_ALIAS", "dx", "workspace");
    const dzIn = block.asStrided([M, N], [N, 1], 0);
    dzIn.writeFloat32(dz.toFloat32());
    expectError(() => backward(dzIn, dx), "FSG_ERR_ALIAS", "dz", "workspace");
    const dxPast = block.asStrided([M, K], [K, 1], need / 4);
    backward(dz, dxPast); // clear of the workspace: the same gradient as a separate one
    fusedSwigluBackward(dz, x, w.gate, w.up, { dx });
    expect(dxPast.toFloat32()).toEqual(dx.toFloat32());
    stillWorks();
    for (const t of [dz, dx, block, dxIn, dzIn, dxPast]) t.dispose();
  });

  test("bad activations and layouts fail before anything is allocated", () => {
    const dz = randn([M, N], "float32", dev);
    const y = randn([M, 2 * N], "float32", dev);
    const live = dev.liveStorages;
    for (const kind of ["swish", "toString", "__proto__"]) {
      const activation = { kind } as never; // "toString" is on every object's prototype, not a kind
      expectError(() => fusedSwiglu(x, w.gate, w.up, { activation }), "FSG_ERR_INVALID_ARGUMENT", "activation.kind");
      expectError(() => glu(y, { activation }), "FSG_ERR_INVALID_ARGUMENT", "activation.kind");
      expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { activation }), "FSG_ERR_INVALID_ARGUMENT", "activation.kind");
      expectError(() => new SwiGLU({ inFeatures: K, hiddenFeatures: N, activation, device: dev }), "FSG_ERR_INVALID_ARGUMENT", "activation.kind");
    }
    expectError(() => weightsIn("bogus" as never, K, N, { device: dev }), "FSG_ERR_INVALID_ARGUMENT", "layout");
    expectError(() => new SwiGLU({ inFeatures: K, hiddenFeatures: N, layout: "bogus" as never, device: dev }), "FSG_ERR_INVALID_ARGUMENT", "layout");
    expect(dev.liveStorages).toBe(live);
    stillWorks();
    for (const t of [dz, y]) t.dispose();
  });

  test("a destroyed or unknown handle is refused, never freed twice", () => {
    const out = new BigUint64Array(1);
    check(lib.fsg_stream_create(dev.handle, hostPtr(out)), "fsg_stream_create");
    const stream = out[0]!;
    check(lib.fsg_stream_destroy(dev.handle, stream), "fsg_stream_destroy");
    expectError(() => check(lib.fsg_stream_destroy(dev.handle, stream), "fsg_stream_destroy"), "FSG_ERR_INVALID_ARGUMENT", "stream", "not a live stream");
    expectError(() => check(lib.fsg_context_set_stream(dev.handle, stream), "fsg_context_set_stream"), "FSG_ERR_INVALID_ARGUMENT", "stream", "not a live stream");
    expectError(() => check(lib.fsg_stream_query(dev.handle, stream), "fsg_stream_query"), "FSG_ERR_INVALID_ARGUMENT", "stream");
    check(lib.fsg_event_create(dev.handle, hostPtr(out)), "fsg_event_create");
    const event = out[0]!;
    // A live handle of another kind: a 256-byte thread-name write into an event would corrupt the heap.
    expectError(() => check(lib.fsg_context_set_num_threads(event, 3), "fsg_context_set_num_threads"), "FSG_ERR_INVALID_ARGUMENT", "a live event, not a context");
    expectError(() => check(lib.fsg_stream_query(dev.handle, event), "fsg_stream_query"), "FSG_ERR_INVALID_ARGUMENT", "a live event, not a stream");
    check(lib.fsg_event_destroy(dev.handle, event), "fsg_event_destroy");
    expectError(() => check(lib.fsg_event_destroy(dev.handle, event), "fsg_event_destroy"), "FSG_ERR_INVALID_ARGUMENT", "event", "not a live event");
    expectError(() => check(lib.fsg_event_record(dev.handle, event), "fsg_event_record"), "FSG_ERR_INVALID_ARGUMENT", "event");
    check(lib.fsg_context_create(2, 0, hostPtr(out)), "fsg_context_create");
    const ctx = out[0]!;
    check(lib.fsg_context_destroy(ctx), "fsg_context_destroy");
    expectError(() => check(lib.fsg_context_destroy(ctx), "fsg_context_destroy"), "FSG_ERR_INVALID_ARGUMENT", "ctx", "not a live context");
    expectError(() => check(lib.fsg_context_synchronize(ctx), "fsg_context_synchronize"), "FSG_ERR_INVALID_ARGUMENT", "ctx");
    expectError(() => check(lib.fsg_swiglu_forward(ctx, A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()), 0n, 0n,
      A(x.descriptor()), 0n, 0n, 0n, 0n, 0n), "fsg_swiglu_forward"), "FSG_ERR_INVALID_ARGUMENT", "ctx");
    stillWorks();
  });

  test("empty leading dims ([B, 0, K]) give empty results with any strides", () => {
    const x0 = Tensor.empty([2, 0, K], "float32", { device: dev });
    const z = fusedSwiglu(x0, w.gate, w.up);
    expect(z.shape).toEqual([2, 0, N]);
    const c = matmul(x0, w.gate);
    expect(c.shape).toEqual([2, 0, N]);
    const y0 = Tensor.empty([3, 0, 2 * N], "float32", { device: dev });
    const g = glu(y0);
    expect(g.shape).toEqual([3, 0, N]);
    stillWorks();
    for (const t of [x0, z, c, y0, g]) t.dispose();
  });

  test("gradients that sum no terms are zero, not left as they were", () => {
    // fsg_swiglu_backward with N = 0: dx = dz·[Wg|Wu]^T over no hidden features.
    const x3 = randn([3, 4], "float32", dev);
    const wg0 = Tensor.empty([4, 0], "float32", { device: dev });
    const dz0 = Tensor.empty([3, 0], "float32", { device: dev });
    const dx = Tensor.full([3, 4], -777, "float32", { device: dev });
    fusedSwigluBackward(dz0, x3, wg0, wg0.view(), { dx });
    expect(Array.from(dx.toFloat32())).toEqual(new Array(12).fill(0));
    // accumulate keeps dx as it was (adding zero).
    dx.fill(5);
    fusedSwigluBackward(dz0, x3, wg0, wg0.view(), { dx, accumulate: true });
    expect(Array.from(dx.toFloat32())).toEqual(new Array(12).fill(5));
    // linear_backward with N = 0: da = dc·b^T over no columns.
    const da = Tensor.full([3, 4], -777, "float32", { device: dev });
    linearBackward(dz0, x3, wg0, { dx: da });
    expect(Array.from(da.toFloat32())).toEqual(new Array(12).fill(0));
    // linear_backward with K = 0: da and dw are empty, dbias still sums dc over the rows.
    const dy = Tensor.fromFloat32(Array.from({ length: 20 }, (_, i) => i + 1), [4, 5], "float32", { device: dev });
    const xK0 = Tensor.empty([4, 0], "float32", { device: dev });
    const wK0 = Tensor.empty([0, 5], "float32", { device: dev });
    const dbias = Tensor.full([5], -777, "float32", { device: dev });
    linearBackward(dy, xK0, wK0, { dbias });
    expect(Array.from(dbias.toFloat32())).toEqual([34, 38, 42, 46, 50]);
    // fsg_glu_backward with N = 0: each token weight's gradient sums no columns (the block just
    // freed, full of 7s, is what the allocator hands out for dweights).
    const y0 = Tensor.empty([3, 0], "float32", { device: dev });
    const weights = randn([3], "float32", dev);
    Tensor.full([3], 7, "float32", { device: dev }).dispose();
    const g = swigluBackward(dz0, y0, { weights });
    expect(Array.from(g.dweights!.toFloat32())).toEqual([0, 0, 0]);
    for (const t of [y0, weights, g.dy, g.dweights!]) t.dispose();
    stillWorks();
    for (const t of [x3, wg0, dz0, dx, da, dy, xK0, wK0, dbias]) t.dispose();
  });

  test("backward: unknown flags, only one saved pre-activation, grad shape mismatch", () => {
    const dz = randn([M, N], "float32", dev);
    const dx = Tensor.empty([M, K], "float32", { device: dev });
    const need = backwardWorkspaceSize(x, N);
    const ws = Tensor.empty([need / 4], "float32", { device: dev });
    expectError(
      () => check(lib.fsg_swiglu_backward(dev.handle, A(dz.descriptor()), A(x.descriptor()), A(w.gate.descriptor()), A(w.up.descriptor()),
        0n, 0n, 0n, 0n, 0n, 0n, A(dx.descriptor()), 0n, 0n, 0n, 0n, 2, ws.storage.ptr, BigInt(need), 0n), "fsg_swiglu_backward"),
      "FSG_ERR_INVALID_ARGUMENT", "flags",
    );
    const a = Tensor.empty([M, N], "float32", { device: dev });
    expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { aSaved: a, dx }), "FSG_ERR_INVALID_ARGUMENT", "a_saved", "b_saved");
    const dwBad = Tensor.empty([K, N + 1], "float32", { device: dev });
    expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dwGate: dwBad }), "FSG_ERR_SHAPE", "dw_gate");
    const dzBad = randn([M, N + 2], "float32", dev);
    expectError(() => fusedSwigluBackward(dzBad, x, w.gate, w.up, { dx }), "FSG_ERR_SHAPE", "dz");
    const dxBad = Tensor.empty([M, K - 1], "float32", { device: dev });
    expectError(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx: dxBad }), "FSG_ERR_SHAPE", "dx");
    stillWorks();
    for (const t of [dz, dx, ws, a, dwBad, dzBad, dxBad]) t.dispose();
  });

  test("activation ops: odd last dim, bias and weights sizes, dweights without weights", () => {
    const yOdd = randn([M, 2 * N + 1], "float32", dev);
    expectError(() => glu(yOdd), "FSG_ERR_SHAPE", "y", "even");
    const y = randn([M, 2 * N], "float32", dev);
    const bias = randn([N], "float32", dev);
    expectError(() => glu(y, { bias }), "FSG_ERR_SHAPE", "bias");
    const weights = randn([M + 1, 1], "float32", dev);
    expectError(() => glu(y, { weights }), "FSG_ERR_SHAPE", "weights");
    const weights2 = randn([M, 2], "float32", dev);
    expectError(() => glu(y, { weights: weights2 }), "FSG_ERR_SHAPE", "weights");
    const dout = randn([M, N], "float32", dev);
    const dy = Tensor.empty([M, 2 * N], "float32", { device: dev });
    const dw = Tensor.empty([M, 1], "float32", { device: dev });
    expectError(
      () => check(lib.fsg_glu_backward(dev.handle, A(dout.descriptor()), A(y.descriptor()), 0n, 0n, 0n, A(dy.descriptor()), A(dw.descriptor()), 0n, 0n), "fsg_glu_backward"),
      "FSG_ERR_INVALID_ARGUMENT", "dweights",
    );
    const doutBad = randn([M, N + 1], "float32", dev);
    expectError(() => swigluBackward(doutBad, y), "FSG_ERR_SHAPE", "dout");
    stillWorks();
    for (const t of [yOdd, y, bias, weights, weights2, dout, dy, dw, doutBad]) t.dispose();
  });

  test("gemm: K mismatch, bias size, accumulate without an output", () => {
    const b = randn([K + 1, N], "float32", dev);
    expectError(() => matmul(x, b), "FSG_ERR_SHAPE", "b");
    const bias = randn([N + 1], "float32", dev);
    expectError(() => matmul(x, w.gate, { bias }), "FSG_ERR_SHAPE", "bias");
    expectError(() => matmul(x, w.gate, { accumulate: true }), "FSG_ERR_INVALID_ARGUMENT", "out");
    const c = Tensor.empty([M, N], "float32", { device: dev });
    expectError(
      () => check(lib.fsg_gemm(dev.handle, A(x.descriptor()), A(w.gate.descriptor()), 0n, A(c.descriptor()), 7), "fsg_gemm"),
      "FSG_ERR_INVALID_ARGUMENT", "accumulate",
    );
    stillWorks();
    for (const t of [b, bias, c]) t.dispose();
  });

  test("errors of the TypeScript layer use the same class", () => {
    expectError(() => Tensor.fromFloat32([1, 2, 3], [2, 2], "float32", { device: dev }), "FSG_ERR_SHAPE", "data");
    expectError(() => Tensor.empty([2, -1], "float32", { device: dev }), "FSG_ERR_SHAPE", "shape");
    expectError(() => Tensor.empty([2], "float64" as never, { device: dev }), "FSG_ERR_DTYPE", "dtype");
    expectError(() => x.slice(1, 4, 5), "FSG_ERR_INVALID_ARGUMENT", "slice");
    expectError(() => x.t().reshape([M * K]), "FSG_ERR_LAYOUT", "contiguous");
    expectError(() => x.asStrided([M, K], [K, 1], 1), "FSG_ERR_INVALID_ARGUMENT", "outside");
    expectError(() => Device.open({ backend: "tpu" as never }), "FSG_ERR_INVALID_ARGUMENT", "backend");
    // 2^32 would wrap to device 0 in the C ABI's int32.
    for (const ordinal of [2 ** 32, -1, 0.5]) expectError(() => Device.open({ backend: "cpu", ordinal }), "FSG_ERR_INVALID_ARGUMENT", "ordinal");
    const ctx = new SwiGLUContext();
    const z = SwiGLUFunction.forward(ctx, x, w.gate, w.up, { saveForBackward: false });
    expectError(() => SwiGLUFunction.backward(ctx, z), "FSG_ERR_INVALID_ARGUMENT", "ctx");
    z.dispose();
    stillWorks();
  });

  test.if(!hasCuda)("opening the CUDA backend without a GPU gives FSG_ERR_NO_DEVICE", () => {
    // "no CUDA device or driver"; a driver older than the library's runtime is named as such.
    const err = expectError(() => Device.open({ backend: "cuda" }), "FSG_ERR_NO_DEVICE", "backend cuda");
    expect(err.message).toMatch(/no CUDA device|older than this library's CUDA runtime/);
    using auto = Device.open({ backend: "auto" });
    expect(auto.backend).toBe("cpu");
    stillWorks();
  });

  test("a disposed device refuses new work", () => {
    const d = Device.open({ backend: "cpu" });
    d.dispose();
    expectError(() => Tensor.empty([2], "float32", { device: d }), "FSG_ERR_INVALID_ARGUMENT", "disposed");
    d.dispose(); // no-op
    stillWorks();
  });

  test("kernel paths: an unknown value is refused; path 90 only where the sm_90a kernels run", () => {
    expectError(() => dev.setKernelPath(2 as KernelPath), "FSG_ERR_INVALID_ARGUMENT", "path", "got 2");
    stillWorks();
    if (!hasCuda) return;
    using gpu = Device.open({ backend: "cuda" });
    if (gpu.hopperKernels) {
      gpu.setKernelPath(90);
    } else {
      // Another GPU, or an H100 with a library built without 90a: the message says which.
      const why = gpu.computeCapability === 90 ? "built without sm_90a code" : "needs a compute capability 9.0 GPU";
      expectError(() => gpu.setKernelPath(90), "FSG_ERR_INVALID_ARGUMENT", "path 90", why);
    }
    gpu.setKernelPath(0);
  });

  test("cudaArchs names the SASS and PTX the library carries", () => {
    // e.g. "sm_80 sm_86 sm_89 sm_90a compute_90": the PTX never keeps the "a", which would tie it
    // to compute capability 9.0 and leave newer GPUs without code.
    expect(cudaArchs()).toMatch(/^(sm_\d+[a-z]? )+compute_\d+$/);
  });
});
