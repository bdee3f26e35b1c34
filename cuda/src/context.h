// context.h: what an fsg_context, fsg_stream and fsg_event hold. Shared by context.cpp (their
// lifetime, memory, streams, events) and ops.cpp (which launches on the context's stream).
#pragma once
#include <cuda_runtime.h>

#include <chrono>

#include "backend.h"

struct fsg_context {
  int32_t backend = FSG_BACKEND_CPU;  // FSG_BACKEND_CUDA or FSG_BACKEND_CPU, never AUTO
  int32_t device = 0;                 // CUDA ordinal (0 on CPU)
  cudaStream_t stream = nullptr;      // current stream (nullptr: the default stream)
  int32_t threads = 1;                // CPU workers
  int32_t kernel_path = 0;            // 0 auto, 80 force the sm_80 kernels
  int32_t compute_capability = 0;
  char name[256] = "";
};

struct fsg_stream {
  cudaStream_t stream = nullptr;  // nullptr on the CPU backend
};

struct fsg_event {
  cudaEvent_t event = nullptr;  // nullptr on the CPU backend
  std::chrono::steady_clock::time_point host_time{};  // CPU backend: when it was recorded
  bool recorded = false;
};

namespace fsg {

// Makes ctx's device current for the calling thread (CUDA only; a no-op on CPU).
fsg_status bind_device(const fsg_context* ctx);

// Null-argument check that names the argument.
fsg_status require(const void* p, const char* fn, const char* arg);

}  // namespace fsg
