// load-test.ts: the example server (examples/server.ts) under load, loopback only, bounded in
// requests and in time. Starts the server as a subprocess on a free port, sends --requests
// requests (1-4 rows each, mostly binary, some JSON) from --concurrency workers, ~5% of them
// malformed (each must get a 4xx with a JSON error), then reports throughput, p50/p99 latency,
// and the server's device memory (fsg_context_mem_info) and RSS after a warm-up and at the end
// (both read from /health after a forced GC). Ends the server with SIGTERM (graceful shutdown
// must exit 0). Writes bench/results/load-<backend>-<date>.json. Exits 1 when a check fails.
//
//   bun bench/load-test.ts [--requests 10000] [--concurrency 32] [--quick] [--out bench/results]
//                          [--time-limit 120] [--backend auto|cpu|cuda] [--k K --n N] [--dtype bf16]
//                          [--weights f.safetensors [--prefix p]] [--bad-share 0.05] [--json-share 0.1]
//                          [--streams 2] [--batch-rows R] [--flush-ms 1] [--no-write]
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface LoadOptions {
  requests: number;
  concurrency: number;
  /** Stop issuing requests after this many seconds (the run still reports). */
  timeLimitS: number;
  /** Share of malformed requests (default 0.05). */
  badShare?: number;
  /** Share of the good requests sent as JSON (default 0.1). */
  jsonShare?: number;
  /** Warm-up requests before the start snapshot (default min(200, requests / 10)). */
  warmup?: number;
}

export interface Snapshot {
  rss: number;
  deviceUsed: number;
  deviceTotal: number;
}

export interface LoadReport {
  device: string;
  backend: string;
  model: { K: number; N: number; dtype: string; residual: boolean; weights: string };
  options: Required<LoadOptions>;
  sent: number;
  good: { sent: number; ok: number; failed: number; firstFailure: string | null };
  malformed: { sent: number; rejected4xx: number; unexpected: number; firstUnexpected: string | null };
  durationS: number;
  throughput: { requestsPerS: number; rowsPerS: number };
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  memory: { start: Snapshot; end: Snapshot; rssGrowth: number; deviceGrowth: number };
  server: Record<string, number>;
  stoppedByTimeLimit: boolean;
}

interface Health {
  device: string;
  backend: string;
  memory: { used: number; total: number };
  rss: number;
  model: LoadReport["model"];
  stats: Record<string, number>;
}

async function health(url: string): Promise<Health> {
  const r = await fetch(`${url}/health?gc=1`);
  if (!r.ok) throw new Error(`/health answered ${r.status}`);
  return (await r.json()) as Health;
}

const snapshot = (h: Health): Snapshot => ({ rss: h.rss, deviceUsed: h.memory.used, deviceTotal: h.memory.total });

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Deterministic values in [-1, 1) (xorshift): request bodies, never all zeros. */
function values(n: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    v[i] = s / 2147483648 - 1;
  }
  return v;
}

interface Req {
  init: RequestInit & { method: string };
  path: string;
  rows: number;
  malformed: string | null;
}

/** The malformed kinds, each answered with a 4xx. */
function malformed(kind: number, K: number): Req {
  const bin = (shape: string, bytes: number, extra: Record<string, string> = {}): RequestInit & { method: string } => ({
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-shape": shape, ...extra },
    body: new Uint8Array(bytes),
  });
  const js = (body: string): RequestInit & { method: string } => ({ method: "POST", headers: { "content-type": "application/json" }, body });
  const cases: [string, RequestInit & { method: string }, string?][] = [
    ["wrong K", bin(`2,${K + 1}`, 2 * (K + 1) * 4)],
    ["body shorter than x-shape", bin(`2,${K}`, 2 * K * 4 - 4)],
    ["bad x-shape", bin("two,three", 16)],
    ["invalid JSON", js('{"x": [[1, 2,')],
    ["ragged JSON rows", js(JSON.stringify({ x: [Array(K).fill(0.5), Array(K - 1).fill(0.5)] }))],
    ["unsupported x-dtype", bin(`1,${K}`, K * 8, { "x-dtype": "float64" })],
    ["too many rows", bin(`100000,${K}`, 64)],
    ["non-numeric JSON value", js(JSON.stringify({ x: [[...Array(K - 1).fill(0.1), "a"]] }))],
    ["GET on /v1/mlp", { method: "GET" }],
    ["unknown path", { method: "POST", body: "{}" }, "/v1/nothing"],
    ["no content-type", { method: "POST", body: "x" }],
    ["zero rows", bin(`0,${K}`, 0)],
  ];
  const [name, init, path] = cases[kind % cases.length]!;
  return { init, path: path ?? "/v1/mlp", rows: 0, malformed: name };
}

/** Sends the load to a running server at `url`. */
export async function runLoad(url: string, o: LoadOptions): Promise<LoadReport> {
  const opts: Required<LoadOptions> = {
    badShare: 0.05, jsonShare: 0.1, warmup: Math.min(200, Math.floor(o.requests / 10)), ...o,
  };
  const first = await health(url);
  const K = first.model.K;
  // A pool of request bodies, built once (the client's own cost stays small).
  const pool: Req[] = [];
  for (let i = 0; i < 32; i++) {
    const rows = 1 + (i % 4);
    const v = values(rows * K, i + 1);
    if (i % 10 === 3) {
      const x = Array.from({ length: rows }, (_, r) => Array.from(v.subarray(r * K, (r + 1) * K)));
      pool.push({ init: { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ x }) }, path: "/v1/mlp", rows, malformed: null });
    } else {
      pool.push({
        init: { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": `${rows},${K}` }, body: v },
        path: "/v1/mlp", rows, malformed: null,
      });
    }
  }
  const badEvery = opts.badShare > 0 ? Math.round(1 / opts.badShare) : 0;
  const jsonEvery = opts.jsonShare > 0 ? Math.round(1 / opts.jsonShare) : 0;
  const pick = (i: number): Req => {
    if (badEvery > 0 && i % badEvery === badEvery - 1) return malformed(Math.floor(i / badEvery), K);
    const jsonWanted = jsonEvery > 0 && i % jsonEvery === 1;
    const candidates = pool.filter((r) => (r.init.headers as Record<string, string>)["content-type"] === (jsonWanted ? "application/json" : "application/octet-stream"));
    return candidates[i % candidates.length]!;
  };

  const good = { sent: 0, ok: 0, failed: 0, firstFailure: null as string | null };
  const bad = { sent: 0, rejected4xx: 0, unexpected: 0, firstUnexpected: null as string | null };
  const latencies: number[] = [];
  let rows = 0;

  const one = async (req: Req, record: boolean): Promise<void> => {
    const t0 = performance.now();
    let status = 0;
    let detail = "";
    try {
      const r = await fetch(url + req.path, req.init);
      status = r.status;
      if (req.malformed) {
        const body = (await r.json().catch(() => null)) as { error?: unknown } | null;
        if (status >= 400 && status < 500 && typeof body?.error === "string" && body.error.length > 0) {
          if (record) bad.rejected4xx++;
        } else {
          detail = `${req.malformed}: status ${status}, body ${JSON.stringify(body)}`;
          if (record) bad.unexpected++;
          bad.firstUnexpected ??= detail;
        }
      } else {
        const expected = req.rows * K;
        let count = -1;
        if (status === 200) {
          if (r.headers.get("content-type")?.startsWith("application/json")) {
            const j = (await r.json()) as { y: number[][] };
            count = j.y.reduce((a, row) => a + row.length, 0);
          } else {
            count = (await r.arrayBuffer()).byteLength / 4;
          }
        } else {
          detail = await r.text();
        }
        if (status === 200 && count === expected) {
          if (record) good.ok++;
        } else {
          if (record) good.failed++;
          good.firstFailure ??= `status ${status}, ${count} values for ${expected} expected ${detail}`;
        }
      }
    } catch (e) {
      if (record) (req.malformed ? bad : good).sent >= 0 && (req.malformed ? bad.unexpected++ : good.failed++);
      const msg = `${req.malformed ?? "good"}: ${(e as Error).message}`;
      if (req.malformed) bad.firstUnexpected ??= msg;
      else good.firstFailure ??= msg;
    }
    if (record && !req.malformed) {
      latencies.push(performance.now() - t0);
      rows += req.rows;
    }
  };

  // Warm-up: compile, allocate pools; not counted.
  for (let i = 0; i < opts.warmup; i += opts.concurrency) {
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.warmup - i) }, (_, j) => one(pick(i + j), false)));
  }
  const start = snapshot(await health(url));

  let next = 0;
  let stoppedByTimeLimit = false;
  const t0 = performance.now();
  const deadline = t0 + opts.timeLimitS * 1000;
  const worker = async (): Promise<void> => {
    while (next < opts.requests) {
      if (performance.now() > deadline) {
        stoppedByTimeLimit = true;
        return;
      }
      const req = pick(next++);
      if (req.malformed) bad.sent++;
      else good.sent++;
      await one(req, true);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const durationS = (performance.now() - t0) / 1000;

  const last = await health(url);
  const end = snapshot(last);
  latencies.sort((a, b) => a - b);
  return {
    device: last.device,
    backend: last.backend,
    model: last.model,
    options: opts,
    sent: good.sent + bad.sent,
    good,
    malformed: bad,
    durationS,
    throughput: { requestsPerS: (good.sent + bad.sent) / durationS, rowsPerS: rows / durationS },
    latencyMs: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? 0,
      mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    },
    memory: { start, end, rssGrowth: end.rss - start.rss, deviceGrowth: end.deviceUsed - start.deviceUsed },
    server: last.stats,
    stoppedByTimeLimit,
  };
}

/** The checks a run must pass: every good request answered, every bad one a 4xx, no leak. */
export function checkReport(r: LoadReport, rssToleranceBytes = 64 * 2 ** 20, deviceToleranceBytes = 64 * 2 ** 20): string[] {
  const problems: string[] = [];
  if (r.good.failed > 0 || r.good.ok !== r.good.sent) problems.push(`${r.good.failed} of ${r.good.sent} good requests failed (first: ${r.good.firstFailure})`);
  if (r.malformed.unexpected > 0) problems.push(`${r.malformed.unexpected} malformed requests were not answered 4xx (first: ${r.malformed.firstUnexpected})`);
  if (r.memory.rssGrowth > rssToleranceBytes) problems.push(`RSS grew by ${(r.memory.rssGrowth / 2 ** 20).toFixed(1)} MiB (tolerance ${rssToleranceBytes / 2 ** 20} MiB)`);
  if (r.memory.deviceGrowth > deviceToleranceBytes) problems.push(`device memory grew by ${(r.memory.deviceGrowth / 2 ** 20).toFixed(1)} MiB`);
  return problems;
}

/** One-paragraph summary of a report. */
export function summarize(r: LoadReport): string {
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return [
    `${r.device} (${r.backend}), MLP K=${r.model.K} N=${r.model.N} ${r.model.dtype}: ${r.sent} requests (${r.malformed.sent} malformed) in ${r.durationS.toFixed(2)} s, concurrency ${r.options.concurrency}`,
    `  throughput ${r.throughput.requestsPerS.toFixed(0)} req/s, ${r.throughput.rowsPerS.toFixed(0)} rows/s; ${r.server.batches} batches (mean ${((r.server.rows ?? 0) / Math.max(1, r.server.batches ?? 0)).toFixed(1)} rows, ${((r.server.batchMs ?? 0) / Math.max(1, r.server.batches ?? 0)).toFixed(2)} ms from enqueue to host), largest ${r.server.largestBatch} rows`,
    `  latency (good requests) p50 ${r.latencyMs.p50.toFixed(2)} ms, p90 ${r.latencyMs.p90.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms, max ${r.latencyMs.max.toFixed(2)} ms`,
    `  good ${r.good.ok}/${r.good.sent} ok; malformed ${r.malformed.rejected4xx}/${r.malformed.sent} answered 4xx`,
    `  server RSS ${mib(r.memory.start.rss)} -> ${mib(r.memory.end.rss)} (${r.memory.rssGrowth >= 0 ? "+" : ""}${mib(r.memory.rssGrowth)}); device memory used ${mib(r.memory.start.deviceUsed)} -> ${mib(r.memory.end.deviceUsed)} of ${mib(r.memory.end.deviceTotal)}`,
  ].join("\n");
}

// ------------------------------------------------------------------------ main ----

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  };
  const quick = argv.includes("--quick");
  const requests = Number(flag("requests") ?? (quick ? 1000 : 10000));
  const concurrency = Number(flag("concurrency") ?? 32);
  const timeLimitS = Number(flag("time-limit") ?? 120);
  if (![requests, concurrency, timeLimitS].every((v) => Number.isFinite(v) && v > 0)) {
    console.error("usage: bun bench/load-test.ts [--requests 10000] [--concurrency 32] [--quick] [--out dir] [--time-limit s] [server flags]");
    return 2;
  }
  const serverArgs = ["--port", "0", "--allow-gc"];
  for (const f of ["backend", "k", "n", "dtype", "weights", "prefix", "batch-rows", "streams", "flush-ms"]) {
    const v = flag(f);
    if (v !== undefined) serverArgs.push(`--${f}`, v);
  }
  if (argv.includes("--residual")) serverArgs.push("--residual");
  const root = join(import.meta.dir, "..");
  const server = Bun.spawn([process.execPath, join(root, "examples", "server.ts"), ...serverArgs], {
    cwd: root, stdout: "pipe", stderr: "inherit", env: process.env,
  });
  const killTimer = setTimeout(() => server.kill("SIGKILL"), (timeLimitS + 120) * 1000); // hard bound
  try {
    // The URL from the server's "listening on" line.
    const reader = server.stdout.getReader();
    let text = "";
    let url: string | null = null;
    const decoder = new TextDecoder();
    while (url === null) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the server exited before listening:\n${text}`);
      text += decoder.decode(value);
      url = /listening on (http:\/\/\S+)/.exec(text)?.[1] ?? null;
    }
    process.stdout.write(text);
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        process.stdout.write(decoder.decode(value));
      }
    })();
    const badShare = Number(flag("bad-share") ?? 0.05);
    const jsonShare = Number(flag("json-share") ?? 0.1);
    const report = await runLoad(url, { requests, concurrency, timeLimitS, badShare, jsonShare });
    const tStop = performance.now();
    server.kill("SIGTERM");
    const exitCode = await server.exited;
    const shutdownMs = performance.now() - tStop;
    console.log(`server exited with ${exitCode} ${shutdownMs.toFixed(0)} ms after SIGTERM`);
    const problems = checkReport(report);
    if (exitCode !== 0) problems.push(`the server exited with ${exitCode} after SIGTERM`);
    if (report.stoppedByTimeLimit) problems.push(`stopped by the time limit after ${report.sent} of ${requests} requests`);
    console.log(summarize(report));
    const result = { date: new Date().toISOString(), command: `bun bench/load-test.ts ${argv.join(" ")}`.trim(), ...report, serverExitCode: exitCode, shutdownMs, problems, pass: problems.length === 0 };
    if (!argv.includes("--no-write")) {
      const dir = flag("out") ?? join(root, "bench", "results");
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `load-${report.backend}-${result.date.slice(0, 10)}${quick ? "-quick" : ""}.json`);
      writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      console.log(`wrote ${file}`);
    }
    for (const p of problems) console.error(`FAIL: ${p}`);
    console.log(problems.length === 0 ? "PASS" : "FAIL");
    return problems.length === 0 ? 0 : 1;
  } finally {
    clearTimeout(killTimer);
    if (server.exitCode === null) server.kill("SIGKILL");
  }
}

if (import.meta.main) process.exit(await main());
