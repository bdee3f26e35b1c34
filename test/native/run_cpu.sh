#!/usr/bin/env bash
# run_cpu.sh: builds and runs the standalone CPU-backend check (test/native/cpu_check.cpp)
# twice: as the library is built (-O3, no -march; the AVX2 micro-kernel is picked at run time
# where the CPU has it) and with the baseline micro-kernel forced (-DFSG_CPU_GENERIC_ONLY).
#   test/native/run_cpu.sh [--bench]      CXXFLAGS="..." overrides -O3
# Exit status is non-zero on any failed case.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${TMPDIR:-/tmp}/fsg_cpu_check"
flags=${CXXFLAGS:-"-O3"}
build() {  # build SUFFIX [extra flags...]
  local suffix="$1"
  shift
  g++ -std=c++17 $flags "$@" -Wall -Wextra -I "$root/cuda/include" -I "$root/cuda/src" \
    "$root/test/native/cpu_check.cpp" "$root"/cuda/src/cpu/*.cpp -o "$out$suffix" -pthread
}
build ""
build -generic -DFSG_CPU_GENERIC_ONLY -march=x86-64-v2
echo "== default build ($flags)"
"$out" "$@"
echo "== baseline micro-kernel (-DFSG_CPU_GENERIC_ONLY -march=x86-64-v2)"
"$out-generic" "$@"
