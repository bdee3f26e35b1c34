// build.ts: drives cmake (cuda/CMakeLists.txt, the only build description) into
// build/libfusedswiglu.so. Incremental: cmake and make rebuild only what changed.
//
//   bun build.ts                      configure + build (Release)
//   FSG_CUDA_ARCHS="80;90a" bun build.ts   fewer architectures (CI builds one)
//   FUSED_SWIGLU_LIB=/path/to/lib.so  skip the build and use a prebuilt library
//   FSG_SKIP_BUILD=1                  skip the build (e.g. when installing as a dependency)
//
// Without FSG_CUDA_ARCHS the list is CMakeLists.txt's default plus the architecture of each GPU
// of this machine that none of its SASS runs on (a Blackwell GPU: 100, 120), when nvcc can
// compile for it. Such a GPU could JIT the PTX instead, but that takes minutes on first use.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";

const root = import.meta.dir;
const buildDir = join(root, "build");

function fail(message: string): never {
  console.error(`fused-swiglu build: ${message}`);
  process.exit(1);
}

/** `tool` from $CUDA_HOME/bin when CUDA_HOME is set (it names the toolkit to use, over an older
 * nvcc on PATH), else from PATH, else from /usr/local/cuda/bin. */
function which(tool: string): string | null {
  const inCuda = (home: string): string | null => (existsSync(join(home, "bin", tool)) ? join(home, "bin", tool) : null);
  if (process.env.CUDA_HOME) {
    const found = inCuda(process.env.CUDA_HOME);
    if (found) return found;
  }
  return Bun.which(tool) ?? inCuda("/usr/local/cuda");
}

function run(cmd: string[]): void {
  const proc = Bun.spawnSync(cmd, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) fail(`command failed (exit ${proc.exitCode}): ${cmd.join(" ")}`);
}

/** The SASS of `arch` ("86", "90a") runs on compute capability `cc` (major*10 + minor): the same
 * major and no newer minor, or exactly cc for an arch-specific ("a"/"f") target. */
export function sassRunsOn(arch: string, cc: number): boolean {
  const m = /^(\d+)([a-z]?)$/.exec(arch);
  if (!m) return false;
  const n = Number(m[1]);
  if (m[2]) return n === cc;
  return Math.floor(n / 10) === Math.floor(cc / 10) && n <= cc;
}

/** `list` plus the architecture of each GPU (compute capabilities `gpus`) that no entry's SASS
 * runs on, where nvcc can compile for it (`nvccCodes`: `nvcc --list-gpu-code`, e.g. "sm_100");
 * on 9.0 that is 90a. They go before the last entry, which names the PTX (CMakeLists.txt): PTX
 * for this machine's newest GPU would not JIT on an older one the library is copied to. */
export function withLocalGpus(list: string[], gpus: number[], nvccCodes: string[]): string[] {
  const added: string[] = [];
  for (const cc of gpus) {
    if (cc < 80) continue; // the kernels need sm_80 (mma m16n8k16, bf16); such a GPU runs the CPU backend
    // On 9.0 the Hopper kernels need sm_90a.
    const arch = cc === 90 ? "90a" : String(cc);
    const covered = [...list, ...added].some((a) => sassRunsOn(a, cc));
    if (!covered && nvccCodes.includes(`sm_${cc}`)) added.push(arch);
  }
  return list.length === 0 ? added : [...list.slice(0, -1), ...added, list[list.length - 1]!];
}

function capture(cmd: string[]): string {
  try {
    const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "ignore" });
    return p.exitCode === 0 ? p.stdout.toString() : "";
  } catch {
    return ""; // not installed
  }
}

/** CMakeLists.txt's default architectures, plus this machine's GPUs that need their own SASS. */
export function defaultArchs(nvcc: string): string {
  const cmakeLists = readFileSync(join(root, "cuda", "CMakeLists.txt"), "utf8");
  const list = /set\(FSG_CUDA_ARCHS "([^"]+)"/.exec(cmakeLists)?.[1]?.split(";");
  if (!list) fail("cuda/CMakeLists.txt: no default FSG_CUDA_ARCHS");
  const gpus = capture(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"])
    .split("\n")
    .map((line) => Math.round(Number(line.trim()) * 10))
    .filter((cc) => Number.isFinite(cc) && cc > 0);
  const codes = capture([nvcc, "--list-gpu-code"]).split(/\s+/);
  const archs = withLocalGpus(list, gpus, codes);
  const added = archs.filter((a) => !list.includes(a));
  if (added.length > 0) console.log(`fused-swiglu build: adding sm_${added.join(", sm_")} for this machine's GPU`);
  return archs.join(";");
}

function main(): void {
  if (process.env.FUSED_SWIGLU_LIB) {
    if (!existsSync(process.env.FUSED_SWIGLU_LIB)) fail(`FUSED_SWIGLU_LIB=${process.env.FUSED_SWIGLU_LIB} does not exist`);
    console.log(`fused-swiglu build: using prebuilt ${process.env.FUSED_SWIGLU_LIB}`);
    return;
  }
  if (process.env.FSG_SKIP_BUILD === "1") return;

  const cmake = which("cmake");
  const nvcc = which("nvcc");
  const missing = [
    cmake ? null : "cmake (>= 3.24; apt install cmake, or pip install cmake)",
    nvcc ? null : "nvcc (the CUDA toolkit 12.x/13.x; set CUDA_HOME if it is not in /usr/local/cuda)",
  ].filter((m): m is string => m !== null);
  if (!cmake || !nvcc) {
    fail(`cannot build libfusedswiglu.so, missing: ${missing.join("; ")}.\n` +
      "Install them, or point FUSED_SWIGLU_LIB at a prebuilt libfusedswiglu.so.");
  }

  mkdirSync(buildDir, { recursive: true });
  // A configured build keeps its architectures unless FSG_CUDA_ARCHS names others.
  const requested = process.env.FSG_CUDA_ARCHS;
  const cachePath = join(buildDir, "CMakeCache.txt");
  const cachedArchs = existsSync(cachePath)
    ? /FSG_CUDA_ARCHS:STRING=(.*)/.exec(readFileSync(cachePath, "utf8"))?.[1]
    : undefined;
  // A configure that failed (a cache but no Makefile) is configured again.
  const configured = existsSync(cachePath) && existsSync(join(buildDir, "Makefile"));
  if (!configured || (requested !== undefined && requested !== cachedArchs)) {
    const archs = requested ?? defaultArchs(nvcc);
    run([cmake, "-S", "cuda", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", `-DCMAKE_CUDA_COMPILER=${nvcc}`,
      `-DFSG_CUDA_ARCHS=${archs}`]);
  }
  const jobs = process.env.FSG_BUILD_JOBS ?? String(Math.max(1, cpus().length));
  run([cmake, "--build", "build", "--parallel", jobs]);
  console.log(`fused-swiglu build: ${join(buildDir, "libfusedswiglu.so")}`);
}

if (import.meta.main) main();
