// sass-stats.ts: `bun bench/sass-stats.ts <cuobjdump -sass output>...` — per-kernel SASS
// instruction counts of the sm_90a dual GEMM (bf16, N-contiguous weights): the total and the most
// frequent opcodes, to see where an epilogue change moved instructions without a profiler
// (bench/NOTES.md, "GLU variants", step 8). On a GPU machine (cuobjdump is not on CI):
//
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -cubin \
//     -I cuda/include -I cuda/src cuda/src/dual_gemm_sm90.cu -o /tmp/k.cubin
//   cuobjdump -sass /tmp/k.cubin > /tmp/k.sass && bun bench/sass-stats.ts /tmp/k.sass
//
// Kernels are named by their template arguments: epi0 forward, epi1 backward; kind0 SiLU, 1 GELU
// (tanh), 2 GELU (erf), 3 ReLU, 4 identity, n1 the general epilogue, n2 SiLU with parameters, n3 SiLU
// with fp8 saves.
import { readFileSync } from "node:fs";

/** Instructions of each function in cuobjdump -sass text (the text before each ';'). */
export function sassByFunction(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of text.split("\n")) {
    const fn = /Function : (\S+)/.exec(line);
    if (fn) {
      current = [];
      out.set(fn[1]!, current);
      continue;
    }
    const ins = /^\s+\/\*[0-9a-f]{4,}\*\/\s+(.*?)\s*;/.exec(line);
    if (ins && current) current.push(ins[1]!);
  }
  return out;
}

/** The opcode of one instruction, without its predicate and modifiers ("@!P0 FMUL.FTZ R1, ..." -> "FMUL"). */
export const opcode = (ins: string): string => ins.replace(/^@!?U?P\w+\s+/, "").split(/\s/)[0]!.split(".")[0]!;

function main(paths: string[]): void {
  if (paths.length === 0) {
    console.error("usage: bun bench/sass-stats.ts <cuobjdump -sass output>...");
    process.exit(2);
  }
  for (const path of paths) {
    for (const [name, code] of [...sassByFunction(readFileSync(path, "utf8"))].sort()) {
      // dual_gemm_sm90_kernel<DType, kTransB, EPI, kKind>: DType 2 is bf16
      const k = /kernelILNS_5DTypeE(\d)ELi(\d)ELi(\d)ELi(n?\d)E/.exec(name);
      if (!k || k[1] !== "2" || k[2] !== "1") continue;
      const counts = new Map<string, number>();
      for (const op of code.map(opcode)) counts.set(op, (counts.get(op) ?? 0) + 1);
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([op, n]) => `${op}:${n}`);
      console.log(`${path} epi${k[3]} kind${k[4]} total ${code.length} | ${top.join(" ")}`);
    }
  }
}

if (import.meta.main) main(process.argv.slice(2));
