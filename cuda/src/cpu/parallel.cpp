// parallel.cpp: the persistent worker pool behind parallel_for (see parallel.h).
//
// One pool per process, grown on demand to the largest `threads - 1` asked for. A call
// publishes a job under the mutex, bumps a generation counter and wakes the workers; workers
// with an index below the job's width join in, the others go back to sleep. The caller works
// too and then waits until every joined worker has finished.
//
// fork(): the child inherits the pool's memory but not its threads, so a pool created by another
// pid is abandoned (leaked, never joined or destroyed) and a fresh one is made.
#include "cpu/parallel.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace fsg {
namespace cpu {
namespace {

class Pool {
 public:
  Pool() : pid_(getpid()) {}

  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  pid_t pid() const { return pid_; }

  // Runs the job if the pool is free; returns false (having run nothing) if it is busy.
  bool try_run(int64_t n, int threads, TaskFn fn, void* ctx, bool* ok) {
    std::unique_lock<std::mutex> call(call_m_, std::try_to_lock);
    if (!call.owns_lock()) return false;
    grow(threads - 1);
    int width;
    {
      std::lock_guard<std::mutex> lk(m_);
      width = std::min<int>(threads - 1, int(workers_.size()));
      fn_ = fn;
      ctx_ = ctx;
      n_ = n;
      next_.store(0, std::memory_order_relaxed);
      failed_.store(false, std::memory_order_relaxed);
      width_ = width;
      pending_ = width;
      ++gen_;
    }
    if (width > 0) work_cv_.notify_all();
    work(0);
    if (width > 0) {
      std::unique_lock<std::mutex> lk(m_);
      done_cv_.wait(lk, [&] { return pending_ == 0; });
    }
    *ok = !failed_.load(std::memory_order_relaxed);
    return true;
  }

 private:
  // Adds workers up to `want`; a thread that cannot be created just leaves the pool smaller.
  void grow(int want) {
    while (int(workers_.size()) < want) {
      int id = int(workers_.size()) + 1;
      try {
        std::lock_guard<std::mutex> lk(m_);  // the new worker must start at the current gen_
        workers_.emplace_back([this, id, gen = gen_] { loop(id, gen); });
      } catch (...) {
        return;
      }
    }
  }

  void loop(int id, uint64_t seen) {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      if (id > width_) continue;  // not part of this job
      lk.unlock();
      work(id);
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  void work(int worker) {
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_) return;
      try {
        fn_(ctx_, t, worker);
      } catch (...) {
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }

  const pid_t pid_;
  std::mutex call_m_;  // one job at a time
  std::mutex m_;       // guards the job fields, gen_, pending_, stop_
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> workers_;  // worker i + 1 is workers_[i]
  uint64_t gen_ = 0;
  bool stop_ = false;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  int width_ = 0;
  int pending_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
};

// Owns this process's pool; its destructor joins the workers at exit or dlclose.
struct PoolHolder {
  std::mutex m;
  Pool* pool = nullptr;
  ~PoolHolder() {
    if (pool && pool->pid() == getpid()) delete pool;
  }
};

PoolHolder g_holder;

// The pool of this process, or nullptr if it cannot be had right now.
Pool* get_pool() {
  std::unique_lock<std::mutex> lk(g_holder.m, std::try_to_lock);
  if (!lk.owns_lock()) return nullptr;
  if (g_holder.pool && g_holder.pool->pid() != getpid()) g_holder.pool = nullptr;  // forked: leak
  if (!g_holder.pool) {
    try {
      g_holder.pool = new Pool();
    } catch (...) {
      return nullptr;
    }
  }
  return g_holder.pool;
}

bool run_serial(int64_t n, TaskFn fn, void* ctx) {
  bool ok = true;
  for (int64_t t = 0; t < n; ++t) {
    try {
      fn(ctx, t, 0);
    } catch (...) {
      ok = false;
    }
  }
  return ok;
}

}  // namespace

bool parallel_for_raw(int64_t n, int threads, TaskFn fn, void* ctx) noexcept {
  if (n <= 0) return true;
  if (threads > n) threads = int(n);
  if (threads <= 1) return run_serial(n, fn, ctx);
  Pool* pool = get_pool();
  bool ok = true;
  if (pool && pool->try_run(n, threads, fn, ctx, &ok)) return ok;
  return run_serial(n, fn, ctx);
}

}  // namespace cpu
}  // namespace fsg
