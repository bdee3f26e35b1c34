// A Worker for graph.test.ts: from a second host thread, tries to end a capture the main thread
// began, then to free memory during it. It answers through a shared Int32Array, so the main thread
// can block on it (Atomics.wait) without turning the event loop while it captures: results[0]
// goes to 1 when done, results[1] and [2] are 1 when fsg_graph_end and fsg_free were refused with
// a message naming another host thread.
import { check } from "../src/errors.ts";
import { hostPtr, lib } from "../src/ffi.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent<{ ctx: bigint; ptr: bigint; results: Int32Array } | "ping">) => {
  if (e.data === "ping") {
    self.postMessage("ready");
    return;
  }
  const { ctx, ptr, results } = e.data;
  const refusedOnOtherThread = (fn: () => void): number => {
    try {
      fn();
      return 0;
    } catch (err) {
      return err instanceof Error && err.message.includes("another host thread") ? 1 : 0;
    }
  };
  const out = new BigUint64Array(1);
  results[1] = refusedOnOtherThread(() => check(lib.fsg_graph_end(ctx, hostPtr(out)), "fsg_graph_end"));
  results[2] = refusedOnOtherThread(() => check(lib.fsg_free(ctx, ptr), "fsg_free"));
  Atomics.store(results, 0, 1);
  Atomics.notify(results, 0);
};
