// plot.ts: a hand-written SVG (no browser, no dependency): TFLOP/s and fraction of the floor
// against M (log scale) at K=4096, N=14336, one line per implementation (colour) and dtype
// (dash), one row of panels per op (fwd, bwd-store, fwdbwd-store), from a Results object;
// writeDecodePlot: the --decode-sweep curve (fraction of copy bandwidth against M), or for sweeps
// past M = 256 (--m-sweep) the fraction of the floor (compute or memory) against log M.
import { writeFileSync } from "node:fs";
import type { Op } from "./cases.ts";
import type { CaseResult, Results } from "./report.ts";

const COLORS: Record<string, string> = {
  fused: "#d62728", "lib-unfused": "#1f77b4", "cublas-unfused": "#2ca02c", "cublas-gemm": "#7f7f7f", lib: "#9467bd",
};
const DASH: Record<string, string> = { bfloat16: "", float16: "6,3", float32: "2,3" };
const OPS: Op[] = ["fwd", "bwd-store", "fwdbwd-store"];
const W = 420, H = 260, PAD = { l: 56, r: 12, t: 28, b: 40 };

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

function panel(x0: number, y0: number, title: string, series: { label: string; color: string; dash: string; pts: [number, number][] }[], yLabel: string, yMaxFixed?: number): string {
  const all = series.flatMap((s) => s.pts);
  if (all.length === 0) return "";
  const xs = all.map((p) => Math.log2(p[0]));
  const xMin = Math.min(...xs), xMax = Math.max(...xs, xMin + 1);
  const yMax = yMaxFixed ?? Math.max(...all.map((p) => p[1])) * 1.1;
  const pw = W - PAD.l - PAD.r, ph = H - PAD.t - PAD.b;
  const sx = (m: number) => x0 + PAD.l + ((Math.log2(m) - xMin) / (xMax - xMin)) * pw;
  const sy = (v: number) => y0 + PAD.t + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<text x="${x0 + W / 2}" y="${y0 + 16}" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`);
  out.push(`<rect x="${x0 + PAD.l}" y="${y0 + PAD.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${x0 + PAD.l}" x2="${x0 + PAD.l + pw}" y1="${sy(v)}" y2="${sy(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 + PAD.l - 4}" y="${sy(v) + 4}" text-anchor="end" font-size="10">${v >= 10 ? v.toFixed(0) : v.toFixed(2)}</text>`);
  }
  const ms = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
  for (const m of ms) out.push(`<text x="${sx(m)}" y="${y0 + PAD.t + ph + 14}" text-anchor="middle" font-size="10">${m}</text>`);
  out.push(`<text x="${x0 + PAD.l + pw / 2}" y="${y0 + H - 6}" text-anchor="middle" font-size="11">M (tokens)</text>`);
  out.push(`<text transform="translate(${x0 + 12},${y0 + PAD.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(yLabel)}</text>`);
  for (const s of series) {
    const pts = [...s.pts].sort((a, b) => a[0] - b[0]);
    const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
    for (const p of pts) out.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
  }
  return out.join("\n");
}

/** Writes the SVG; returns false when no case at K=4096, N=14336 was measured. */
export function writePlot(path: string, results: Results): boolean {
  const cases = results.cases.filter((c) => c.shape.K === 4096 && c.shape.N === 14336);
  const ops = OPS.filter((op) => cases.some((c) => c.op === op));
  if (ops.length === 0) return false;
  const keys = [...new Set(cases.map((c) => `${c.impl}|${c.dtype}`))];
  const seriesOf = (op: Op, value: (c: CaseResult) => number | null) =>
    keys.map((k) => {
      const [impl, dtype] = k.split("|") as [string, string];
      const pts = cases
        .filter((c) => c.op === op && c.impl === impl && c.dtype === dtype)
        .map((c) => [c.shape.M, value(c)] as [number, number | null])
        .filter((p): p is [number, number] => p[1] !== null && Number.isFinite(p[1]));
      return { label: `${impl} ${dtype}`, color: COLORS[impl] ?? "#000", dash: DASH[dtype] ?? "", pts };
    }).filter((s) => s.pts.length > 0);
  const legendH = 20 + 16 * Math.ceil(keys.length / 3);
  const width = 2 * W, height = ops.length * H + legendH + 24;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  const sys = results.system;
  parts.push(`<text x="8" y="16" font-size="12">${esc(`fused-swiglu, K=4096 N=14336, ${sys.gpuName ?? sys.device}, ${sys.date.slice(0, 10)}`)}</text>`);
  ops.forEach((op, r) => {
    const y0 = 20 + r * H;
    parts.push(panel(0, y0, `${op}: TFLOP/s`, seriesOf(op, (c) => c.tflops), "TFLOP/s"));
    parts.push(panel(W, y0, `${op}: fraction of floor`, seriesOf(op, (c) => c.fractionOfFloor), "floor / time", 1));
  });
  const ly = 20 + ops.length * H + 10;
  keys.forEach((k, i) => {
    const [impl, dtype] = k.split("|") as [string, string];
    const x = 10 + (i % 3) * 270, y = ly + Math.floor(i / 3) * 16;
    parts.push(`<line x1="${x}" x2="${x + 30}" y1="${y}" y2="${y}" stroke="${COLORS[impl] ?? "#000"}" stroke-width="2" stroke-dasharray="${DASH[dtype] ?? ""}"/>`);
    parts.push(`<text x="${x + 36}" y="${y + 4}" font-size="11">${esc(`${impl} ${dtype}`)}</text>`);
  });
  parts.push("</svg>");
  writeFileSync(path, parts.join("\n"));
  return true;
}

/**
 * --decode-sweep: the fraction of copy bandwidth the fwd op reaches (2·K·N weight bytes / kernel
 * median / measured copy rate) against M on a linear axis, one line per implementation and dtype,
 * the 80% target dashed. Returns false when no fwd case was measured.
 */
export function writeDecodePlot(path: string, results: Results): boolean {
  const cases = results.cases.filter((c) => c.op === "fwd");
  if (cases.length === 0) return false;
  const copy = results.ceilings.copyGBs;
  const bytes: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 }; // (cases.ts's BYTES would load the library)
  const mMax = Math.max(...cases.map((c) => c.shape.M));
  const logX = mMax > 256; // the whole M range: log axis, fraction of whichever floor is larger
  const frac = logX
    ? (c: CaseResult) => c.fractionOfFloor
    : (c: CaseResult) => (2 * c.shape.K * c.shape.N * bytes[c.dtype]!) / (c.kernelMs.median * 1e-3) / 1e9 / copy;
  const keys = [...new Set(cases.map((c) => `${c.impl}|${c.dtype}`))];
  const w = 760, h = 420, pad = { l: 60, r: 16, t: 44, b: 46 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const yMax = Math.max(1, ...cases.map(frac)) * 1.05;
  const sx = logX ? (m: number) => pad.l + (Math.log2(m) / Math.log2(mMax)) * pw : (m: number) => pad.l + (m / mMax) * pw;
  const sy = (v: number) => pad.t + ph - (v / yMax) * ph;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h + 20 + 16 * Math.ceil(keys.length / 3)}" font-family="sans-serif">`);
  o.push(`<rect width="100%" height="100%" fill="white"/>`);
  const s0 = cases[0]!.shape, sys = results.system;
  o.push(`<text x="8" y="16" font-size="12">${esc(`fused-swiglu fwd, K=${s0.K} N=${s0.N}, ${sys.gpuName ?? sys.device}, ${sys.date.slice(0, 10)}, copy ${copy.toFixed(0)} GB/s`)}</text>`);
  const title = logX
    ? "fraction of the floor (max of FLOPs / matmul rate, bytes / copy rate) vs M"
    : "fraction of copy bandwidth (weights' bytes / time) vs M";
  o.push(`<text x="${pad.l + pw / 2}" y="34" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`);
  o.push(`<rect x="${pad.l}" y="${pad.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    o.push(`<line x1="${pad.l}" x2="${pad.l + pw}" y1="${sy(v)}" y2="${sy(v)}" stroke="#ddd"/>`);
    o.push(`<text x="${pad.l - 4}" y="${sy(v) + 4}" text-anchor="end" font-size="10">${v.toFixed(2)}</text>`);
  }
  const step = mMax > 128 ? 32 : mMax > 32 ? 16 : 4; // linear axis
  const ticks = logX ? Array.from({ length: Math.floor(Math.log2(mMax)) + 1 }, (_, i) => 2 ** i) : Array.from({ length: Math.floor(mMax / step) + 1 }, (_, i) => i * step);
  for (const m of ticks) o.push(`<text x="${sx(m)}" y="${pad.t + ph + 14}" text-anchor="middle" font-size="10">${m}</text>`);
  if (!logX) {
    o.push(`<line x1="${pad.l}" x2="${pad.l + pw}" y1="${sy(0.8)}" y2="${sy(0.8)}" stroke="#d62728" stroke-dasharray="2,4"/>`);
    o.push(`<text x="${pad.l + pw - 4}" y="${sy(0.8) - 4}" text-anchor="end" font-size="10" fill="#d62728">80% target</text>`);
  }
  o.push(`<text x="${pad.l + pw / 2}" y="${pad.t + ph + 32}" text-anchor="middle" font-size="11">M (tokens${logX ? ", log scale" : ""})</text>`);
  keys.forEach((k, i) => {
    const [impl, dtype] = k.split("|") as [string, string];
    const pts = cases.filter((c) => c.impl === impl && c.dtype === dtype).map((c) => [c.shape.M, frac(c)] as [number, number]).filter((p) => Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    const color = COLORS[impl] ?? "#000", dash = DASH[dtype] ?? "";
    o.push(`<path d="${pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ")}" fill="none" stroke="${color}" stroke-width="2" stroke-dasharray="${dash}"/>`);
    for (const p of pts) o.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${color}"/>`);
    const x = 10 + (i % 3) * 250, y = h + 8 + Math.floor(i / 3) * 16;
    o.push(`<line x1="${x}" x2="${x + 30}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2" stroke-dasharray="${dash}"/>`);
    o.push(`<text x="${x + 36}" y="${y + 4}" font-size="11">${esc(`${impl} ${dtype}`)}</text>`);
  });
  o.push("</svg>");
  writeFileSync(path, o.join("\n"));
  return true;
}
