// context.cpp: contexts (backend + device + current stream), device memory, streams and events.
// On the CPU backend "device memory" is host memory, work is done when a call returns, and
// events record host time, so callers can use one code path for both backends.
#include "context.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <new>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "guard.h"
#include "kernels.h"

namespace fsg {

fsg_status require(const void* p, const char* fn, const char* arg) {
  if (p != nullptr) return FSG_OK;
  set_error("%s: %s must not be NULL", fn, arg);
  return FSG_ERR_INVALID_ARGUMENT;
}

namespace {
struct Handles {
  std::mutex mutex;
  std::unordered_map<const void*, HandleKind> live;
};
// Never destroyed: handles may be destroyed from static destructors after this one would be.
Handles& handles() {
  static Handles* h = new Handles();
  return *h;
}
}  // namespace

void register_handle(const void* h, HandleKind kind) {
  Handles& r = handles();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.live[h] = kind;
}

bool unregister_handle(const void* h, HandleKind kind) {
  Handles& r = handles();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto it = r.live.find(h);
  if (it == r.live.end() || it->second != kind) return false;
  r.live.erase(it);
  return true;
}

fsg_status require_live(const void* h, HandleKind kind, const char* fn, const char* arg) {
  FSG_TRY(require(h, fn, arg));
  static const char* const kNames[] = {"context", "stream", "event", "graph"};
  Handles& r = handles();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto it = r.live.find(h);
  if (it != r.live.end() && it->second == kind) return FSG_OK;
  if (it != r.live.end()) {
    set_error("%s: %s %p is a live %s, not a %s", fn, arg, h, kNames[static_cast<int>(it->second)],
              kNames[static_cast<int>(kind)]);
  } else {
    set_error("%s: %s %p is not a live %s of this library (destroyed already, or never created)", fn, arg, h,
              kNames[static_cast<int>(kind)]);
  }
  return FSG_ERR_INVALID_ARGUMENT;
}

fsg_status bind_device(const fsg_context* ctx) {
  if (ctx->backend != FSG_BACKEND_CUDA) return FSG_OK;
  int current = -1;
  FSG_TRY(cuda_status(cudaGetDevice(&current), "cudaGetDevice"));
  if (current == ctx->device) return FSG_OK;
  return cuda_status(cudaSetDevice(ctx->device), "cudaSetDevice");
}

namespace {

// cudart on a machine without a GPU (or driver) reports "insufficient driver" or "no device":
// both mean zero devices, not an error.
int cuda_device_count() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it so later calls do not see it
    return 0;
  }
  return count;
}

bool is_cuda(const fsg_context* ctx) { return ctx->backend == FSG_BACKEND_CUDA; }

// Why backend cuda found no device. cudart reports a missing driver and one older than itself
// alike ("insufficient driver"); the driver's own version tells them apart, so that a GPU whose
// driver predates the toolkit the library was built with is not reported as no GPU at all.
void no_device_error(const char* fn) {
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) cudaGetLastError();
  if (driver > 0 && driver < CUDART_VERSION) {
    set_error("%s: backend cuda: the NVIDIA driver supports CUDA %d.%d, older than this library's CUDA runtime %d.%d; "
              "update the driver, or build the library with a CUDA toolkit the driver supports; or use backend "
              "cpu (2) or auto (0)", fn, driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000,
              CUDART_VERSION % 1000 / 10);
    return;
  }
  set_error("%s: backend cuda: no CUDA device%s on this machine; use backend cpu (2) or auto (0)", fn,
            driver > 0 ? "" : " or driver");
}

// The oldest GPUs the kernels run on: mma.sync m16n8k16, cp.async and bf16 need sm_80, and the
// fat binary carries no code older than that (an sm_75 launch fails with "no kernel image").
constexpr int kMinComputeCapability = 80;

void init_cpu(fsg_context* ctx) {
  ctx->backend = FSG_BACKEND_CPU;
  ctx->device = 0;
  ctx->compute_capability = 0;
  unsigned hw = std::thread::hardware_concurrency();
  ctx->threads = hw == 0 ? 1 : static_cast<int32_t>(hw);
  std::snprintf(ctx->name, sizeof ctx->name, "CPU (%d threads)", ctx->threads);
}

fsg_status check_ctx(const fsg_context* ctx, const char* fn) { return require_live(ctx, fn, "ctx"); }

// The body of the int32 getters: ctx and the output (named `out_name` in errors) checked, then
// *out = get(*ctx).
template <class Get>
fsg_status get_int(const char* fn, const fsg_context* ctx, int32_t* out, const char* out_name, Get get) {
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(out, fn, out_name));
    *out = get(*ctx);
    return FSG_OK;
  });
}

}  // namespace
}  // namespace fsg

using namespace fsg;

extern "C" {

FSG_API fsg_status fsg_cuda_device_count(int32_t* out_count) {
  return guarded("fsg_cuda_device_count", [&] {
    FSG_TRY(require(out_count, "fsg_cuda_device_count", "out_count"));
    *out_count = cuda_device_count();
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_create(int32_t backend, int32_t device_ordinal, fsg_context** out) {
  const char* fn = "fsg_context_create";
  return guarded(fn, [&] {
    FSG_TRY(require(out, fn, "out"));
    *out = nullptr;
    if (backend != FSG_BACKEND_AUTO && backend != FSG_BACKEND_CUDA && backend != FSG_BACKEND_CPU) {
      set_error("%s: backend: expected 0 (auto), 1 (cuda) or 2 (cpu), got %d", fn, backend);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    int count = cuda_device_count();
    const bool automatic = backend == FSG_BACKEND_AUTO;
    if (automatic) backend = count > 0 ? FSG_BACKEND_CUDA : FSG_BACKEND_CPU;
    auto* ctx = new fsg_context();
    ctx->backend = backend;
    if (backend == FSG_BACKEND_CPU) {
      init_cpu(ctx);
      register_handle(ctx);
      *out = ctx;
      return FSG_OK;
    }
    if (count == 0) {
      delete ctx;
      no_device_error(fn);
      return FSG_ERR_NO_DEVICE;
    }
    if (device_ordinal < 0 || device_ordinal >= count) {
      delete ctx;
      set_error("%s: device_ordinal: expected 0..%d, got %d", fn, count - 1, device_ordinal);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    ctx->device = device_ordinal;
    cudaDeviceProp prop;
    fsg_status st = bind_device(ctx);
    if (st == FSG_OK) st = cuda_status(cudaGetDeviceProperties(&prop, device_ordinal), "cudaGetDeviceProperties");
    if (st != FSG_OK) {
      delete ctx;
      return st;
    }
    ctx->compute_capability = prop.major * 10 + prop.minor;
    if (ctx->compute_capability < kMinComputeCapability) {
      if (automatic) {  // a GPU the kernels cannot run on: auto means the CPU backend
        init_cpu(ctx);
        register_handle(ctx);
        *out = ctx;
        return FSG_OK;
      }
      set_error("%s: device %d (%s) has compute capability %d.%d; the kernels need 8.0 or newer (A100, "
                "RTX 30xx/40xx, L4, H100/H200); use backend cpu (2), or auto (0), which picks the CPU there",
                fn, device_ordinal, prop.name, prop.major, prop.minor);
      delete ctx;
      return FSG_ERR_NO_DEVICE;
    }
    std::snprintf(ctx->name, sizeof ctx->name, "%s", prop.name);
    st = cuda_probe_code(device_ordinal, prop.name, ctx->compute_capability, &ctx->sm90_kernels);
    if (st != FSG_OK) {
      delete ctx;
      return st;
    }
    register_handle(ctx);
    *out = ctx;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_destroy(fsg_context* ctx) {
  return guarded("fsg_context_destroy", [&] {
    if (ctx == nullptr) return FSG_OK;
    if (!unregister_handle(ctx)) return require_live(ctx, "fsg_context_destroy", "ctx");
    discard_capture(ctx);
    delete ctx;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_backend(const fsg_context* ctx, int32_t* out_backend) {
  return get_int("fsg_context_backend", ctx, out_backend, "out_backend",
                 [](const fsg_context& c) { return c.backend; });
}

FSG_API fsg_status fsg_context_device_name(const fsg_context* ctx, char* buf, uint64_t capacity) {
  const char* fn = "fsg_context_device_name";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(buf, fn, "buf"));
    if (capacity == 0) {
      set_error("%s: capacity must be > 0", fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    std::snprintf(buf, capacity, "%s", ctx->name);
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_compute_capability(const fsg_context* ctx, int32_t* out) {
  return get_int("fsg_context_compute_capability", ctx, out, "out",
                 [](const fsg_context& c) { return c.compute_capability; });
}

FSG_API fsg_status fsg_context_sm90_kernels(const fsg_context* ctx, int32_t* out) {
  return get_int("fsg_context_sm90_kernels", ctx, out, "out",
                 [](const fsg_context& c) { return c.sm90_kernels ? 1 : 0; });
}

FSG_API fsg_status fsg_context_set_stream(fsg_context* ctx, fsg_stream* stream) {
  const char* fn = "fsg_context_set_stream";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (stream != nullptr) FSG_TRY(require_live(stream, fn, "stream"));
    FSG_TRY(refuse_during_capture(ctx, fn, "the stream cannot change while a capture records it"));
    ctx->stream = stream == nullptr ? nullptr : stream->stream;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_synchronize(fsg_context* ctx) {
  const char* fn = "fsg_context_synchronize";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (!is_cuda(ctx)) return FSG_OK;
    FSG_TRY(refuse_during_capture(ctx, fn, "waiting for the device cannot be recorded in a graph"));
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaStreamSynchronize(ctx->stream), "fsg_context_synchronize: cudaStreamSynchronize");
  });
}

FSG_API fsg_status fsg_context_mem_info(const fsg_context* ctx, uint64_t* out_free, uint64_t* out_total) {
  const char* fn = "fsg_context_mem_info";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(out_free, fn, "out_free"));
    FSG_TRY(require(out_total, fn, "out_total"));
    if (!is_cuda(ctx)) {
      *out_free = 0;
      *out_total = 0;
      return FSG_OK;
    }
    FSG_TRY(bind_device(ctx));
    size_t free_bytes = 0, total_bytes = 0;
    FSG_TRY(cuda_status(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
    *out_free = free_bytes;
    *out_total = total_bytes;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_set_num_threads(fsg_context* ctx, int32_t threads) {
  const char* fn = "fsg_context_set_num_threads";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (threads < 0 || threads > 4096) {
      set_error("%s: threads: expected 0 (all cores) .. 4096, got %d", fn, threads);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    unsigned hw = std::thread::hardware_concurrency();
    ctx->threads = threads > 0 ? threads : (hw == 0 ? 1 : static_cast<int32_t>(hw));
    if (!is_cuda(ctx)) std::snprintf(ctx->name, sizeof ctx->name, "CPU (%d threads)", ctx->threads);
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_set_kernel_path(fsg_context* ctx, int32_t path) {
  const char* fn = "fsg_context_set_kernel_path";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (path != kPathAuto && path != kPathSmallM && path != kPathSm80 && path != kPathSm90) {
      set_error("%s: path: expected 0 (auto), 1 (small-M kernels), 80 (sm_80 mma.sync) or 90 (sm_90a wgmma), got %d",
                fn, path);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    if (path == kPathSm90 && is_cuda(ctx) && ctx->compute_capability != 90) {
      set_error("%s: path 90 needs a compute capability 9.0 GPU (H100/H200); this device is %d.%d", fn,
                ctx->compute_capability / 10, ctx->compute_capability % 10);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    if (path == kPathSm90 && is_cuda(ctx) && !ctx->sm90_kernels) {
      set_error("%s: path 90: this libfusedswiglu.so was built without sm_90a code (built for %s); rebuild "
                "with 90a in FSG_CUDA_ARCHS (e.g. FSG_CUDA_ARCHS=\"80;90a\" bun run build)", fn, fsg_cuda_archs());
      return FSG_ERR_INVALID_ARGUMENT;
    }
    ctx->kernel_path = path;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_set_fp16_accumulation(fsg_context* ctx, int32_t allow) {
  const char* fn = "fsg_context_set_fp16_accumulation";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (allow != 0 && allow != 1) {
      set_error("%s: allow: expected 0 (fp32 accumulation) or 1 (fp16 accumulation allowed), got %d", fn, allow);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    ctx->fp16_accumulate = allow == 1;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_context_fp16_accumulation(const fsg_context* ctx, int32_t* out_allow) {
  return get_int("fsg_context_fp16_accumulation", ctx, out_allow, "out_allow",
                 [](const fsg_context& c) { return c.fp16_accumulate ? 1 : 0; });
}

// ---- memory ----

FSG_API fsg_status fsg_malloc(fsg_context* ctx, uint64_t bytes, uint64_t* out_ptr) {
  const char* fn = "fsg_malloc";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(out_ptr, fn, "out_ptr"));
    *out_ptr = 0;
    size_t size = bytes == 0 ? 1 : bytes;  // a distinct, freeable pointer even for empty tensors
    if (!is_cuda(ctx)) {
      if (size > SIZE_MAX - 255) {  // rounding up would wrap to 0, a zero-byte block
        set_error("%s: out of host memory allocating %llu bytes", fn, (unsigned long long)bytes);
        return FSG_ERR_OUT_OF_MEMORY;
      }
      size_t rounded = (size + 255) / 256 * 256;
      void* p = std::aligned_alloc(256, rounded);
      if (p == nullptr) {
        set_error("%s: out of host memory allocating %llu bytes", fn, (unsigned long long)bytes);
        return FSG_ERR_OUT_OF_MEMORY;
      }
      *out_ptr = reinterpret_cast<uint64_t>(p);
      return FSG_OK;
    }
    FSG_TRY(refuse_during_capture(ctx, fn, "allocate buffers (outputs, workspace) before fsg_graph_begin"));
    FSG_TRY(bind_device(ctx));
    void* p = nullptr;
    cudaError_t err = cudaMallocAsync(&p, size, ctx->stream);
    if (err != cudaSuccess) {
      cudaGetLastError();
      if (err == cudaErrorMemoryAllocation) {
        set_error("%s: out of device memory allocating %llu bytes", fn, (unsigned long long)bytes);
        return FSG_ERR_OUT_OF_MEMORY;
      }
      return cuda_status(err, "fsg_malloc: cudaMallocAsync");
    }
    *out_ptr = reinterpret_cast<uint64_t>(p);
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_free(fsg_context* ctx, uint64_t ptr) {
  const char* fn = "fsg_free";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (ptr == 0) return FSG_OK;
    void* p = reinterpret_cast<void*>(ptr);
    if (!is_cuda(ctx)) {
      std::free(p);
      return FSG_OK;
    }
    FSG_TRY(refuse_during_capture(ctx, fn, "a free would be recorded and repeated at every replay; free after fsg_graph_end"));
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaFreeAsync(p, ctx->stream), "fsg_free: cudaFreeAsync");
  });
}

namespace {

// True when `p` is host memory CUDA can copy asynchronously (pinned or registered).
bool is_pinned(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}

fsg_status copy(fsg_context* ctx, void* dst, const void* src, uint64_t bytes, cudaMemcpyKind kind, const char* fn) {
  FSG_TRY(check_ctx(ctx, fn));
  if (bytes == 0) return FSG_OK;
  FSG_TRY(require(dst, fn, "dst"));
  FSG_TRY(require(src, fn, "src"));
  if (!is_cuda(ctx)) {
    std::memmove(dst, src, bytes);
    return FSG_OK;
  }
  if (capturing(ctx) && kind != cudaMemcpyDeviceToDevice &&
      !is_pinned(kind == cudaMemcpyHostToDevice ? src : static_cast<const void*>(dst))) {
    FSG_TRY(refuse_during_capture(ctx, fn, "a copy from or to pageable host memory cannot be captured (pinned memory can)"));
  }
  FSG_TRY(bind_device(ctx));
  return cuda_status(cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream), fn);
}

}  // namespace

FSG_API fsg_status fsg_memcpy_h2d_async(fsg_context* ctx, uint64_t dst, const void* src, uint64_t bytes) {
  return guarded("fsg_memcpy_h2d_async", [&] {
    return copy(ctx, reinterpret_cast<void*>(dst), src, bytes, cudaMemcpyHostToDevice, "fsg_memcpy_h2d_async");
  });
}

FSG_API fsg_status fsg_memcpy_d2h_async(fsg_context* ctx, void* dst, uint64_t src, uint64_t bytes) {
  return guarded("fsg_memcpy_d2h_async", [&] {
    return copy(ctx, dst, reinterpret_cast<const void*>(src), bytes, cudaMemcpyDeviceToHost, "fsg_memcpy_d2h_async");
  });
}

FSG_API fsg_status fsg_memcpy_d2d_async(fsg_context* ctx, uint64_t dst, uint64_t src, uint64_t bytes) {
  return guarded("fsg_memcpy_d2d_async", [&] {
    return copy(ctx, reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes,
                cudaMemcpyDeviceToDevice, "fsg_memcpy_d2d_async");
  });
}

FSG_API fsg_status fsg_memset_async(fsg_context* ctx, uint64_t dst, int32_t byte_value, uint64_t bytes) {
  const char* fn = "fsg_memset_async";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (bytes == 0) return FSG_OK;
    FSG_TRY(require(reinterpret_cast<void*>(dst), fn, "dst"));
    if (!is_cuda(ctx)) {
      std::memset(reinterpret_cast<void*>(dst), byte_value, bytes);
      return FSG_OK;
    }
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaMemsetAsync(reinterpret_cast<void*>(dst), byte_value, bytes, ctx->stream), fn);
  });
}

// ---- streams ----

FSG_API fsg_status fsg_stream_create(fsg_context* ctx, fsg_stream** out) {
  const char* fn = "fsg_stream_create";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(out, fn, "out"));
    *out = nullptr;
    auto* s = new fsg_stream();
    if (is_cuda(ctx)) {
      fsg_status st = bind_device(ctx);
      if (st == FSG_OK) st = cuda_status(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), fn);
      if (st != FSG_OK) {
        delete s;
        return st;
      }
    }
    register_handle(s);
    *out = s;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_stream_destroy(fsg_context* ctx, fsg_stream* stream) {
  const char* fn = "fsg_stream_destroy";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (stream == nullptr) return FSG_OK;
    FSG_TRY(require_live(stream, fn, "stream"));
    fsg_status st = FSG_OK;
    if (stream->stream != nullptr && capturing(ctx) && ctx->stream == stream->stream) {
      FSG_TRY(refuse_during_capture(ctx, fn, "the stream is being captured"));
    }
    if (stream->stream != nullptr) {
      if (ctx->stream == stream->stream) ctx->stream = nullptr;
      st = bind_device(ctx);
      if (st == FSG_OK) st = cuda_status(cudaStreamDestroy(stream->stream), fn);
    }
    unregister_handle(stream);
    delete stream;
    return st;
  });
}

FSG_API fsg_status fsg_stream_query(fsg_context* ctx, fsg_stream* stream) {
  const char* fn = "fsg_stream_query";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(stream, fn, "stream"));
    if (stream->stream == nullptr) return FSG_OK;
    FSG_TRY(refuse_during_capture(ctx, fn, "querying a stream cannot be recorded in a graph"));
    FSG_TRY(bind_device(ctx));
    cudaError_t err = cudaStreamQuery(stream->stream);
    if (err == cudaErrorNotReady) {
      cudaGetLastError();
      return FSG_ERR_NOT_READY;
    }
    return cuda_status(err, fn);
  });
}

FSG_API fsg_status fsg_stream_synchronize(fsg_context* ctx, fsg_stream* stream) {
  const char* fn = "fsg_stream_synchronize";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(stream, fn, "stream"));
    if (stream->stream == nullptr) return FSG_OK;
    FSG_TRY(refuse_during_capture(ctx, fn, "waiting for the device cannot be recorded in a graph"));
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaStreamSynchronize(stream->stream), fn);
  });
}

// ---- events ----

FSG_API fsg_status fsg_event_create(fsg_context* ctx, fsg_event** out) {
  const char* fn = "fsg_event_create";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require(out, fn, "out"));
    *out = nullptr;
    auto* e = new fsg_event();
    if (is_cuda(ctx)) {
      fsg_status st = bind_device(ctx);
      if (st == FSG_OK) st = cuda_status(cudaEventCreate(&e->event), fn);
      if (st != FSG_OK) {
        delete e;
        return st;
      }
    }
    register_handle(e);
    *out = e;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_event_destroy(fsg_context* ctx, fsg_event* event) {
  const char* fn = "fsg_event_destroy";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    if (event == nullptr) return FSG_OK;
    FSG_TRY(require_live(event, fn, "event"));
    fsg_status st = FSG_OK;
    if (event->event != nullptr) {
      st = bind_device(ctx);
      if (st == FSG_OK) st = cuda_status(cudaEventDestroy(event->event), fn);
    }
    unregister_handle(event);
    delete event;
    return st;
  });
}

FSG_API fsg_status fsg_event_record(fsg_context* ctx, fsg_event* event) {
  const char* fn = "fsg_event_record";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(event, fn, "event"));
    event->recorded = true;
    if (event->event == nullptr) {
      event->host_time = std::chrono::steady_clock::now();
      return FSG_OK;
    }
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaEventRecord(event->event, ctx->stream), fn);
  });
}

FSG_API fsg_status fsg_event_query(fsg_context* ctx, fsg_event* event) {
  const char* fn = "fsg_event_query";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(event, fn, "event"));
    if (event->event == nullptr) return FSG_OK;
    FSG_TRY(refuse_during_capture(ctx, fn, "querying an event cannot be recorded in a graph"));
    FSG_TRY(bind_device(ctx));
    cudaError_t err = cudaEventQuery(event->event);
    if (err == cudaErrorNotReady) {
      cudaGetLastError();
      return FSG_ERR_NOT_READY;
    }
    return cuda_status(err, fn);
  });
}

FSG_API fsg_status fsg_event_synchronize(fsg_context* ctx, fsg_event* event) {
  const char* fn = "fsg_event_synchronize";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(event, fn, "event"));
    if (event->event == nullptr) return FSG_OK;
    FSG_TRY(refuse_during_capture(ctx, fn, "waiting for the device cannot be recorded in a graph"));
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaEventSynchronize(event->event), fn);
  });
}

FSG_API fsg_status fsg_event_elapsed_ms(fsg_context* ctx, fsg_event* start, fsg_event* end, float* out_ms) {
  const char* fn = "fsg_event_elapsed_ms";
  return guarded(fn, [&] {
    FSG_TRY(check_ctx(ctx, fn));
    FSG_TRY(require_live(start, fn, "start"));
    FSG_TRY(require_live(end, fn, "end"));
    FSG_TRY(require(out_ms, fn, "out_ms"));
    if (!start->recorded || !end->recorded) {
      set_error("%s: %s was never recorded", fn, start->recorded ? "end" : "start");
      return FSG_ERR_INVALID_ARGUMENT;
    }
    if (start->event == nullptr || end->event == nullptr) {
      std::chrono::duration<float, std::milli> d = end->host_time - start->host_time;
      *out_ms = d.count();
      return FSG_OK;
    }
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaEventElapsedTime(out_ms, start->event, end->event), fn);
  });
}

}  // extern "C"
