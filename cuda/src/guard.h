// guard.h: the wrapper every exported entry point runs its body in, so that no C++ exception
// crosses the C boundary and every failure leaves a message.
#pragma once
#include <cuda_runtime.h>

#include <exception>
#include <new>

#include "backend.h"

namespace fsg {

void clear_error();

template <class Body>
fsg_status guarded(const char* fn, Body&& body) noexcept {
  clear_error();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    set_error("%s: out of host memory", fn);
    return FSG_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_error("%s: internal error: %s", fn, e.what());
    return FSG_ERR_INTERNAL;
  } catch (...) {
    set_error("%s: internal error (unknown exception)", fn);
    return FSG_ERR_INTERNAL;
  }
}

// Converts a CUDA runtime error into a status with a message naming the call.
inline fsg_status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return FSG_OK;
  if (err == cudaErrorMemoryAllocation) {
    set_error("%s: out of device memory (%s)", what, cudaGetErrorString(err));
    return FSG_ERR_OUT_OF_MEMORY;
  }
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    set_error("%s: no CUDA device (%s); use the CPU backend", what, cudaGetErrorString(err));
    return FSG_ERR_NO_DEVICE;
  }
  set_error("%s: %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err));
  return FSG_ERR_CUDA;
}

#define FSG_TRY(expr)                        \
  do {                                       \
    fsg_status fsg_try_status_ = (expr);     \
    if (fsg_try_status_ != FSG_OK) return fsg_try_status_; \
  } while (0)

}  // namespace fsg
