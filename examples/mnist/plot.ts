// plot.ts: a hand-written SVG of a training run: left, the per-step training loss of both modes
// (log scale; fused solid, unfused dashed on top, epoch boundaries and held-out accuracy marked);
// right, their per-step relative difference (fp32: against its bound; bf16: next to the difference
// between the bf16 run and the same run in fp32, the noise of rounding).
import { FP32_TOLERANCE, type RunResult } from "./results.ts";

const W = 460;
const H = 300;
const PAD = { l: 58, r: 14, t: 30, b: 42 };
const COLORS = { fused: "#d62728", unfused: "#1f77b4" } as const;

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

interface Series {
  label: string;
  color: string;
  dash: string;
  width: number;
  values: number[];
}

/** One log-y panel of step-indexed series at (x0, 0). */
function panel(x0: number, title: string, yLabel: string, series: Series[], floor: number, extras: (sx: (i: number) => number, sy: (v: number) => number) => string[]): string[] {
  const all = series.flatMap((s) => s.values).map((v) => Math.max(v, floor)).filter(Number.isFinite);
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.ceil(Math.log10(Math.max(...all)) + 1e-9);
  const top = hi > lo ? hi : lo + 1;
  const n = Math.max(1, ...series.map((s) => s.values.length - 1));
  const pw = W - PAD.l - PAD.r;
  const ph = H - PAD.t - PAD.b;
  const sx = (i: number) => x0 + PAD.l + (i / n) * pw;
  const sy = (v: number) => PAD.t + ph - ((Math.log10(Math.max(v, floor)) - lo) / (top - lo)) * ph;
  const out = [
    `<text x="${x0 + W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${x0 + PAD.l}" y="${PAD.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`,
  ];
  for (let e = lo; e <= top; e++) {
    const y = sy(10 ** e).toFixed(1);
    out.push(`<line x1="${x0 + PAD.l}" x2="${x0 + PAD.l + pw}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${x0 + PAD.l - 4}" y="${Number(y) + 4}" text-anchor="end" font-size="10">1e${e}</text>`);
  }
  out.push(`<text x="${x0 + PAD.l + pw / 2}" y="${H - 8}" text-anchor="middle" font-size="11">training step</text>`);
  out.push(`<text transform="translate(${x0 + 13},${PAD.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(yLabel)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const step = Math.round((n * i) / 4);
    out.push(`<text x="${sx(step).toFixed(1)}" y="${PAD.t + ph + 14}" text-anchor="middle" font-size="10">${step}</text>`);
  }
  out.push(...extras(sx, sy));
  for (const s of series) {
    const d = s.values.map((v, i) => `${i ? "L" : "M"}${sx(i).toFixed(1)},${sy(v).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width}" stroke-dasharray="${s.dash}" stroke-linejoin="round"/>`);
  }
  // Legend: a white box in the top-right corner, over the curves.
  const boxW = 34 + 5.6 * Math.max(...series.map((s) => s.label.length));
  const bx = x0 + W - PAD.r - boxW - 4;
  out.push(`<rect x="${bx}" y="${PAD.t + 4}" width="${boxW}" height="${6 + 14 * series.length}" fill="white" fill-opacity="0.9" stroke="#ccc"/>`);
  series.forEach((s, k) => {
    const ly = PAD.t + 18 + 14 * k;
    out.push(`<line x1="${bx + 6}" x2="${bx + 28}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2" stroke-dasharray="${s.dash}"/>`);
    out.push(`<text x="${bx + 32}" y="${ly}" font-size="10">${esc(s.label)}</text>`);
  });
  return out;
}

export function lossPlotSvg(r: RunResult): string {
  const { fused, unfused } = r.modes;
  const steps = fused.stepLosses.length;
  const perEpoch = Math.max(1, Math.round(steps / Math.max(1, fused.epochs.length)));
  const accuracy = (m: typeof fused) => `${(100 * (m.epochs.at(-1)?.testAccuracy ?? 0)).toFixed(2)}%`;
  const epochMarks = (sx: (i: number) => number): string[] =>
    fused.epochs.flatMap((e, k) => {
      const x = sx(Math.min(steps - 1, (k + 1) * perEpoch - 1)).toFixed(1);
      return [
        `<line x1="${x}" x2="${x}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#bbb" stroke-dasharray="2,3"/>`,
        `<text x="${Number(x) - 3}" y="${H - PAD.b - 6}" text-anchor="end" font-size="9" fill="#555">ep ${e.epoch}: ${(100 * e.testAccuracy).toFixed(1)}%</text>`,
      ];
    });
  const ref = r.reference;
  const left = panel(0, "training loss per step", "cross-entropy (log)", [
    ...(ref ? [{ label: "same run in fp32 (unfused)", color: "#999", dash: "", width: 1, values: ref.stepLosses }] : []),
    { label: `fused (held-out ${accuracy(fused)})`, color: COLORS.fused, dash: "", width: 2.2, values: fused.stepLosses },
    { label: `unfused (held-out ${accuracy(unfused)})`, color: COLORS.unfused, dash: "5,4", width: 1.2, values: unfused.stepLosses },
  ], 1e-4, epochMarks);
  const relDiff = (a: number[], b: number[]) => a.map((v, i) => Math.abs(v - b[i]!) / Math.abs(b[i]!));
  const right = panel(W, "relative difference per step", "|a - b| / b (log; 0 drawn at 1e-9)", ref
    ? [
      { label: "bf16 unfused vs fp32 (noise)", color: "#2ca02c", dash: "", width: 1, values: relDiff(unfused.stepLosses, ref.stepLosses) },
      { label: "fused vs unfused", color: "#333", dash: "", width: 1.2, values: relDiff(fused.stepLosses, unfused.stepLosses) },
    ]
    : [
      { label: "fused vs unfused", color: "#333", dash: "", width: 1.2, values: relDiff(fused.stepLosses, unfused.stepLosses) },
      { label: `bound ${FP32_TOLERANCE}`, color: "#2ca02c", dash: "6,3", width: 1.5, values: fused.stepLosses.map(() => FP32_TOLERANCE) },
    ], 1e-9, (sx, sy) => {
      const same = fused.stepLosses.every((f, i) => f === unfused.stepLosses[i]);
      return same ? [`<text x="${sx(0) + 8}" y="${sy(1e-9) - 8}" font-size="11" fill="#333">fused and unfused losses are bitwise identical at every step</text>`] : [];
    });
  const caption = `MNIST, ${r.config.dtype}, SwiGLU(784 -> ${r.config.hidden}) -> Linear(${r.config.hidden} -> 10), batch ${r.config.batch}, ${r.system.device}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 22}" viewBox="0 0 ${2 * W} ${H + 22}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...left,
    ...right,
    `<text x="${W}" y="${H + 14}" text-anchor="middle" font-size="10" fill="#444">${esc(caption)}</text>`,
    "</svg>",
    "",
  ].join("\n");
}
