// code_probe.cu: which of the fat binary's code the driver loaded for the current device.
//
// The sm_90a kernels have bodies only in code compiled for sm_90a (FSG_SM90_ENABLED). A library
// built without 90a in FSG_CUDA_ARCHS still runs on an H100: the driver JIT-compiles its PTX
// there. Its sm_90a kernels would then launch with empty bodies and leave their outputs
// unwritten, so the context asks once which code it got and selects them only where it is sm_90a.
// Every .cu file is compiled with the same architectures, so this file's code stands for all.
//
// The answer is read from a kernel's attributes, not from device memory: cudaFuncGetAttributes
// puts no work on a stream, so a context can be created during another one's graph capture.
#include <cuda_runtime.h>

#include "backend.h"
#include "guard.h"
#include "sm90_ptx.cuh"

namespace fsg {
namespace {
// Never launched. Its launch bound is the marker: 64 threads in sm_90a code, 32 in any other
// (each compilation pass sees its own FSG_SM90_ENABLED), read back as maxThreadsPerBlock.
constexpr int kSm90Marker = 64, kOtherMarker = 32;
__global__ void __launch_bounds__(FSG_SM90_ENABLED ? kSm90Marker : kOtherMarker) code_probe_kernel() {}
}  // namespace

fsg_status cuda_probe_code(int device, const char* device_name, int cc, bool* out_sm90) {
  *out_sm90 = false;
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, code_probe_kernel);
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction ||
      err == cudaErrorUnsupportedPtxVersion) {
    cudaGetLastError();  // not sticky: clear it so later calls do not see it
    set_error("device %d (%s, compute capability %d.%d): this libfusedswiglu.so carries no code it can run "
              "(built for %s: %s); rebuild with its architecture in FSG_CUDA_ARCHS (e.g. FSG_CUDA_ARCHS=\"%d%s\" "
              "bun run build), or use backend cpu (2)",
              device, device_name, cc / 10, cc % 10, fsg_cuda_archs(), cudaGetErrorName(err), cc, cc == 90 ? "a" : "");
    return FSG_ERR_NO_DEVICE;
  }
  FSG_TRY(cuda_status(err, "cudaFuncGetAttributes (code probe)"));
  if (attr.maxThreadsPerBlock != kSm90Marker && attr.maxThreadsPerBlock != kOtherMarker) {
    set_error("code probe: unexpected maxThreadsPerBlock %d (expected %d or %d)", attr.maxThreadsPerBlock,
              kSm90Marker, kOtherMarker);
    return FSG_ERR_INTERNAL;
  }
  *out_sm90 = attr.maxThreadsPerBlock == kSm90Marker;
  return FSG_OK;
}

}  // namespace fsg
