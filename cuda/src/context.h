// context.h: what an fsg_context, fsg_stream and fsg_event hold. Shared by context.cpp (their
// lifetime, memory, streams, events) and ops.cpp (which launches on the context's stream).
#pragma once
#include <cuda_runtime.h>

#include <chrono>

#include "backend.h"

struct fsg_capture;  // graph.cpp: a CUDA graph capture in progress

struct fsg_context {
  int32_t backend = FSG_BACKEND_CPU;  // FSG_BACKEND_CUDA or FSG_BACKEND_CPU, never AUTO
  int32_t device = 0;                 // CUDA ordinal (0 on CPU)
  cudaStream_t stream = nullptr;      // current stream (nullptr: the default stream)
  int32_t threads = 1;                // CPU workers
  int32_t kernel_path = 0;            // 0 auto, 80 force the sm_80 kernels
  bool fp16_accumulate = false;       // fsg_context_set_fp16_accumulation
  int32_t compute_capability = 0;
  bool sm90_kernels = false;          // the sm_90a kernels run here (code_probe.cu)
  char name[256] = "";
  fsg_capture* capture = nullptr;     // graph.cpp: non-null from fsg_graph_begin to fsg_graph_end
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
// The handles this library made (contexts, streams, events, graphs) and has not destroyed. A
// destroyed, foreign or NULL handle is refused with FSG_ERR_INVALID_ARGUMENT instead of being used
// after free (the TypeScript layer guards its own; C callers may not).
// Each is kept with its kind: a live stream given where a context is expected is refused too.
enum class HandleKind { kContext, kStream, kEvent, kGraph };
void register_handle(const void* h, HandleKind kind);
bool unregister_handle(const void* h, HandleKind kind);  // false when h was not a live handle of that kind
fsg_status require_live(const void* h, HandleKind kind, const char* fn, const char* arg);
inline HandleKind kind_of(const fsg_context*) { return HandleKind::kContext; }
inline HandleKind kind_of(const fsg_stream*) { return HandleKind::kStream; }
inline HandleKind kind_of(const fsg_event*) { return HandleKind::kEvent; }
inline HandleKind kind_of(const fsg_graph*) { return HandleKind::kGraph; }
template <class H> void register_handle(const H* h) { register_handle(h, kind_of(h)); }
template <class H> bool unregister_handle(const H* h) { return unregister_handle(h, kind_of(h)); }
template <class H> fsg_status require_live(const H* h, const char* fn, const char* arg) {
  return require_live(h, kind_of(h), fn, arg);
}

// graph.cpp. FSG_OK unless a graph capture is in progress on ctx; then the call `fn`, which a
// graph cannot hold (`why`), is refused: the capture is abandoned and FSG_ERR_INVALID_ARGUMENT
// returned with a message naming fn and why.
fsg_status refuse_during_capture(fsg_context* ctx, const char* fn, const char* why);
// True while a capture is in progress on ctx.
bool capturing(const fsg_context* ctx);
// Ends and forgets any capture of ctx (fsg_context_destroy).
void discard_capture(fsg_context* ctx);

}  // namespace fsg
