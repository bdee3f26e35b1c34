// graph.cpp: CUDA graph capture and replay of a context's work (fsg_graph_*), and the check that
// keeps calls a graph cannot hold out of a capture.
//
// Why: a decode step of a server is the same few kernels every time, with the same buffers. The
// library's ops allocate nothing and never wait for the host (workspace is passed in), so they
// can be recorded once into a graph and replayed with one launch, saving the per-call host cost
// (FFI, argument checks, several launches).
//
// fsg_graph_begin starts a capture on the context's current stream, or, when that is the
// default stream (which CUDA cannot capture), on a stream created for the capture; the context
// works on it until fsg_graph_end, which ends the capture, instantiates the graph and restores
// the context's stream. Capture mode is thread-local: begin and end on one thread, and other
// threads' CUDA calls are not affected.
//
// Calls that a graph cannot hold (waiting for the host, allocation, free, copies with pageable
// host memory, changing the stream) are refused during a capture by refuse_during_capture():
// the call returns FSG_ERR_INVALID_ARGUMENT naming itself and why, the capture is ended and
// discarded at once (the context is back on its own stream and fully usable), and fsg_graph_end
// then reports the abandoned capture.
//
// Build check: nvcc -std=c++17 -O3 -I cuda/include -I cuda/src -c graph.cpp
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "context.h"
#include "guard.h"

// An in-progress (or abandoned) capture of one context.
struct fsg_capture {
  cudaStream_t stream = nullptr;    // the stream being captured
  cudaStream_t previous = nullptr;  // the context's stream before fsg_graph_begin
  bool owns_stream = false;         // created by fsg_graph_begin (the context was on the default stream)
  bool active = true;               // false once a refused call has abandoned it
  char why[512] = "";               // what abandoned it (reported by fsg_graph_end)
  // The host thread that began it. Captures are thread-local (cudaStreamCaptureModeThreadLocal):
  // CUDA will not end one from another thread and goes on capturing, so neither may the library.
  std::thread::id thread = std::this_thread::get_id();
  bool on_this_thread() const { return thread == std::this_thread::get_id(); }
};

struct fsg_graph {
  cudaGraphExec_t exec = nullptr;
  int32_t device = 0;
  uint64_t nodes = 0;
};

namespace fsg {
namespace {

// Ends the CUDA capture (discarding what it recorded) and puts the context back on its stream.
// Keeps going on errors: the goal is a context that works again. False, with nothing changed, on
// a host thread other than the capture's (the capture goes on there).
bool end_capture_discarding(fsg_context* ctx) {
  fsg_capture* c = ctx->capture;
  if (c == nullptr || !c->active) return true;
  if (!c->on_this_thread()) return false;
  c->active = false;
  cudaGraph_t g = nullptr;
  if (cudaStreamEndCapture(c->stream, &g) != cudaSuccess) cudaGetLastError();
  if (g != nullptr) cudaGraphDestroy(g);
  ctx->stream = c->previous;
  if (c->owns_stream && cudaStreamDestroy(c->stream) != cudaSuccess) cudaGetLastError();
  c->stream = nullptr;
  return true;
}

fsg_status require_cuda(const fsg_context* ctx, const char* fn) {
  if (ctx->backend == FSG_BACKEND_CUDA) return FSG_OK;
  set_error("%s: ctx: CUDA graphs need a CUDA context; this one is the CPU backend (its work is done when each call "
            "returns, there is nothing to capture)", fn);
  return FSG_ERR_INVALID_ARGUMENT;
}

}  // namespace

fsg_status refuse_during_capture(fsg_context* ctx, const char* fn, const char* why) {
  if (ctx == nullptr || ctx->capture == nullptr || !ctx->capture->active) return FSG_OK;
  if (!end_capture_discarding(ctx)) {
    set_error("%s: not allowed during a CUDA graph capture (fsg_graph_begin .. fsg_graph_end): %s. The capture "
              "was begun on another host thread and goes on there", fn, why);
    return FSG_ERR_INVALID_ARGUMENT;
  }
  std::snprintf(ctx->capture->why, sizeof ctx->capture->why, "%s: %s", fn, why);
  set_error("%s: not allowed during a CUDA graph capture (fsg_graph_begin .. fsg_graph_end): %s. The capture was "
            "abandoned (fsg_graph_end reports it) and the context is back on its own stream", fn, why);
  return FSG_ERR_INVALID_ARGUMENT;
}

bool capturing(const fsg_context* ctx) { return ctx != nullptr && ctx->capture != nullptr && ctx->capture->active; }

void discard_capture(fsg_context* ctx) {
  if (ctx == nullptr || ctx->capture == nullptr) return;
  if (bind_device(ctx) != FSG_OK) clear_error();
  end_capture_discarding(ctx);
  delete ctx->capture;
  ctx->capture = nullptr;
}

}  // namespace fsg

using namespace fsg;

extern "C" {

FSG_API fsg_status fsg_graph_begin(fsg_context* ctx) {
  const char* fn = "fsg_graph_begin";
  return guarded(fn, [&] {
    FSG_TRY(require_live(ctx, fn, "ctx"));
    FSG_TRY(require_cuda(ctx, fn));
    if (ctx->capture != nullptr) {
      set_error(ctx->capture->active
                    ? "%s: a capture is already in progress on this context (nested fsg_graph_begin); call fsg_graph_end first"
                    : "%s: the previous capture of this context was abandoned and not yet ended; call fsg_graph_end first",
                fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    FSG_TRY(bind_device(ctx));
    auto* c = new fsg_capture();
    c->previous = ctx->stream;
    c->stream = ctx->stream;
    if (c->stream == nullptr) {  // the default stream cannot be captured: record on a stream of our own
      fsg_status st = cuda_status(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), fn);
      if (st != FSG_OK) {
        delete c;
        return st;
      }
      c->owns_stream = true;
    } else {
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      fsg_status st = cuda_status(cudaStreamIsCapturing(c->stream, &status), fn);
      if (st == FSG_OK && status != cudaStreamCaptureStatusNone) {
        set_error("%s: the context's stream is already being captured (by another fsg_context or library)", fn);
        st = FSG_ERR_INVALID_ARGUMENT;
      }
      if (st != FSG_OK) {
        delete c;
        return st;
      }
    }
    const cudaError_t err = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) {
      cudaGetLastError();
      if (c->owns_stream) cudaStreamDestroy(c->stream);
      delete c;
      return cuda_status(err, "fsg_graph_begin: cudaStreamBeginCapture");
    }
    ctx->stream = c->stream;
    ctx->capture = c;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_graph_end(fsg_context* ctx, fsg_graph** out) {
  const char* fn = "fsg_graph_end";
  return guarded(fn, [&] {
    FSG_TRY(require_live(ctx, fn, "ctx"));
    FSG_TRY(require(out, fn, "out"));
    *out = nullptr;
    FSG_TRY(require_cuda(ctx, fn));
    fsg_capture* c = ctx->capture;
    if (c == nullptr) {
      set_error("%s: no capture in progress on this context (call fsg_graph_begin first)", fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    if (c->active && !c->on_this_thread()) {  // CUDA would refuse to end it, and capture on
      set_error("%s: the capture was begun on another host thread (captures are thread-local); end it there", fn);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    FSG_TRY(bind_device(ctx));
    if (!c->active) {
      char why[sizeof c->why];
      std::memcpy(why, c->why, sizeof why);
      delete c;
      ctx->capture = nullptr;
      set_error("%s: the capture was abandoned by a call a graph cannot hold (%s); nothing was recorded", fn, why);
      return FSG_ERR_INVALID_ARGUMENT;
    }
    cudaGraph_t g = nullptr;
    const cudaError_t err = cudaStreamEndCapture(c->stream, &g);
    if (err != cudaSuccess) cudaGetLastError();
    ctx->stream = c->previous;
    if (c->owns_stream && cudaStreamDestroy(c->stream) != cudaSuccess) cudaGetLastError();
    delete c;
    ctx->capture = nullptr;
    if (err != cudaSuccess || g == nullptr) {
      if (g != nullptr) cudaGraphDestroy(g);
      set_error("%s: cudaStreamEndCapture: %s (%s): the capture was invalidated, e.g. by a call on the captured "
                "stream that CUDA cannot record (from this library or another one)", fn, cudaGetErrorName(err),
                cudaGetErrorString(err));
      return FSG_ERR_CUDA;
    }
    size_t nodes = 0;
    if (cudaGraphGetNodes(g, nullptr, &nodes) != cudaSuccess) cudaGetLastError();
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ierr = cudaGraphInstantiateWithFlags(&exec, g, 0);
    cudaGraphDestroy(g);
    if (ierr != cudaSuccess) {
      cudaGetLastError();
      return cuda_status(ierr, "fsg_graph_end: cudaGraphInstantiateWithFlags");
    }
    auto* graph = new (std::nothrow) fsg_graph();
    if (graph == nullptr) {
      cudaGraphExecDestroy(exec);
      set_error("%s: out of host memory", fn);
      return FSG_ERR_OUT_OF_MEMORY;
    }
    graph->exec = exec;
    graph->device = ctx->device;
    graph->nodes = nodes;
    register_handle(graph);
    *out = graph;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_graph_launch(fsg_context* ctx, fsg_graph* graph) {
  const char* fn = "fsg_graph_launch";
  return guarded(fn, [&] {
    FSG_TRY(require_live(ctx, fn, "ctx"));
    FSG_TRY(require_live(graph, fn, "graph"));
    FSG_TRY(require_cuda(ctx, fn));
    if (graph->device != ctx->device) {
      set_error("%s: graph: captured on CUDA device %d, but the context is device %d", fn, graph->device, ctx->device);
      return FSG_ERR_DEVICE_MISMATCH;
    }
    FSG_TRY(bind_device(ctx));
    return cuda_status(cudaGraphLaunch(graph->exec, ctx->stream), "fsg_graph_launch: cudaGraphLaunch");
  });
}

FSG_API fsg_status fsg_graph_node_count(const fsg_graph* graph, uint64_t* out_nodes) {
  const char* fn = "fsg_graph_node_count";
  return guarded(fn, [&] {
    FSG_TRY(require_live(graph, fn, "graph"));
    FSG_TRY(require(out_nodes, fn, "out_nodes"));
    *out_nodes = graph->nodes;
    return FSG_OK;
  });
}

FSG_API fsg_status fsg_graph_destroy(fsg_context* ctx, fsg_graph* graph) {
  const char* fn = "fsg_graph_destroy";
  return guarded(fn, [&] {
    FSG_TRY(require_live(ctx, fn, "ctx"));
    if (graph == nullptr) return FSG_OK;
    FSG_TRY(require_live(graph, fn, "graph"));
    fsg_status st = FSG_OK;
    if (graph->exec != nullptr) {
      st = bind_device(ctx);
      if (st == FSG_OK) st = cuda_status(cudaGraphExecDestroy(graph->exec), fn);
    }
    unregister_handle(graph);
    delete graph;
    return st;
  });
}

}  // extern "C"
