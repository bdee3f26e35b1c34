// status.cpp: version, status strings and the thread-local last-error message.
#include <cstdarg>
#include <cstdio>

#include "backend.h"

namespace fsg {
namespace {
thread_local char g_last_error[1024] = "";
}

// vsnprintf formats into a buffer: it never prints.
void set_error(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
}

void clear_error() { g_last_error[0] = '\0'; }

}  // namespace fsg

extern "C" {

FSG_API int32_t fsg_abi_version(void) { return FSG_ABI_VERSION; }

FSG_API const char* fsg_version_string(void) { return "0.1.0"; }

// FSG_BUILT_ARCHS comes from cuda/CMakeLists.txt (FSG_CUDA_ARCHS).
FSG_API const char* fsg_cuda_archs(void) { return FSG_BUILT_ARCHS; }

FSG_API const char* fsg_last_error(void) { return fsg::g_last_error; }

FSG_API const char* fsg_status_string(fsg_status status) {
  switch (status) {
    case FSG_OK: return "FSG_OK";
    case FSG_ERR_INVALID_ARGUMENT: return "FSG_ERR_INVALID_ARGUMENT";
    case FSG_ERR_SHAPE: return "FSG_ERR_SHAPE";
    case FSG_ERR_DTYPE: return "FSG_ERR_DTYPE";
    case FSG_ERR_LAYOUT: return "FSG_ERR_LAYOUT";
    case FSG_ERR_ALIAS: return "FSG_ERR_ALIAS";
    case FSG_ERR_DEVICE_MISMATCH: return "FSG_ERR_DEVICE_MISMATCH";
    case FSG_ERR_TOO_LARGE: return "FSG_ERR_TOO_LARGE";
    case FSG_ERR_NO_DEVICE: return "FSG_ERR_NO_DEVICE";
    case FSG_ERR_OUT_OF_MEMORY: return "FSG_ERR_OUT_OF_MEMORY";
    case FSG_ERR_CUDA: return "FSG_ERR_CUDA";
    case FSG_ERR_NOT_READY: return "FSG_ERR_NOT_READY";
    case FSG_ERR_INTERNAL: return "FSG_ERR_INTERNAL";
  }
  return "FSG_ERR_UNKNOWN";
}

}  // extern "C"
