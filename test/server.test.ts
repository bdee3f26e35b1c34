// server.test.ts: examples/server.ts on the CPU backend, on port 0, serving a layer loaded from a
// safetensors file the test writes: binary and JSON requests return the float64 reference,
// concurrent requests are batched, bad requests get a 4xx with a message, /health reports, a
// short load run (a few hundred requests, some malformed) answers every good request without
// RSS growth, and SIGTERM shuts a server process down cleanly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkReport, runLoad } from "../bench/load-test.ts";
import { bf16ToF32, f32ToBf16, startServer, type RunningServer } from "../examples/server.ts";
import { decode, encode, roundTo } from "../src/dtype.ts";
import { mulberry32 } from "../src/tensor.ts";
import { writeSafetensors } from "../src/safetensors.ts";
import { randomValues } from "./helpers.ts";
import { gemmRef, swigluForwardRef, transposeRef } from "./reference.ts";

const K = 32;
const N = 48;
const dir = mkdtempSync(join(tmpdir(), "fsg-server-"));
const weights = {
  gate: randomValues(N * K, 2 / Math.sqrt(K)), // [N, K] as stored
  up: randomValues(N * K, 2 / Math.sqrt(K)),
  down: randomValues(K * N, 2 / Math.sqrt(N)), // [K, N] as stored
};
let server: RunningServer;
let url: string;

/** y = x + mlp(x) in float64 for x [M, K] (the server runs with the residual). */
function reference(x: Float32Array, M: number): Float64Array {
  const { z } = swigluForwardRef({ x, wGate: transposeRef(weights.gate, N, K), wUp: transposeRef(weights.up, N, K), M, K, N });
  return gemmRef(z, transposeRef(weights.down, K, N), M, N, K, null, x);
}

beforeAll(async () => {
  const file = join(dir, "layer.safetensors");
  writeSafetensors(file, {
    "model.layers.0.mlp.gate_proj.weight": { dtype: "F32", shape: [N, K], data: weights.gate },
    "model.layers.0.mlp.up_proj.weight": { dtype: "F32", shape: [N, K], data: weights.up },
    "model.layers.0.mlp.down_proj.weight": { dtype: "F32", shape: [K, N], data: weights.down },
  });
  server = await startServer({
    port: 0, backend: "cpu", weights: file, prefix: "model.layers.0.", residual: true, maxRows: 16, allowGc: true,
  });
  url = server.url;
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const post = (body: RequestInit["body"], headers: Record<string, string>, path = "/v1/mlp"): Promise<Response> =>
  fetch(url + path, { method: "POST", body, headers });
const binary = (x: Float32Array | Uint16Array, rows: number, dtype = "float32"): Promise<Response> =>
  post(x, { "content-type": "application/octet-stream", "x-shape": `${rows},${K}`, "x-dtype": dtype });

describe("server: wire conversions", () => {
  test("bfloat16 <-> float32 fast paths equal dtype.ts on every bf16 pattern and random float32 words", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    expect(Array.from(bf16ToF32(all))).toEqual(Array.from(decode("bfloat16", all))); // as numbers: NaN payloads may differ
    const rand = mulberry32(7);
    const words = Uint32Array.from({ length: 200000 }, (_, i) => (i < 65536 ? (i << 16) | 0x8000 : Math.floor(rand() * 2 ** 32)));
    const f = new Float32Array(words.buffer);
    const asNumbers = (bits: Uint16Array): number[] => Array.from(decode("bfloat16", bits));
    expect(asNumbers(f32ToBf16(f))).toEqual(asNumbers(encode("bfloat16", f) as Uint16Array)); // NaN payloads may differ
  });
});

describe("server: good requests", () => {
  test("binary float32: the reference result, same form as the request", async () => {
    const x = randomValues(3 * K);
    const r = await binary(x, 3);
    expect(r.status).toBe(200);
    expect(r.headers.get("x-shape")).toBe(`3,${K}`);
    expect(r.headers.get("x-dtype")).toBe("float32");
    const y = new Float32Array(await r.arrayBuffer());
    expect(y).toBeAllClose(reference(x, 3), { rtol: 1e-5 });
  });

  test("JSON: {x: number[][]} -> {y, shape}", async () => {
    const x = randomValues(2 * K);
    const rows = [Array.from(x.subarray(0, K)), Array.from(x.subarray(K))];
    const r = await post(JSON.stringify({ x: rows }), { "content-type": "application/json" });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { y: number[][]; shape: number[] };
    expect(body.shape).toEqual([2, K]);
    expect(Float32Array.from(body.y.flat())).toBeAllClose(reference(x, 2), { rtol: 1e-5 });
  });

  test("binary bfloat16 in, bfloat16 out", async () => {
    const x = roundTo("bfloat16", randomValues(K));
    const r = await binary(encode("bfloat16", x) as Uint16Array, 1, "bf16");
    expect(r.status).toBe(200);
    expect(r.headers.get("x-dtype")).toBe("bfloat16");
    const bits = new Uint16Array(await r.arrayBuffer());
    const y = Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
    expect(y).toBeAllClose(reference(x, 1), { rtol: 1e-2 });
  });

  test("concurrent requests are batched into one M and each gets its own rows", async () => {
    const before = server.stats.batches;
    const xs = Array.from({ length: 24 }, (_, i) => randomValues((1 + (i % 3)) * K));
    const ys = await Promise.all(xs.map(async (x) => new Float32Array(await (await binary(x, x.length / K)).arrayBuffer())));
    ys.forEach((y, i) => expect(y).toBeAllClose(reference(xs[i]!, xs[i]!.length / K), { rtol: 1e-5 }));
    expect(server.stats.batches - before).toBeLessThan(24);
  });
});

describe("server: bad requests get a 4xx with a message", () => {
  const cases: [string, () => Promise<Response>, number, RegExp][] = [
    ["wrong K", () => post(new Float32Array(K + 1), { "x-shape": `1,${K + 1}`, "content-type": "application/octet-stream" }), 400, /K = 32 features, got 33/],
    ["body shorter than the shape", () => post(new Float32Array(K - 1), { "x-shape": `1,${K}`, "content-type": "application/octet-stream" }), 400, /needs 128 bytes/],
    ["no x-shape", () => post(new Float32Array(K), { "content-type": "application/octet-stream" }), 400, /x-shape: expected "rows,32", got no header/],
    ["a bad x-shape", () => post(new Float32Array(K), { "x-shape": "1;32", "content-type": "application/octet-stream" }), 400, /x-shape: expected/],
    ["zero rows", () => post(new Uint8Array(0), { "x-shape": `0,${K}`, "content-type": "application/octet-stream" }), 400, /at least 1/],
    ["too many rows", () => post(new Float32Array(17 * K), { "x-shape": `17,${K}`, "content-type": "application/octet-stream" }), 413, /17 rows is more than the 16/],
    ["an unknown x-dtype", () => post(new Float64Array(K), { "x-shape": `1,${K}`, "x-dtype": "float64", "content-type": "application/octet-stream" }), 415, /x-dtype: expected float32, bfloat16 or float16/],
    // A name every object has on its prototype is no dtype either.
    ["x-dtype: constructor", () => post(new Float32Array(K), { "x-shape": `1,${K}`, "x-dtype": "constructor", "content-type": "application/octet-stream" }), 415, /x-dtype: expected float32/],
    ["a NaN in a binary body", () => post(Float32Array.from({ length: K }, (_, j) => (j === 5 ? NaN : 1)), { "x-shape": `1,${K}`, "content-type": "application/octet-stream" }), 400, /x\[0\]\[5\] is not finite/],
    ["a JSON number past float32", () => post(JSON.stringify({ x: [[...Array(K - 1).fill(1), 1e39]] }), { "content-type": "application/json" }), 400, /x\[0\]\[31\]: 1e\+39 is beyond the largest finite float32/],
    ["invalid JSON", () => post("{\"x\": [[", { "content-type": "application/json" }), 400, /invalid JSON/],
    ["JSON without x", () => post("{\"y\": 1}", { "content-type": "application/json" }), 400, /expected \{"x"/],
    ["a ragged JSON row", () => post(JSON.stringify({ x: [Array(K).fill(1), [1, 2]] }), { "content-type": "application/json" }), 400, /x\[1\]: expected an array of K = 32 numbers, got 2 entries/],
    ["a string in JSON", () => post(JSON.stringify({ x: [[...Array(K - 1).fill(1), "1"]] }), { "content-type": "application/json" }), 400, /x\[0\]\[31\]: expected a finite number/],
    ["too many JSON rows", () => post(JSON.stringify({ x: Array(17).fill(Array(K).fill(0)) }), { "content-type": "application/json" }), 413, /17 rows/],
    ["another content-type", () => post("hello", { "content-type": "text/plain" }), 415, /content-type/],
    // Finite inputs whose result overflows: JSON cannot carry Inf, so no 200 full of nulls.
    ["a result JSON cannot carry", () => post(JSON.stringify({ x: [Array(K).fill(1e30)] }), { "content-type": "application/json" }), 422, /is not finite .* ask for binary output/],
    ["GET /v1/mlp", () => fetch(`${url}/v1/mlp`), 405, /use POST/],
    ["an unknown path", () => fetch(`${url}/v2/x`), 404, /no route GET \/v2\/x/],
  ];
  for (const [name, send, status, message] of cases) {
    test(name, async () => {
      const r = await send();
      expect(r.status).toBe(status);
      const body = (await r.json()) as { error: string };
      expect(body.error).toMatch(message);
    });
  }

  test("the server still answers good requests afterwards", async () => {
    const x = randomValues(K);
    expect(new Float32Array(await (await binary(x, 1)).arrayBuffer())).toBeAllClose(reference(x, 1), { rtol: 1e-5 });
  });
});

describe("server: health, load, shutdown", () => {
  test("GET /health: device, backend, memory, model", async () => {
    const h = (await (await fetch(`${url}/health`)).json()) as Record<string, unknown>;
    expect(h.status).toBe("ok");
    expect(h.backend).toBe("cpu");
    expect(String(h.device)).toMatch(/^CPU/);
    expect(h.memory).toEqual({ free: 0, total: 0, used: 0 });
    expect(h.rss).toBeGreaterThan(0);
    expect(h.model).toMatchObject({ K, N, dtype: "float32", residual: true });
  });

  test("a short load run: every good request answered, every malformed one 4xx, no RSS blow-up", async () => {
    const report = await runLoad(url, { requests: 400, concurrency: 16, timeLimitS: 60 });
    expect(report.malformed.sent).toBeGreaterThan(10);
    expect(report.good.ok).toBe(report.good.sent);
    expect(checkReport(report, 64 * 2 ** 20)).toEqual([]);
    expect(report.latencyMs.p99).toBeGreaterThan(0);
  });

  test("SIGTERM: a server process drains, frees the device and exits 0", async () => {
    const proc = Bun.spawn([process.execPath, join(import.meta.dir, "..", "examples", "server.ts"), "--port", "0", "--backend", "cpu", "--k", "16", "--n", "24"], {
      stdout: "pipe", stderr: "pipe", env: process.env,
    });
    const reader = proc.stdout.getReader();
    let text = "";
    let serverUrl: string | undefined;
    while (!serverUrl) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      serverUrl = /listening on (http:\/\/\S+)/.exec(text)?.[1];
    }
    expect(serverUrl).toBeDefined();
    const inflight = fetch(`${serverUrl}/v1/mlp`, { method: "POST", body: new Float32Array(16), headers: { "x-shape": "1,16" } });
    expect((await fetch(`${serverUrl}/health`)).status).toBe(200);
    proc.kill("SIGTERM");
    expect([200, 503]).toContain((await inflight).status); // answered, or refused while draining
    expect(await proc.exited).toBe(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toContain("device memory freed");
  });
});
