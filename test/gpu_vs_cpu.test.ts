// GPU-vs-CPU agreement (CUDA only): the same rounded inputs through both backends, on both CUDA
// kernel paths; the two results must agree within the dtype's tolerance.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Device } from "../src/device.ts";
import { weightGradsLike } from "../src/function.ts";
import { disposeWeights, LAYOUTS, viewsOf, weightsIn } from "../src/layouts.ts";
import { fusedSwiglu, fusedSwigluBackward, matmul, weightedSwiglu } from "../src/ops.ts";
import { Tensor } from "../src/tensor.ts";
import { disposeAll, DTYPE_LIST, hasCuda, randn, RTOL } from "./helpers.ts";

for (const path of [0, 80] as const) {
  describe.if(hasCuda)(`GPU vs CPU agreement [kernel path ${path === 0 ? "auto" : "sm_80"}]`, () => {
    let cpu: Device;
    let gpu: Device;
    beforeAll(() => {
      cpu = Device.open({ backend: "cpu" });
      gpu = Device.open({ backend: "cuda" });
      gpu.setKernelPath(path);
    });
    afterAll(() => {
      cpu?.dispose();
      gpu?.dispose();
    });

    for (const dtype of DTYPE_LIST) {
      test(`${dtype}: fused forward and backward over every layout`, () => {
        const [M, K, N] = [333, 257, 191];
        LAYOUTS.forEach((layout) => {
          const xc = randn([M, K], dtype, cpu);
          const dzc = randn([M, N], dtype, cpu);
          const wc = weightsIn(layout, K, N, { dtype, device: cpu });
          wc.storage.writeRaw(randn([...wc.storage.shape], dtype, cpu, 0.1).toRaw());
          wc.storage2?.writeRaw(randn([K, N], dtype, cpu, 0.1).toRaw());
          const xg = xc.to(gpu);
          const dzg = dzc.to(gpu);
          const sg = wc.storage.to(gpu);
          const s2g = wc.storage2?.to(gpu) ?? null;
          const wg = layout === "separate" ? { gate: sg, up: s2g! } : viewsOf(layout, sg, K, N);
          const zc = fusedSwiglu(xc, wc.gate, wc.up);
          const zg = fusedSwiglu(xg, wg.gate, wg.up);
          expect(zg.toFloat32()).toBeAllClose(zc.toFloat32(), { rtol: RTOL[dtype] });
          const gc = weightGradsLike(wc.gate, wc.up);
          const gg = weightGradsLike(wg.gate, wg.up);
          const dxc = Tensor.empty([M, K], dtype, { device: cpu });
          const dxg = Tensor.empty([M, K], dtype, { device: gpu });
          fusedSwigluBackward(dzc, xc, wc.gate, wc.up, { dx: dxc, ...gc });
          fusedSwigluBackward(dzg, xg, wg.gate, wg.up, { dx: dxg, ...gg });
          expect(dxg.toFloat32()).toBeAllClose(dxc.toFloat32(), { rtol: RTOL[dtype] });
          expect(gg.dwGate.toFloat32()).toBeAllClose(gc.dwGate.toFloat32(), { rtol: RTOL[dtype] });
          expect(gg.dwUp.toFloat32()).toBeAllClose(gc.dwUp.toFloat32(), { rtol: RTOL[dtype] });
          disposeAll(xc, dzc, xg, dzg, sg, s2g, zc, zg, dxc, dxg, gc.dwGate, gc.dwUp, gg.dwGate, gg.dwUp);
          if (layout !== "separate") disposeAll(wg.gate, wg.up);
          disposeWeights(wc);
        });
      });

      test(`${dtype}: weighted activation and gemm`, () => {
        const yc = randn([4, 100, 512], dtype, cpu, 2);
        const bc = randn([512], dtype, cpu);
        const tc = randn([400, 1], "float32", cpu);
        const [yg, bg, tg] = [yc.to(gpu), bc.to(gpu), tc.to(gpu)];
        const oc = weightedSwiglu(yc, tc, bc);
        const og = weightedSwiglu(yg, tg, bg);
        expect(og.toFloat32()).toBeAllClose(oc.toFloat32(), { rtol: RTOL[dtype] });
        const ac = randn([300, 1000], dtype, cpu);
        const mc = randn([1000, 129], dtype, cpu, 0.05);
        const [ag, mg] = [ac.to(gpu), mc.to(gpu)];
        const cc = matmul(ac, mc);
        const cg = matmul(ag, mg);
        expect(cg.toFloat32()).toBeAllClose(cc.toFloat32(), { rtol: RTOL[dtype] });
        disposeAll(yc, bc, tc, yg, bg, tg, oc, og, ac, mc, ag, mg, cc, cg);
      });
    }
  });
}
