// The SASS counter (bench/sass-stats.ts) on text in cuobjdump -sass's format: functions split at
// their headers, encoding-only lines skipped, opcodes without predicates and modifiers.
import { expect, test } from "bun:test";
import { opcode, sassByFunction } from "../bench/sass-stats.ts";

const SAMPLE = `
\tcode for sm_90a
\t\tFunction : kernel_a
\t.headerflags\t@"EF_CUDA_SM90"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                  /* 0x00000a00ff017b82 */
                                                                          /* 0x000fe20000000800 */
        /*0010*/              @!P0 FMUL.FTZ R2, R3, R4 ;                   /* 0x000fe200078e00ff */
        /*0020*/                   MUFU.EX2 R5, R5 ;                       /* 0x000fe200078e00ff */
\t\t..........
\t\tFunction : kernel_b
        /*0000*/                   FMNMX.NAN R9, |R25|, R0, !PT ;          /* 0x000fe200078e00ff */
`;

test("splits functions and keeps only instructions", () => {
  const fns = sassByFunction(SAMPLE);
  expect([...fns.keys()]).toEqual(["kernel_a", "kernel_b"]);
  expect(fns.get("kernel_a")).toEqual(["LDC R1, c[0x0][0x28]", "@!P0 FMUL.FTZ R2, R3, R4", "MUFU.EX2 R5, R5"]);
  expect(fns.get("kernel_b")).toEqual(["FMNMX.NAN R9, |R25|, R0, !PT"]);
});

test("an opcode drops the predicate and the modifiers", () => {
  expect(opcode("@!P0 FMUL.FTZ R2, R3, R4")).toBe("FMUL");
  expect(opcode("@UP1 BRA 0x100")).toBe("BRA");
  expect(opcode("MUFU.EX2 R5, R5")).toBe("MUFU");
  expect(opcode("IMAD.WIDE R8, R182, 0x80, R8")).toBe("IMAD");
});
