// code_probe.cu: which of the fat binary's code the driver loaded for the current device.
//
// The sm_90a kernels have bodies only in code compiled for sm_90a (FSG_SM90_ENABLED). A library
// built without 90a in FSG_CUDA_ARCHS still runs on an H100: the driver JIT-compiles its PTX
// there. Its sm_90a kernels would then launch with empty bodies and leave their outputs
// unwritten, so the context reads this marker once and selects them only where it says 2.
// Every .cu file is compiled with the same architectures, so this file's code stands for all.
#include <cuda_runtime.h>

#include "backend.h"
#include "guard.h"
#include "sm90_ptx.cuh"

namespace fsg {
namespace {
// 2: compiled for sm_90a (the Hopper kernels have bodies); 1: any other architecture.
__device__ int g_code_marker = FSG_SM90_ENABLED ? 2 : 1;
}  // namespace

fsg_status cuda_probe_code(int device, const char* device_name, int cc, bool* out_sm90) {
  *out_sm90 = false;
  int marker = 0;
  const cudaError_t err = cudaMemcpyFromSymbol(&marker, g_code_marker, sizeof marker);
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidSymbol ||
      err == cudaErrorInvalidDeviceFunction || err == cudaErrorUnsupportedPtxVersion) {
    cudaGetLastError();  // not sticky: clear it so later calls do not see it
    set_error("device %d (%s, compute capability %d.%d): this libfusedswiglu.so carries no code it can run "
              "(built for %s: %s); rebuild with its architecture in FSG_CUDA_ARCHS (e.g. FSG_CUDA_ARCHS=\"%d%s\" "
              "bun run build), or use backend cpu (2)",
              device, device_name, cc / 10, cc % 10, fsg_cuda_archs(), cudaGetErrorName(err), cc, cc == 90 ? "a" : "");
    return FSG_ERR_NO_DEVICE;
  }
  FSG_TRY(cuda_status(err, "cudaMemcpyFromSymbol (code probe)"));
  *out_sm90 = marker == 2;
  return FSG_OK;
}

}  // namespace fsg
