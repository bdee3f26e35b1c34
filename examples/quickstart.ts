// quickstart.ts: the README's quick start, kept runnable (test/examples.test.ts runs it).
//   bun examples/quickstart.ts [--small]
import { Device, SwiGLU, SwiGLUContext, SwiGLUFunction, Tensor } from "../src/index.ts";

const small = process.argv.includes("--small");
const [K, N, B, S] = small ? [64, 96, 2, 5] : [4096, 14336, 8, 512];

const device = Device.open(); // CUDA when there is a GPU, else the CPU backend
const layer = new SwiGLU({ inFeatures: K, hiddenFeatures: N, bias: true, dtype: "bfloat16", layout: "linear", device });
using x = Tensor.randn([B, S, K], "bfloat16", { device });

using z = layer.forward(x, { saveForBackward: "preactivations" }); // [B, S, N]
using dz = Tensor.randn(z.shape, "bfloat16", { device });
using dx = layer.backward(dz)!; // weight and bias grads accumulate in layer.grads
console.log(`z ${JSON.stringify(z.shape)} on ${device.name}; dx ${JSON.stringify(dx.shape)}; grads: ${Object.keys(layer.grads!).join(", ")}`);

// The same through the autograd-style function, keeping only x for a recomputing backward:
using ctx = new SwiGLUContext();
using z2 = SwiGLUFunction.forward(ctx, x, layer.wGate, layer.wUp, { bGate: layer.bGate, bUp: layer.bUp, saveForBackward: "input" });
const grads = SwiGLUFunction.backward(ctx, dz);
console.log(`recompute-mode grads: ${Object.keys(grads).join(", ")}`);
for (const g of Object.values(grads)) g?.dispose();
layer.dispose();
