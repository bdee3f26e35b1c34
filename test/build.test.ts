// build.ts's choice of architectures: which SASS runs on which GPU, and the GPUs of the build
// machine that get SASS of their own (pure functions: nothing is built here).
import { describe, expect, test } from "bun:test";
import { defaultArchs, sassRunsOn, withLocalGpus } from "../build.ts";

describe("build architectures", () => {
  test("SASS runs on its own major version at the same or a newer minor; sm_90a only on 9.0", () => {
    expect(sassRunsOn("80", 80)).toBe(true);
    expect(sassRunsOn("80", 86)).toBe(true);
    expect(sassRunsOn("86", 80)).toBe(false);
    expect(sassRunsOn("89", 90)).toBe(false);
    expect(sassRunsOn("80", 100)).toBe(false);
    expect(sassRunsOn("90a", 90)).toBe(true);
    expect(sassRunsOn("90a", 100)).toBe(false);
    expect(sassRunsOn("100", 103)).toBe(true);
    expect(sassRunsOn("nonsense", 80)).toBe(false);
  });

  test("a GPU that no listed SASS runs on is added when nvcc knows it", () => {
    const list = ["80", "86", "89", "90a"];
    const codes = ["sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"];
    expect(withLocalGpus(list, [], codes)).toEqual(list);
    expect(withLocalGpus(list, [90, 86, 87], codes)).toEqual(list); // covered by sm_90a, sm_86, sm_80
    // Once each, before the last entry, which names the PTX (compute_90 here, not compute_120).
    expect(withLocalGpus(list, [100, 100, 120], codes)).toEqual(["80", "86", "89", "100", "120", "90a"]);
    expect(withLocalGpus(list, [100], ["sm_80", "sm_90"])).toEqual(list); // an older nvcc: PTX JIT
    expect(withLocalGpus(["80"], [90], codes)).toEqual(["90a", "80"]); // the Hopper kernels need sm_90a
    // Pre-Ampere GPUs run the CPU backend: their SASS would not even compile (bf16, m16n8k16).
    expect(withLocalGpus(list, [75, 70, 61], [...codes, "sm_75", "sm_70", "sm_61"])).toEqual(list);
  });

  test("the default list is CMakeLists.txt's, with any local GPU's before the PTX entry", () => {
    // No GPU on CI (nvidia-smi absent): exactly the default; on a GPU machine, maybe more inside.
    const archs = defaultArchs(Bun.which("nvcc") ?? "nvcc").split(";");
    expect(archs.slice(0, 3)).toEqual(["80", "86", "89"]);
    expect(archs[archs.length - 1]).toBe("90a");
  });
});
