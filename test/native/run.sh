#!/usr/bin/env bash
# run.sh: build test/native/kernel_check.cu with the CUDA kernels and run it.
#   test/native/run.sh [--quick | --time] [--memcheck]
#   --quick     small shapes only, no timing
#   --time      timings only
#   --memcheck  run under compute-sanitizer --tool memcheck (use with --quick)
# Env: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), ARCHS (default "80 90a"),
#      BUILD_DIR (default build/native).
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
BUILD_DIR=${BUILD_DIR:-build/native}
mkdir -p "$BUILD_DIR"
gencode=()
for a in ${ARCHS:-80 90a}; do gencode+=("-gencode=arch=compute_$a,code=sm_$a"); done
args=() memcheck=0
for a in "$@"; do [[ $a == --memcheck ]] && memcheck=1 || args+=("$a"); done
bin="$BUILD_DIR/kernel_check"
srcs=(test/native/kernel_check.cu cuda/src/dual_gemm_sm80.cu cuda/src/gemm_sm80.cu cuda/src/activation.cu)
if [[ ! -x $bin || -n $(find "${srcs[@]}" cuda/src/*.cuh cuda/src/*.h -newer "$bin" 2>/dev/null) ]]; then
  objs=()
  for s in "${srcs[@]}"; do
    o="$BUILD_DIR/$(basename "${s%.cu}").o"
    "$NVCC" -std=c++17 -O3 --expt-relaxed-constexpr "${gencode[@]}" -I cuda/include -I cuda/src -c "$s" -o "$o" &
    objs+=("$o")
  done
  wait
  "$NVCC" "${gencode[@]}" "${objs[@]}" -o "$bin"
fi
if [[ $memcheck == 1 ]]; then
  CS=${CS:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
  exec "$CS" --tool memcheck --error-exitcode 3 "$bin" "${args[@]}"
fi
exec "$bin" "${args[@]}"
