// CUDA graphs (src/graph.ts, cuda/src/graph.cpp): a forward and a forward+backward (stored mode,
// caller workspace) captured once, then replayed on new random inputs written into the captured
// buffers, against the float64 reference; on the default stream and on a user stream, with the
// auto and the small-M kernel paths. Errors: CPU devices, calls a graph cannot hold (sync,
// allocation, free, pageable copies), nested begin, end without begin, replay after dispose; the
// device works normally after each. The CUDA suites skip visibly without a GPU.
import { describe, expect, test } from "bun:test";
import { Device, type KernelPath } from "../src/device.ts";
import type { FloatDType } from "../src/dtype.ts";
import { check, Status } from "../src/errors.ts";
import { hostPtr, lib } from "../src/ffi.ts";
import { disposeWeights, type Layout } from "../src/layouts.ts";
import { backwardWorkspaceSize, fusedSwiglu, fusedSwigluBackward } from "../src/ops.ts";
import { Storage, Tensor } from "../src/tensor.ts";
import { disposeAll, expectError, f64, hasCuda, poison, randn, randomValues, randomWeights, RTOL } from "./helpers.ts";
import { swigluBackwardRef, swigluBackwardScaleRef, swigluForwardRef, swigluForwardScaleRef } from "./reference.ts";

describe("CUDA graphs [cpu backend]", () => {
  test("capturing on a CPU device is a typed error naming the backend", () => {
    const dev = Device.open({ backend: "cpu" });
    expectError(() => dev.captureGraph(() => {}), "FSG_ERR_INVALID_ARGUMENT", "fsg_graph_begin", "CPU backend");
    const out = new BigUint64Array(1);
    expect(lib.fsg_graph_end(dev.handle, hostPtr(out))).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
    expect(lib.fsg_graph_launch(dev.handle, 0n)).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
    expect(lib.fsg_graph_destroy(dev.handle, 0n)).toBe(Status.FSG_OK); // NULL is accepted
    dev.dispose();
  });
});

/** Fresh random values into an existing tensor (a host-to-device copy outside the capture). */
function refill(t: Tensor, scale = 1): void {
  t.writeFloat32(randomValues(t.numel, scale));
}

interface Setup {
  dtype: FloatDType;
  layout: Layout;
  M: number;
  K: number;
  N: number;
  path: KernelPath;
  userStream: boolean;
}

const label = (s: Setup) =>
  `${s.dtype} ${s.layout} ${s.M}x${s.K}x${s.N} path ${s.path} on ${s.userStream ? "a user stream" : "the default stream"}`;

/** A CUDA device on the setup's kernel path and stream; close() restores and frees both. */
function openFor(s: Setup): { dev: Device; close: () => void } {
  const dev = Device.open({ backend: "cuda" });
  dev.setKernelPath(s.path);
  const stream = s.userStream ? dev.createStream() : null;
  if (stream) dev.stream = stream;
  const close = () => {
    if (stream) {
      dev.stream = null;
      stream.dispose();
    }
    dev.dispose();
  };
  return { dev, close };
}

describe.if(hasCuda)("CUDA graphs [cuda]", () => {
  const FORWARD: Setup[] = [
    { dtype: "bfloat16", layout: "packed", M: 1, K: 64, N: 96, path: 0, userStream: false },
    { dtype: "bfloat16", layout: "linear", M: 17, K: 136, N: 40, path: 1, userStream: true },
    { dtype: "float16", layout: "separate", M: 3, K: 40, N: 72, path: 0, userStream: true },
    { dtype: "float32", layout: "separate", M: 33, K: 24, N: 56, path: 0, userStream: false },
  ];

  for (const s of FORWARD) {
    test(`forward: captured once, replayed on new inputs (${label(s)})`, () => {
      const { dev, close } = openFor(s);
      const { dtype, M, K, N } = s;
      const x = randn([M, K], dtype, dev);
      const w = randomWeights(s.layout, K, N, dtype, dev);
      const bGate = randn([N], dtype, dev, 0.5);
      const bUp = randn([N], dtype, dev, 0.5);
      const z = poison(Tensor.empty([M, N], dtype, { device: dev }));
      const g = dev.captureGraph(() => {
        fusedSwiglu(x, w.gate, w.up, { bGate, bUp, out: z });
      }, { retain: [x, z] });
      expect(g.nodes).toBeGreaterThanOrEqual(1);
      // Capturing recorded the kernel without running it: z is still poisoned.
      expect(z.toFloat32().every(Number.isNaN)).toBe(true);
      for (let round = 0; round < 3; round++) {
        refill(x);
        g.replay();
        const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M, K, N };
        const tol = dtype === "float32" ? { rtol: RTOL.float32, scale: swigluForwardScaleRef(p).z } : { rtol: RTOL[dtype] };
        expect(z.toFloat32()).toBeAllClose(swigluForwardRef(p).z, tol);
      }
      g.dispose();
      expectError(() => g.replay(), "FSG_ERR_INVALID_ARGUMENT", "graph was disposed");
      g.dispose(); // a no-op
      disposeAll(x, bGate, bUp, z);
      disposeWeights(w);
      close();
    });
  }

  const BACKWARD: Setup[] = [
    { dtype: "bfloat16", layout: "separate", M: 1, K: 96, N: 160, path: 0, userStream: false },
    { dtype: "bfloat16", layout: "linear", M: 17, K: 72, N: 136, path: 1, userStream: true },
    { dtype: "float16", layout: "packed", M: 64, K: 48, N: 264, path: 1, userStream: false },
    { dtype: "float32", layout: "interleaved", M: 3, K: 40, N: 24, path: 0, userStream: true },
  ];

  for (const s of BACKWARD) {
    test(`forward + backward (stored mode, caller workspace): replayed on new x and dz (${label(s)})`, () => {
      const { dev, close } = openFor(s);
      const { dtype, M, K, N } = s;
      const device = { device: dev };
      const x = randn([M, K], dtype, dev);
      const dz = randn([M, N], dtype, dev);
      const w = randomWeights(s.layout, K, N, dtype, dev);
      const bGate = randn([N], dtype, dev, 0.5);
      const bUp = randn([N], dtype, dev, 0.5);
      const [z, aSaved, bSaved] = [0, 1, 2].map(() => Tensor.empty([M, N], dtype, device));
      const dx = poison(Tensor.empty([M, K], dtype, device));
      const [dwGate, dwUp] = [0, 1].map(() => poison(Tensor.empty([K, N], dtype, device)));
      const [dbGate, dbUp] = [0, 1].map(() => poison(Tensor.empty([N], dtype, device)));
      const workspace = new Storage(dev, backwardWorkspaceSize(x, N));
      workspace.retain();
      const g = dev.captureGraph(() => {
        fusedSwiglu(x, w.gate, w.up, { bGate, bUp, out: z!, aOut: aSaved, bOut: bSaved });
        fusedSwigluBackward(dz, x, w.gate, w.up, {
          bGate, bUp, aSaved, bSaved, dx, dwGate, dwUp, dbGate, dbUp, workspace,
        });
      });
      expect(g.nodes).toBeGreaterThanOrEqual(4);
      for (let round = 0; round < 2; round++) {
        refill(x);
        refill(dz);
        g.replay();
        const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), bGate: f64(bGate), bUp: f64(bUp), M, K, N };
        const ref = swigluBackwardRef(p, f64(dz));
        const scale = swigluBackwardScaleRef(p, f64(dz));
        const grads = { dx, dwGate: dwGate!, dwUp: dwUp!, dbGate: dbGate!, dbUp: dbUp! };
        for (const [name, t] of Object.entries(grads) as [keyof typeof ref, Tensor][]) {
          expect(t.toFloat32()).toBeAllClose(ref[name], { rtol: RTOL[dtype], scale: scale[name] });
        }
      }
      // Replays are deterministic: the same inputs give the same bits.
      const before = Array.from(dwGate!.toRaw());
      g.replay();
      expect(Array.from(dwGate!.toRaw())).toEqual(before);
      g.dispose();
      workspace.release();
      disposeAll(x, dz, bGate, bUp, z, aSaved, bSaved, dx, dwGate, dwUp, dbGate, dbUp);
      disposeWeights(w);
      close();
    });
  }

  /** A small forward whose result is checked: proves the device works after an error. */
  function expectDeviceWorks(dev: Device): void {
    const [M, K, N] = [5, 24, 40];
    const x = randn([M, K], "float32", dev);
    const w = randomWeights("separate", K, N, "float32", dev);
    const z = fusedSwiglu(x, w.gate, w.up);
    const p = { x: f64(x), wGate: f64(w.gate), wUp: f64(w.up), M, K, N };
    expect(z.toFloat32()).toBeAllClose(swigluForwardRef(p).z, { rtol: RTOL.float32, scale: swigluForwardScaleRef(p).z });
    dev.synchronize();
    disposeAll(x, z);
    disposeWeights(w);
  }

  describe("errors", () => {
    const [M, K, N] = [4, 32, 48];
    const setup = (dev: Device) => ({
      x: randn([M, K], "bfloat16", dev),
      w: randomWeights("packed", K, N, "bfloat16", dev),
      z: Tensor.empty([M, N], "bfloat16", { device: dev }),
    });

    test("synchronizing during a capture: typed error, capture abandoned, device usable", () => {
      const dev = Device.open({ backend: "cuda" });
      const { x, w, z } = setup(dev);
      expectError(() => dev.captureGraph(() => {
        fusedSwiglu(x, w.gate, w.up, { out: z });
        dev.synchronize();
      }), "FSG_ERR_INVALID_ARGUMENT", "fsg_context_synchronize", "graph capture", "abandoned");
      expectDeviceWorks(dev);
      // Events and streams: waiting or polling is refused too.
      const e = dev.createEvent();
      expectError(() => dev.captureGraph(() => {
        e.record();
        e.synchronize();
      }), "FSG_ERR_INVALID_ARGUMENT", "fsg_event_synchronize");
      const s = dev.createStream();
      expectError(() => dev.captureGraph(() => s.query()), "FSG_ERR_INVALID_ARGUMENT", "fsg_stream_query");
      expectError(() => dev.captureGraph(() => {
        dev.stream = s;
      }), "FSG_ERR_INVALID_ARGUMENT", "fsg_context_set_stream");
      expect(dev.stream).toBeNull();
      expectDeviceWorks(dev);
      e.dispose();
      s.dispose();
      disposeAll(x, z);
      disposeWeights(w);
      dev.dispose();
    });

    test("allocating, freeing and pageable copies during a capture are refused", () => {
      const dev = Device.open({ backend: "cuda" });
      const { x, w, z } = setup(dev);
      // An op without `out` allocates its output.
      expectError(() => dev.captureGraph(() => fusedSwiglu(x, w.gate, w.up)), "FSG_ERR_INVALID_ARGUMENT",
        "fsg_malloc", "before fsg_graph_begin");
      // A backward without `workspace` allocates one.
      const dz = randn([M, N], "bfloat16", dev);
      const dx = Tensor.empty([M, K], "bfloat16", { device: dev });
      expectError(() => dev.captureGraph(() => fusedSwigluBackward(dz, x, w.gate, w.up, { dx })),
        "FSG_ERR_INVALID_ARGUMENT", "fsg_malloc");
      // Host arrays are pageable memory.
      expectError(() => dev.captureGraph(() => refill(x)), "FSG_ERR_INVALID_ARGUMENT", "fsg_memcpy_h2d_async", "pageable");
      const host = new Float32Array(4);
      expectError(() => dev.captureGraph(() => {
        check(lib.fsg_memcpy_d2h_async(dev.handle, hostPtr(host), z.storage.ptr, 8n), "fsg_memcpy_d2h_async");
      }), "FSG_ERR_INVALID_ARGUMENT", "fsg_memcpy_d2h_async", "pageable");
      // fsg_free through the C ABI (a JS tensor would consider itself freed).
      const out = new BigUint64Array(1);
      check(lib.fsg_malloc(dev.handle, 256n, hostPtr(out)), "fsg_malloc");
      const ptr = out[0]!;
      expectError(() => dev.captureGraph(() => check(lib.fsg_free(dev.handle, ptr), "fsg_free")),
        "FSG_ERR_INVALID_ARGUMENT", "fsg_free", "after fsg_graph_end");
      check(lib.fsg_free(dev.handle, ptr), "fsg_free"); // outside a capture it works
      // A tensor disposed during a capture: its free is refused, so it stays live to dispose after.
      const t = Tensor.empty([64], "float32", { device: dev });
      const live = dev.liveStorages;
      expectError(() => dev.captureGraph(() => t.dispose()), "FSG_ERR_INVALID_ARGUMENT", "fsg_free");
      expect(t.disposed).toBe(false);
      expect(dev.liveStorages).toBe(live);
      t.dispose();
      expect(t.disposed).toBe(true);
      expect(dev.liveStorages).toBe(live - 1);
      // Device-to-device copies and memsets are captured.
      const g = dev.captureGraph(() => {
        z.fill(0);
        check(lib.fsg_memcpy_d2d_async(dev.handle, z.storage.ptr, x.storage.ptr, 16n), "fsg_memcpy_d2d_async");
      });
      expect(g.nodes).toBe(2);
      g.dispose();
      expectDeviceWorks(dev);
      disposeAll(x, z, dz, dx);
      disposeWeights(w);
      dev.dispose();
    });

    test("a capture cannot be ended or abandoned from another host thread: it goes on", async () => {
      // Captures are thread-local: CUDA will not end one from another thread and goes on capturing.
      // The library used to forget it there, after which this thread's launches were recorded into
      // a capture nobody would end instead of running. Now it refuses without calling CUDA. The
      // capture itself runs without an event-loop turn (a finalizer freeing memory of another
      // context there would invalidate it): the worker answers through shared memory.
      const worker = new Worker(new URL("./graph_other_thread.ts", import.meta.url).href);
      await new Promise<void>((resolve) => {
        worker.onmessage = () => resolve();
        worker.postMessage("ping");
      });
      const dev = Device.open({ backend: "cuda" });
      const { x, w, z } = setup(dev);
      const out = new BigUint64Array(1);
      check(lib.fsg_malloc(dev.handle, 256n, hostPtr(out)), "fsg_malloc");
      const ptr = out[0]!;
      const results = new Int32Array(new SharedArrayBuffer(12));
      check(lib.fsg_graph_begin(dev.handle), "fsg_graph_begin");
      fusedSwiglu(x, w.gate, w.up, { out: z });
      worker.postMessage({ ctx: dev.handle, ptr, results });
      const waited = Atomics.wait(results, 0, 0, 30_000);
      fusedSwiglu(x, w.gate, w.up, { out: z }); // still recorded, not run
      check(lib.fsg_graph_end(dev.handle, hostPtr(out)), "fsg_graph_end"); // ends on its own thread
      worker.terminate();
      const graph = out[0]!;
      const nodes = new BigUint64Array(1);
      check(lib.fsg_graph_node_count(graph, hostPtr(nodes)), "fsg_graph_node_count");
      check(lib.fsg_graph_destroy(dev.handle, graph), "fsg_graph_destroy");
      check(lib.fsg_free(dev.handle, ptr), "fsg_free");
      expect(waited).toBe("ok");
      expect(Array.from(results)).toEqual([1, 1, 1]);
      expect(nodes[0]!).toBeGreaterThanOrEqual(2n);
      expectDeviceWorks(dev);
      disposeAll(x, z);
      disposeWeights(w);
      dev.dispose();
    });

    test("opening another context during a capture leaves the capture intact", () => {
      // Context creation asks the driver which code it loaded (code_probe.cu) without putting
      // work on a stream: a copy from device memory there would invalidate this thread's capture.
      const dev = Device.open({ backend: "cuda" });
      const z = Tensor.empty([4, 8], "float32", { device: dev });
      const g = dev.captureGraph(() => {
        const other = Device.open({ backend: "cuda" });
        expect(other.hopperKernels).toBe(dev.hopperKernels);
        other.dispose();
        z.fill(0);
      });
      expect(g.nodes).toBe(1);
      g.dispose();
      z.dispose();
      expectDeviceWorks(dev);
      dev.dispose();
    });

    test("nested begin, end without begin, an asynchronous callback", () => {
      const dev = Device.open({ backend: "cuda" });
      expectError(() => dev.captureGraph(() => {
        dev.captureGraph(() => {});
      }), "FSG_ERR_INVALID_ARGUMENT", "fsg_graph_begin", "already in progress");
      expectDeviceWorks(dev);
      const out = new BigUint64Array(1);
      expect(lib.fsg_graph_end(dev.handle, hostPtr(out))).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
      expect(lib.fsg_last_error()).toContain("no capture in progress");
      expectError(() => dev.captureGraph(async () => {}), "FSG_ERR_INVALID_ARGUMENT", "synchronous");
      // Through the C ABI: a refused call abandons the capture; fsg_graph_end reports why, once.
      check(lib.fsg_graph_begin(dev.handle), "fsg_graph_begin");
      expect(lib.fsg_graph_begin(dev.handle)).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
      expect(lib.fsg_context_synchronize(dev.handle)).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
      expect(lib.fsg_graph_begin(dev.handle)).toBe(Status.FSG_ERR_INVALID_ARGUMENT); // abandoned, not yet ended
      expect(lib.fsg_last_error()).toContain("abandoned");
      expect(lib.fsg_graph_end(dev.handle, hostPtr(out))).toBe(Status.FSG_ERR_INVALID_ARGUMENT);
      expect(lib.fsg_last_error()).toContain("fsg_context_synchronize");
      expect(out[0]).toBe(0n);
      // An empty capture is a valid graph.
      const g = dev.captureGraph(() => {});
      expect(g.nodes).toBe(0);
      g.replay();
      g.dispose();
      expectDeviceWorks(dev);
      dev.dispose();
    });

    test("retained tensors outlive their JS handles until the graph is disposed", () => {
      const dev = Device.open({ backend: "cuda" });
      const { x, w, z } = setup(dev);
      const g = dev.captureGraph(() => fusedSwiglu(x, w.gate, w.up, { out: z }), { retain: [x, z] });
      const zStorage = z.storage;
      const zView = z.view();
      x.dispose();
      z.dispose();
      expect(zStorage.freed).toBe(false);
      g.replay();
      expect(zView.toFloat32().every(Number.isFinite)).toBe(true);
      zView.dispose();
      expect(zStorage.freed).toBe(false);
      g.dispose();
      expect(zStorage.freed).toBe(true);
      disposeWeights(w);
      dev.dispose();
    });
  });
});
