// server.ts: an inference server for one SwiGLU MLP block (Bun.serve), the way the library is
// meant to be embedded: requests are batched into one M, run on device streams, and awaited
// without ever blocking the event loop (src/async.ts polls events).
//
//   bun examples/server.ts [--port 8080] [--weights model.safetensors [--prefix model.layers.0.]]
//                          [--k 1024 --n 2816] [--dtype bf16|fp16|fp32] [--backend auto|cpu|cuda]
//                          [--residual] [--max-rows 256] [--batch-rows R] [--flush-ms 1] [--streams 2]
//
//   POST /v1/mlp   binary: body = raw little-endian elements, headers x-shape: rows,K and
//                  x-dtype: float32 (default) | bfloat16 | float16; the reply has the same form.
//                  JSON: {"x": number[][]} -> {"y": number[][], "shape": [rows, K]}.
//   GET  /health   device, backend, device memory, process RSS, model, counters.
//
// Malformed input, wrong sizes or dtypes: 4xx with {"error": "..."}. SIGINT/SIGTERM: stop
// accepting, answer what is queued, free the device memory, exit 0. Random weights by default
// (K=1024 N=2816 fp32 on the CPU backend, K=4096 N=14336 bf16 on a GPU). --port 0 picks a free
// port; the URL is printed.
import {
  Device, SwiGLUMLP, Tensor, decodeElements, encodeElements, loadSwiGLUMLP, toRawAsync, uploadAsync,
  type Backend, type FloatDType, type RawElements, type Stream,
} from "../src/index.ts";

export interface ServerOptions {
  port?: number;
  hostname?: string;
  backend?: Backend;
  /** A safetensors file with {prefix}mlp.{gate,up,down}_proj.weight; random weights when absent. */
  weights?: string;
  prefix?: string;
  K?: number;
  N?: number;
  dtype?: FloatDType;
  residual?: boolean;
  /** Most rows one request may carry (default 256). */
  maxRows?: number;
  /** Rows at which a batch is flushed at once (default 512 on CUDA, 64 on the CPU backend). */
  maxBatchRows?: number;
  /** Longest a request waits for others to join its batch, in ms (default 1). */
  flushMs?: number;
  /** Batches in flight at once, one stream each (default 2). */
  streams?: number;
  /** GET /health?gc=1 runs a full garbage collection first (load tests). */
  allowGc?: boolean;
}

export interface ServerStats {
  requests: number;
  ok: number;
  clientErrors: number;
  serverErrors: number;
  batches: number;
  rows: number;
  largestBatch: number;
  /** Sum over batches of the time from enqueueing to the result on the host, in ms. */
  batchMs: number;
}

export interface RunningServer {
  url: string;
  port: number;
  device: Device;
  mlp: SwiGLUMLP;
  stats: ServerStats;
  /** Stops accepting, answers everything queued, frees the weights, streams and the device. */
  stop(): Promise<void>;
}

const DTYPE_NAMES: Record<string, FloatDType> = {
  float32: "float32", f32: "float32", fp32: "float32",
  bfloat16: "bfloat16", bf16: "bfloat16",
  float16: "float16", f16: "float16", fp16: "float16",
};
const ITEM_BYTES: Record<FloatDType, number> = { float32: 4, float16: 2, bfloat16: 2 };
// The largest finite value of each dtype: a JSON number past it would become Inf in the model.
const MAX_FINITE: Record<FloatDType, number> = { float32: 3.4028234663852886e38, float16: 65504, bfloat16: 3.3895313892515355e38 };

/** Index of the first element of `raw` (elements of `dtype`) that is Inf or NaN, or -1. */
function firstNonFinite(raw: RawElements, dtype: FloatDType): number {
  const values = convert(raw, dtype, "float32");
  return values.findIndex((v) => !Number.isFinite(v));
}

/** A client error: the status and the message of the JSON reply. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

// --------------------------------------------------------------------- parsing ----

interface ParsedRequest {
  rows: number;
  /** rows × K elements in the model's dtype. */
  raw: RawElements;
  /** How to answer: binary in this dtype, or JSON. */
  reply: { kind: "binary"; dtype: FloatDType } | { kind: "json" };
}

function rawOf(dtype: FloatDType, buffer: ArrayBuffer): RawElements {
  return dtype === "float32" ? new Float32Array(buffer) : new Uint16Array(buffer);
}

/** float32 -> bfloat16 bits, round to nearest even (as dtype.ts), in one loop over the words. */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const words = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < words.length; i++) {
    const x = words[i]!;
    out[i] = (x & 0x7fffffff) > 0x7f800000
      ? ((x >>> 16) & 0x8000) | 0x7fc0 | ((x >>> 16) & 0x3f) // NaN stays a quiet NaN
      : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** bfloat16 bits -> float32 (exact). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const words = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) words[i] = src[i]! << 16;
  return new Float32Array(words.buffer);
}

/** Elements of one dtype as another (no work when they match; bfloat16 <-> float32 in one pass). */
function convert(raw: RawElements, from: FloatDType, to: FloatDType): RawElements {
  if (from === to) return raw;
  if (from === "float32" && to === "bfloat16") return f32ToBf16(raw as Float32Array);
  if (from === "bfloat16" && to === "float32") return bf16ToF32(raw as Uint16Array);
  return encodeElements(to, decodeElements(from, raw));
}

async function parseBinary(req: Request, K: number, dtype: FloatDType, maxRows: number): Promise<ParsedRequest> {
  const shapeHeader = req.headers.get("x-shape");
  const match = shapeHeader === null ? null : /^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$/.exec(shapeHeader);
  if (!match) throw new HttpError(400, `x-shape: expected "rows,${K}", got ${shapeHeader === null ? "no header" : JSON.stringify(shapeHeader)}`);
  const rows = Number(match[1]);
  const cols = Number(match[2]);
  if (cols !== K) throw new HttpError(400, `x-shape: the model takes rows of K = ${K} features, got ${cols}`);
  if (rows < 1) throw new HttpError(400, "x-shape: rows must be at least 1");
  if (rows > maxRows) throw new HttpError(413, `x-shape: ${rows} rows is more than the ${maxRows} one request may carry`);
  const dtypeHeader = req.headers.get("x-dtype") ?? "float32";
  const name = dtypeHeader.trim().toLowerCase();
  const inDtype = Object.hasOwn(DTYPE_NAMES, name) ? DTYPE_NAMES[name] : undefined; // not "constructor"
  if (!inDtype) throw new HttpError(415, `x-dtype: expected float32, bfloat16 or float16, got ${JSON.stringify(dtypeHeader)}`);
  const expected = rows * K * ITEM_BYTES[inDtype];
  const declared = Number(req.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared !== expected) {
    throw new HttpError(400, `body: x-shape ${rows},${K} of ${inDtype} needs ${expected} bytes, content-length says ${declared}`);
  }
  const body = await req.arrayBuffer();
  if (body.byteLength !== expected) {
    throw new HttpError(400, `body: x-shape ${rows},${K} of ${inDtype} needs ${expected} bytes, got ${body.byteLength}`);
  }
  const raw = convert(rawOf(inDtype, body), inDtype, dtype);
  const bad = firstNonFinite(raw, dtype);
  if (bad >= 0) {
    throw new HttpError(400, `body: x[${Math.floor(bad / K)}][${bad % K}] is not finite (as ${dtype}, the model's dtype)`);
  }
  return { rows, raw, reply: { kind: "binary", dtype: inDtype } };
}

async function parseJson(req: Request, K: number, dtype: FloatDType, maxRows: number): Promise<ParsedRequest> {
  let body: unknown;
  try {
    body = JSON.parse(await req.text());
  } catch (e) {
    throw new HttpError(400, `body: invalid JSON (${(e as Error).message})`);
  }
  const x = typeof body === "object" && body !== null ? (body as { x?: unknown }).x : undefined;
  if (!Array.isArray(x) || x.length === 0) throw new HttpError(400, 'body: expected {"x": [[...K numbers], ...]} with at least one row');
  if (x.length > maxRows) throw new HttpError(413, `x: ${x.length} rows is more than the ${maxRows} one request may carry`);
  const values = new Float32Array(x.length * K);
  x.forEach((row: unknown, i) => {
    if (!Array.isArray(row) || row.length !== K) {
      throw new HttpError(400, `x[${i}]: expected an array of K = ${K} numbers, got ${Array.isArray(row) ? `${row.length} entries` : typeof row}`);
    }
    for (let j = 0; j < K; j++) {
      const v: unknown = row[j];
      if (typeof v !== "number" || !Number.isFinite(v)) throw new HttpError(400, `x[${i}][${j}]: expected a finite number, got ${JSON.stringify(v)}`);
      if (Math.abs(v) > MAX_FINITE[dtype]) {
        throw new HttpError(400, `x[${i}][${j}]: ${v} is beyond the largest finite ${dtype} (${MAX_FINITE[dtype]}), the model's dtype`);
      }
      values[i * K + j] = v;
    }
  });
  return { rows: x.length, raw: convert(values, "float32", dtype), reply: { kind: "json" } };
}

function parseRequest(req: Request, K: number, dtype: FloatDType, maxRows: number): Promise<ParsedRequest> {
  const type = (req.headers.get("content-type") ?? "").toLowerCase();
  if (type.startsWith("application/json")) return parseJson(req, K, dtype, maxRows);
  if (type.startsWith("application/octet-stream") || req.headers.has("x-shape")) return parseBinary(req, K, dtype, maxRows);
  throw new HttpError(415, `content-type: expected application/json or application/octet-stream (with x-shape), got ${JSON.stringify(type)}`);
}

function reply(parsed: ParsedRequest, out: RawElements, K: number, dtype: FloatDType): Response {
  if (parsed.reply.kind === "binary") {
    const data = convert(out, dtype, parsed.reply.dtype);
    return new Response(data, {
      headers: { "content-type": "application/octet-stream", "x-shape": `${parsed.rows},${K}`, "x-dtype": parsed.reply.dtype },
    });
  }
  const values = convert(out, dtype, "float32");
  // JSON has no Inf or NaN (JSON.stringify would write null): say so instead of a 200 with nulls.
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    return json({ error: `y[${Math.floor(bad / K)}][${bad % K}] is not finite (${values[bad]}), which JSON cannot carry; ask for binary output (content-type application/octet-stream)` }, 422);
  }
  const y = Array.from({ length: parsed.rows }, (_, i) => Array.from(values.subarray(i * K, (i + 1) * K)));
  return json({ y, shape: [parsed.rows, K] });
}

// -------------------------------------------------------------------- batching ----

interface Job {
  rows: number;
  raw: RawElements;
  resolve: (out: RawElements) => void;
  reject: (e: unknown) => void;
}

/** Collects requests into batches of up to maxBatchRows rows, each run on a free stream. */
class Batcher {
  #queue: Job[] = [];
  #queuedRows = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #free: Stream[];
  #running = new Set<Promise<void>>();

  constructor(
    readonly mlp: SwiGLUMLP,
    streams: Stream[],
    readonly maxBatchRows: number,
    readonly flushMs: number,
    readonly stats: ServerStats,
  ) {
    this.#free = [...streams];
  }

  submit(rows: number, raw: RawElements): Promise<RawElements> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ rows, raw, resolve, reject });
      this.#queuedRows += rows;
      if (this.#queuedRows >= this.maxBatchRows) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.flushMs);
    });
  }

  #flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#queue.length > 0 && this.#free.length > 0) {
      const stream = this.#free.pop()!;
      const batch: Job[] = [];
      let rows = 0;
      while (this.#queue.length > 0 && (batch.length === 0 || rows + this.#queue[0]!.rows <= this.maxBatchRows)) {
        const job = this.#queue.shift()!;
        batch.push(job);
        rows += job.rows;
      }
      this.#queuedRows -= rows;
      const run = this.#run(batch, rows, stream).finally(() => {
        this.#running.delete(run);
        this.#free.push(stream);
        if (this.#queue.length > 0) this.#flush(); // these have waited already
      });
      this.#running.add(run);
    }
  }

  async #run(batch: Job[], M: number, stream: Stream): Promise<void> {
    const { mlp } = this;
    const device = mlp.device;
    const K = mlp.K;
    const input = mlp.dtype === "float32" ? new Float32Array(M * K) : new Uint16Array(M * K);
    let at = 0;
    for (const job of batch) {
      input.set(job.raw, at);
      at += job.raw.length;
    }
    let x: Tensor | null = null;
    let y: Tensor | null = null;
    let upload: Promise<void> | null = null;
    const t0 = performance.now();
    try {
      x = device.withStream(stream, () => Tensor.empty([M, K], mlp.dtype, { device }));
      // The batch's stream has nothing pending: enqueue upload, forward and download back to
      // back and wait once. `input` is held until its copy is done.
      upload = uploadAsync(x, input, { stream, enqueueNow: true });
      upload.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
      const xs = x;
      y = device.withStream(stream, () => mlp.forward(xs));
      const out = await toRawAsync(y, { stream });
      await upload;
      this.stats.batches++;
      this.stats.rows += M;
      this.stats.largestBatch = Math.max(this.stats.largestBatch, M);
      this.stats.batchMs += performance.now() - t0;
      at = 0;
      for (const job of batch) {
        job.resolve(out.subarray(at, at + job.raw.length));
        at += job.raw.length;
      }
    } catch (e) {
      for (const job of batch) job.reject(e);
    } finally {
      await upload?.catch(() => undefined);
      // Stream-ordered frees on the batch's own stream, after its work.
      const done = [x, y];
      if (!device.disposed) device.withStream(stream, () => done.forEach((t) => t?.dispose()));
    }
  }

  /** Runs everything queued and resolves when no batch is in flight. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#running.size > 0) {
      this.#flush();
      await Promise.allSettled([...this.#running]);
    }
  }
}

// ---------------------------------------------------------------------- server ----

function openModel(device: Device, o: ServerOptions): SwiGLUMLP {
  const gpu = device.backend === "cuda";
  if (o.weights) {
    return loadSwiGLUMLP(o.weights, { device, prefix: o.prefix ?? "", K: o.K, N: o.N, dtype: o.dtype, residual: o.residual });
  }
  const K = o.K ?? (gpu ? 4096 : 1024);
  const N = o.N ?? (gpu ? 14336 : 2816);
  const mlp = SwiGLUMLP.random({ K, N, dtype: o.dtype ?? (gpu ? "bfloat16" : "float32"), device, residual: o.residual });
  device.synchronize();
  return mlp;
}

export async function startServer(o: ServerOptions = {}): Promise<RunningServer> {
  const device = Device.open({ backend: o.backend ?? "auto" });
  let mlp: SwiGLUMLP;
  try {
    mlp = openModel(device, o);
  } catch (e) {
    device.dispose();
    throw e;
  }
  const { K, N } = mlp;
  const dtype = mlp.dtype as FloatDType; // weights are float; the fp8 dtypes only hold saved activations
  const maxRows = o.maxRows ?? 256;
  // A request larger than this still runs, as a batch of its own.
  const maxBatchRows = Math.max(1, o.maxBatchRows ?? (device.backend === "cuda" ? 512 : 64));
  const streams = Array.from({ length: Math.max(1, o.streams ?? 2) }, () => device.createStream());
  const stats: ServerStats = { requests: 0, ok: 0, clientErrors: 0, serverErrors: 0, batches: 0, rows: 0, largestBatch: 0, batchMs: 0 };
  const batcher = new Batcher(mlp, streams, maxBatchRows, o.flushMs ?? 1, stats);
  const started = performance.now();
  // Largest body: a JSON request of maxRows rows (numbers as ~24 characters each).
  const maxBody = Math.max(1 << 20, maxRows * K * 24);
  let draining = false;

  const health = (gc: boolean): Response => {
    if (gc && o.allowGc) Bun.gc(true);
    const mem = device.disposed ? { free: 0, total: 0 } : device.memInfo();
    const m = process.memoryUsage();
    return json({
      status: draining ? "draining" : "ok",
      device: device.name,
      backend: device.backend,
      computeCapability: device.computeCapability,
      memory: { free: mem.free, total: mem.total, used: mem.total - mem.free },
      rss: m.rss,
      heapUsed: m.heapUsed,
      model: { K, N, dtype, residual: mlp.residual, weights: o.weights ?? "random" },
      batching: { maxRows, maxBatchRows, flushMs: o.flushMs ?? 1, streams: streams.length },
      stats,
      uptimeS: (performance.now() - started) / 1000,
    });
  };

  const handleMlp = async (req: Request): Promise<Response> => {
    stats.requests++;
    try {
      if (draining) return json({ error: "the server is shutting down" }, 503);
      const parsed = await parseRequest(req, K, dtype, maxRows);
      const out = await batcher.submit(parsed.rows, parsed.raw);
      stats.ok++;
      return reply(parsed, out, K, dtype);
    } catch (e) {
      if (e instanceof HttpError) {
        stats.clientErrors++;
        return json({ error: e.message }, e.status);
      }
      stats.serverErrors++;
      return json({ error: `internal error: ${(e as Error).message ?? String(e)}` }, 500);
    }
  };

  const server = Bun.serve({
    port: o.port ?? 8080,
    hostname: o.hostname ?? "127.0.0.1",
    maxRequestBodySize: maxBody,
    fetch(req): Response | Promise<Response> {
      const url = new URL(req.url);
      if (url.pathname === "/v1/mlp") {
        if (req.method !== "POST") return json({ error: "POST /v1/mlp: use POST" }, 405);
        return handleMlp(req);
      }
      if (url.pathname === "/health") return health(url.searchParams.get("gc") === "1");
      return json({ error: `no route ${req.method} ${url.pathname} (POST /v1/mlp, GET /health)` }, 404);
    },
    error(e): Response {
      return json({ error: `request failed: ${e.message}` }, 400);
    },
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      draining = true;
      const closed = server.stop(false); // no new connections; in-flight requests finish
      await batcher.drain();
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5000).unref());
      if ((await Promise.race([closed.then(() => "closed" as const), timeout])) === "timeout") await server.stop(true);
      await batcher.drain();
      mlp.dispose();
      for (const s of streams) s.dispose();
      device.synchronize();
      device.dispose();
    })();
    return stopping;
  };

  const port = server.port ?? 0;
  const url = `http://${server.hostname}:${port}`;
  return { url, port, device, mlp, stats, stop };
}

// ------------------------------------------------------------------------ main ----

function parseArgs(argv: string[]): ServerOptions {
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0) return argv[i + 1];
    return argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  };
  const int = (name: string): number | undefined => {
    const v = flag(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a non-negative integer, got ${v}`);
    return n;
  };
  const dtypeFlag = flag("dtype");
  const dtype = dtypeFlag === undefined ? undefined : DTYPE_NAMES[dtypeFlag.toLowerCase()];
  if (dtypeFlag !== undefined && !dtype) throw new Error(`--dtype: expected bf16, fp16 or fp32, got ${dtypeFlag}`);
  const backend = (flag("backend") ?? "auto") as Backend;
  if (!["auto", "cpu", "cuda"].includes(backend)) throw new Error(`--backend: expected auto, cpu or cuda, got ${backend}`);
  return {
    port: int("port") ?? 8080,
    hostname: flag("host"),
    backend,
    weights: flag("weights"),
    prefix: flag("prefix"),
    K: int("k"),
    N: int("n"),
    dtype,
    residual: argv.includes("--residual"),
    maxRows: int("max-rows"),
    maxBatchRows: int("batch-rows"),
    flushMs: int("flush-ms"),
    streams: int("streams"),
    allowGc: argv.includes("--allow-gc"),
  };
}

if (import.meta.main) {
  let options: ServerOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\nusage: bun examples/server.ts [--port 8080] [--weights f.safetensors [--prefix p]] [--k K --n N] [--dtype bf16|fp16|fp32] [--backend auto|cpu|cuda] [--residual]`);
    process.exit(2);
  }
  const running = await startServer(options).catch((e: unknown) => {
    console.error(`cannot start: ${(e as Error).message}`);
    process.exit(1);
  });
  const { mlp, device } = running;
  console.log(`fused-swiglu MLP K=${mlp.K} N=${mlp.N} ${mlp.dtype}${mlp.residual ? " +residual" : ""} on ${device.name} (${device.backend}), weights: ${options.weights ?? "random"}`);
  console.log(`listening on ${running.url}  (POST ${running.url}/v1/mlp, GET ${running.url}/health)`);
  const shutdown = (signal: string): void => {
    console.log(`${signal}: draining and shutting down`);
    running.stop().then(
      () => {
        console.log(`stopped after ${running.stats.requests} requests (${running.stats.batches} batches); device memory freed`);
        process.exit(0);
      },
      (e: unknown) => {
        console.error(`shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
}
