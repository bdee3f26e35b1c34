// async.test.ts: non-blocking completion (src/async.ts): promises that poll events instead of
// blocking, downloads/uploads that match the synchronous path, several requests in flight on
// their own streams, host buffers released once the copies are done, and the poller itself
// (the event loop keeps running, time-outs, aborts, errors).
import { describe, expect, test } from "bun:test";
import {
  deviceDone, eventDone, pendingHostBuffers, pollUntil, streamDone, toFloat32Async, toRawAsync, uploadAsync,
} from "../src/async.ts";
import { Device, hasCuda } from "../src/device.ts";
import { matmul } from "../src/ops.ts";
import { FusedSwiGLUError } from "../src/errors.ts";
import { SwiGLUMLP } from "../src/mlp.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, forEachBackend, nextSeed, randn, randomValues } from "./helpers.ts";

forEachBackend("async completion", (device) => {
  test("eventDone, streamDone and deviceDone resolve after the work", async () => {
    const d = device();
    using stream = d.createStream();
    using event = d.createEvent();
    using x = randn([64, 128], "float32", d);
    using w = randn([128, 256], "float32", d);
    using y = Tensor.empty([64, 256], "float32", { device: d });
    d.withStream(stream, () => {
      matmul(x, w, { out: y });
      event.record();
    });
    await eventDone(event);
    expect(await toFloat32Async(y)).toEqual(y.toFloat32());
    expect(event.query()).toBe(true);
    await streamDone(stream);
    expect(stream.query()).toBe(true);
    await deviceDone(d, { stream });
    await deviceDone(d);
  });

  test("toFloat32Async equals toFloat32 for contiguous, transposed and sliced views, every dtype", async () => {
    const d = device();
    for (const dtype of ["float32", "float16", "bfloat16"] as const) {
      using a = randn([37, 53], dtype, d);
      using t = a.t();
      using s = a.slice(1, 5, 20);
      for (const v of [a, t, s]) {
        const expected = v.toFloat32();
        expect(await toFloat32Async(v)).toEqual(expected);
        expect(Array.from(await toRawAsync(v))).toEqual(Array.from(v.toRaw()));
      }
    }
    using empty = Tensor.empty([0, 4], "float32", { device: d });
    expect((await toFloat32Async(empty)).length).toBe(0);
  });

  test("uploadAsync writes what it is given and releases the host buffer when done", async () => {
    const d = device();
    using stream = d.createStream();
    const values = randomValues(1000);
    using t = Tensor.empty([10, 100], "float32", { device: d });
    await uploadAsync(t, values, { stream });
    expect(pendingHostBuffers()).toBe(0);
    expect(t.toFloat32()).toEqual(values);
    await uploadAsync(t, values.map((v) => -v), { stream, enqueueNow: true });
    expect(t.toFloat32()).toEqual(values.map((v) => -v));
    using h = Tensor.empty([1000], "bfloat16", { device: d });
    const bits = Uint16Array.from({ length: 1000 }, (_, i) => 0x3f80 + (i % 64));
    await uploadAsync(h, bits);
    expect(h.toRaw()).toEqual(bits);
  });

  test("several requests in flight on their own streams give the synchronous results", async () => {
    const d = device();
    using mlp = SwiGLUMLP.random({ K: 96, N: 160, device: d, seed: nextSeed() });
    const streams = Array.from({ length: 4 }, () => d.createStream());
    const inputs = streams.map((_, i) => randomValues((i + 1) * 5 * 96));
    const expected = inputs.map((v, i) => {
      using x = Tensor.fromFloat32(v, [(i + 1) * 5, 96], "float32", { device: d });
      using y = mlp.forward(x);
      return y.toFloat32();
    });
    const results = await Promise.all(streams.map(async (stream, i) => {
      const x = d.withStream(stream, () => Tensor.empty([(i + 1) * 5, 96], "float32", { device: d }));
      await uploadAsync(x, inputs[i]!, { stream });
      const y = d.withStream(stream, () => mlp.forward(x));
      const out = await toFloat32Async(y, { stream });
      d.withStream(stream, () => disposeAll(x, y));
      return out;
    }));
    results.forEach((r, i) => expect(r).toEqual(expected[i]!));
    expect(pendingHostBuffers()).toBe(0);
    for (const s of streams) s.dispose();
  });

  test("bad arguments are FusedSwiGLUErrors", async () => {
    const d = device();
    using t = Tensor.empty([4, 4], "float32", { device: d });
    using tt = t.t();
    await expect(uploadAsync(t, new Uint16Array(16))).rejects.toThrow(/Float32Array/);
    await expect(uploadAsync(t, new Float32Array(15))).rejects.toThrow(/expected 16 elements/);
    await expect(uploadAsync(tt, new Float32Array(16))).rejects.toThrow(/contiguous/);
    const other = Device.open({ backend: "cpu" });
    const foreign = other.createStream();
    await expect(toRawAsync(t, { stream: foreign })).rejects.toBeInstanceOf(FusedSwiGLUError);
    foreign.dispose();
    other.dispose();
    const gone = Tensor.empty([2], "float32", { device: d });
    gone.dispose();
    await expect(toFloat32Async(gone)).rejects.toThrow(/disposed/);
  });
});

describe("async completion on the CPU backend", () => {
  test("promises are settled at once: no timer runs before they resolve", async () => {
    const d = Device.open({ backend: "cpu" });
    using x = Tensor.randn([8, 8], "float32", { device: d, seed: nextSeed() });
    let timerRan = false;
    setTimeout(() => (timerRan = true), 0);
    await deviceDone(d);
    const v = await toFloat32Async(x);
    expect(timerRan).toBe(false);
    expect(v).toEqual(x.toFloat32());
    d.dispose();
  });
});

describe("pollUntil", () => {
  test("the event loop keeps running while work is pending", async () => {
    let ticks = 0;
    const interval = setInterval(() => ticks++, 1);
    // Done once the timer has fired 4 times (a loaded machine may fire a 1 ms timer only every few
    // ms), or after 2 s: a poll that blocked the event loop would end there with no ticks.
    const until = performance.now() + 2000;
    let polls = 0;
    await pollUntil(() => {
      polls++;
      return ticks > 3 || performance.now() > until;
    }, "test", { spinMs: 5 });
    clearInterval(interval);
    expect(ticks).toBeGreaterThan(3); // timers ran while polling, also in the spin window
    expect(polls).toBeGreaterThan(3);
    let slowPolls = 0;
    const until2 = performance.now() + 30;
    await pollUntil(() => {
      slowPolls++;
      return performance.now() > until2;
    }, "test", { spinMs: 0 });
    expect(slowPolls).toBeLessThan(100); // backs off to timers rather than spinning
  });

  test("time-out, abort and a throwing query reject with a message", async () => {
    await expect(pollUntil(() => false, "never", { timeoutMs: 10 })).rejects.toThrow(/never: not complete after 10 ms/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 5);
    await expect(pollUntil(() => false, "aborted", { signal: ac.signal })).rejects.toThrow(/aborted/);
    let n = 0;
    await expect(pollUntil(() => {
      if (++n > 2) throw new FusedSwiGLUError("FSG_ERR_CUDA", "device lost");
      return false;
    }, "throws")).rejects.toThrow(/device lost/);
    await expect(pollUntil(() => {
      throw new Error("at once");
    }, "first")).rejects.toThrow(/at once/);
  });
});

describe.if(hasCuda())("async completion under a long GPU job", () => {
  test("timers fire while a GEMM of several ms is awaited", async () => {
    const d = Device.open({ backend: "cuda" });
    using stream = d.createStream();
    using a = Tensor.randn([4096, 4096], "float32", { device: d, seed: nextSeed() });
    using b = Tensor.randn([4096, 4096], "float32", { device: d, seed: nextSeed() });
    using c = Tensor.empty([4096, 4096], "float32", { device: d });
    d.synchronize();
    let ticks = 0;
    const interval = setInterval(() => ticks++, 0);
    const t0 = performance.now();
    d.withStream(stream, () => {
      for (let i = 0; i < 4; i++) matmul(a, b, { out: c });
    });
    const enqueueMs = performance.now() - t0;
    await streamDone(stream);
    const totalMs = performance.now() - t0;
    clearInterval(interval);
    if (totalMs > 5 * enqueueMs + 2) expect(ticks).toBeGreaterThan(0);
    d.dispose();
  });

  test("an upload behind a long GEMM does not block the thread; a wait given up on holds nothing", async () => {
    const d = Device.open({ backend: "cuda" });
    using stream = d.createStream();
    using a = Tensor.randn([4096, 4096], "float32", { device: d, seed: nextSeed() });
    using c = Tensor.empty([4096, 4096], "float32", { device: d });
    using t = Tensor.empty([1 << 20], "float32", { device: d });
    d.synchronize();
    const gemms = (): void => d.withStream(stream, () => {
      for (let i = 0; i < 8; i++) matmul(a, a, { out: c });
    });
    const raw = randomValues(1 << 20);
    gemms();
    await expect(uploadAsync(t, raw, { stream, timeoutMs: 0, spinMs: 0 })).rejects.toThrow(/not complete after 0 ms/);
    expect(pendingHostBuffers()).toBe(0);
    await streamDone(stream);
    const t0 = performance.now();
    gemms();
    const p = uploadAsync(t, raw, { stream });
    const callMs = performance.now() - t0;
    await p;
    const totalMs = performance.now() - t0;
    expect(callMs).toBeLessThan(totalMs / 2);
    expect(t.toFloat32()).toEqual(raw);
    expect(pendingHostBuffers()).toBe(0);
    d.dispose();
  });
});
