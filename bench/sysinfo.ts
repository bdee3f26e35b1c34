// sysinfo.ts: what the results JSON records about the machine: GPU name, driver and CUDA versions
// (nvidia-smi through Bun.spawnSync when present), Bun, the library and its GPU code, the command line.
import { cudaArchs, libraryPath, type Device } from "../src/index.ts";

function run(cmd: string[]): string | null {
  try {
    const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "ignore" });
    return p.exitCode === 0 ? p.stdout.toString().trim() : null;
  } catch {
    return null;
  }
}

export interface SysInfo {
  device: string;
  backend: string;
  computeCapability: number;
  /** The sm_90a kernels run (Device.hopperKernels). */
  hopperKernels: boolean;
  /** The code the library carries (cudaArchs()). */
  cudaArchs: string;
  gpuName: string | null;
  driver: string | null;
  cuda: string | null;
  bun: string;
  library: string;
  command: string;
  date: string;
  host: string;
}

export function sysInfo(device: Device): SysInfo {
  const q = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]);
  const [gpuName, driver] = q ? q.split("\n")[0]!.split(",").map((s) => s.trim()) : [null, null];
  const header = run(["nvidia-smi"]);
  const cuda = header ? /CUDA Version:\s*([\d.]+)/.exec(header)?.[1] ?? null : null;
  return {
    device: device.name,
    backend: device.backend,
    computeCapability: device.computeCapability,
    hopperKernels: device.hopperKernels,
    cudaArchs: cudaArchs(),
    gpuName: gpuName ?? null,
    driver: driver ?? null,
    cuda,
    bun: Bun.version,
    library: libraryPath,
    command: ["bun", ...process.argv.slice(1)].join(" "),
    date: new Date().toISOString(),
    host: run(["hostname"]) ?? "",
  };
}

/** File-name slug of the device: "nvidia-h100-80gb-hbm3", or "cpu". */
export function deviceSlug(device: Device): string {
  if (device.backend === "cpu") return "cpu";
  return device.name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}
