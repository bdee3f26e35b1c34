// parallel.h: parallel_for for the CPU backend, on a persistent process-wide pool of
// std::threads (parallel.cpp). Tasks are handed out dynamically from an atomic counter.
//
// Never throws: if a worker cannot be created the call runs on the threads it has (at worst
// only the caller); if the pool is busy (another host thread, or a nested call) the call runs
// on the calling thread alone.
#pragma once
#include <cstdint>
#include <type_traits>

namespace fsg {
namespace cpu {

// body(ctx, task, worker): worker is in [0, threads) and unique among concurrently running
// bodies (the caller is worker 0), so it can index per-worker scratch.
using TaskFn = void (*)(void* ctx, int64_t task, int worker);

// Runs fn for every task in [0, n) on up to `threads` workers and returns when all are done.
// Returns false if some body threw (the exception is swallowed; remaining tasks still run).
bool parallel_for_raw(int64_t n, int threads, TaskFn fn, void* ctx) noexcept;

// Convenience wrapper: f(int64_t task, int worker).
template <class F>
bool parallel_for(int64_t n, int threads, F&& f) noexcept {
  using Fn = typename std::remove_reference<F>::type;
  TaskFn tramp = [](void* c, int64_t task, int worker) { (*static_cast<Fn*>(c))(task, worker); };
  return parallel_for_raw(n, threads, tramp, const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace cpu
}  // namespace fsg
