// build.ts: drives cmake (cuda/CMakeLists.txt, the only build description) into
// build/libfusedswiglu.so. Incremental: cmake and make rebuild only what changed.
//
//   bun build.ts                      configure + build (Release)
//   FSG_CUDA_ARCHS="80;90a" bun build.ts   fewer architectures (CI builds one)
//   FUSED_SWIGLU_LIB=/path/to/lib.so  skip the build and use a prebuilt library
//   FSG_SKIP_BUILD=1                  skip the build (e.g. when installing as a dependency)
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";

const root = import.meta.dir;
const buildDir = join(root, "build");

function fail(message: string): never {
  console.error(`fused-swiglu build: ${message}`);
  process.exit(1);
}

function which(tool: string): string | null {
  const found = Bun.which(tool);
  if (found) return found;
  const cudaBin = join(process.env.CUDA_HOME ?? "/usr/local/cuda", "bin", tool);
  return existsSync(cudaBin) ? cudaBin : null;
}

function run(cmd: string[]): void {
  const proc = Bun.spawnSync(cmd, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) fail(`command failed (exit ${proc.exitCode}): ${cmd.join(" ")}`);
}

if (process.env.FUSED_SWIGLU_LIB) {
  if (!existsSync(process.env.FUSED_SWIGLU_LIB)) fail(`FUSED_SWIGLU_LIB=${process.env.FUSED_SWIGLU_LIB} does not exist`);
  console.log(`fused-swiglu build: using prebuilt ${process.env.FUSED_SWIGLU_LIB}`);
  process.exit(0);
}
if (process.env.FSG_SKIP_BUILD === "1") process.exit(0);

const cmake = which("cmake");
const nvcc = which("nvcc");
const missing = [
  cmake ? null : "cmake (>= 3.24; apt install cmake, or pip install cmake)",
  nvcc ? null : "nvcc (the CUDA toolkit 12.x/13.x; set CUDA_HOME if it is not in /usr/local/cuda)",
].filter((m): m is string => m !== null);
if (missing.length > 0) {
  fail(`cannot build libfusedswiglu.so, missing: ${missing.join("; ")}.\n` +
    "Install them, or point FUSED_SWIGLU_LIB at a prebuilt libfusedswiglu.so.");
}

mkdirSync(buildDir, { recursive: true });
const archs = process.env.FSG_CUDA_ARCHS;
const cachePath = join(buildDir, "CMakeCache.txt");
const cachedArchs = existsSync(cachePath)
  ? /FSG_CUDA_ARCHS:STRING=(.*)/.exec(readFileSync(cachePath, "utf8"))?.[1]
  : undefined;
if (!existsSync(cachePath) || (archs !== undefined && archs !== cachedArchs)) {
  const configure = [cmake!, "-S", "cuda", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", `-DCMAKE_CUDA_COMPILER=${nvcc}`];
  if (archs !== undefined) configure.push(`-DFSG_CUDA_ARCHS=${archs}`);
  run(configure);
}
const jobs = process.env.FSG_BUILD_JOBS ?? String(Math.max(1, cpus().length));
run([cmake!, "--build", "build", "--parallel", jobs]);
console.log(`fused-swiglu build: ${join(buildDir, "libfusedswiglu.so")}`);
