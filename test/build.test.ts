// build.ts's choice of architectures: which SASS runs on which GPU, and the GPUs of the build
// machine that get SASS of their own (pure functions: nothing is built here).
import { describe, expect, test } from "bun:test";
import { sassRunsOn, withLocalGpus } from "../build.ts";

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
    expect(withLocalGpus(list, [100, 100, 120], codes)).toEqual([...list, "100", "120"]); // once each
    expect(withLocalGpus(list, [100], ["sm_80", "sm_90"])).toEqual(list); // an older nvcc: PTX JIT
    expect(withLocalGpus(["80"], [90], codes)).toEqual(["80", "90a"]); // the Hopper kernels need sm_90a
  });
});
