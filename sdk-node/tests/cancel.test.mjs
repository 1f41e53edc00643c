// Cancelling a running workflow is a request with a cleanup window, against
// a real `raftoral serve`: the step or sleep the code awaits rejects with
// Cancelled (a hanging step's attempt is stopped, its signal aborted), the
// code compensates with steps that run as usual (their signals alive), and
// the workflow ends CANCELLED when the code throws the Cancelled again
// (COMPLETED or FAILED when it returns or throws something else). A cancel
// with cleanupMs 0 is CANCELLED at once (no compensation runs); a cleanup
// that outlasts its window is cut off; a bad cleanupMs is refused.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Cancelled, Client, InvalidArgument, Worker, WorkflowFailed, workflow } from "@raftoral/client";

import { eventually, named, newId, singleNode, tempDir } from "./harness.mjs";

/** What each run saw, by workflow id. */
const seen = new Map();
function state(id) {
  if (!seen.has(id)) seen.set(id, { charges: 0, refunds: 0, ended: false });
  return seen.get(id);
}

/** Until `signal` aborts (then rejects with its reason); `ignore`: forever. */
const hangOn = (signal, ignore = false) =>
  new Promise((_, reject) => {
    if (!ignore) signal.addEventListener("abort", () => reject(signal.reason));
  });

/**
 * A saga: step `reserve`, then at position 1 step `charge` (which hangs),
 * a durable sleep `hold` of an hour (`at: "sleep"`), or, after a wait for
 * the test's latch between steps (`at: "between"`), a `charge` that would
 * return. A Cancelled there runs step `refund`, then with `stubborn` step
 * `stuck`, which never ends; then `outcome` says how the function ends:
 * the Cancelled thrown again (default), a value (`"return"`), another error
 * (`"fail"`).
 */
const saga = workflow("cancel_saga", { version: 1 }, async (ctx, { at, stubborn, outcome }) => {
  const id = ctx.workflowId;
  const s = state(id);
  s.ctxSignal = ctx.signal;
  try {
    await ctx.checkpoint("reserve", () => true);
    try {
      if (at === "sleep") {
        await ctx.sleep("1h", { name: "hold" });
      } else {
        if (at === "between") {
          s.between = true;
          await named(`${id} go`).opened;
        }
        await ctx.checkpoint("charge", ({ signal }) => {
          s.charges++;
          s.chargeSignal = signal;
          return at === "between" ? "charged" : hangOn(signal, true);
        });
      }
      return "not cancelled";
    } catch (e) {
      s.caught = e;
      s.ctxSignalAbortedInCatch = ctx.signal.aborted;
      await ctx.checkpoint("refund", ({ signal }) => {
        s.refunds++;
        s.refundSignal = signal;
        return true;
      });
      if (stubborn) {
        await ctx.checkpoint("stuck", ({ signal }) => {
          s.stuckSignal = signal;
          return hangOn(signal, true);
        });
      }
      if (outcome === "return") return "refunded";
      if (outcome === "fail") throw new Error("refunded, then failed");
      throw e;
    }
  } finally {
    s.ended = true;
  }
});

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), { workflows: [saga] });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `[seq, name, kind]`, in commit order. */
const entries = async (handle) => (await handle.history()).map((e) => [e.seq, e.checkpointName, e.kind]);

/** Rejects with Cancelled of `reason` (a RegExp: matched). */
async function cancelledWith(handle, reason) {
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof Cancelled, String(e));
    assert.equal(e.code, "CANCELLED");
    if (reason instanceof RegExp) assert.match(e.reason, reason);
    else assert.equal(e.reason, reason);
    return true;
  });
}

/** Starts the saga and waits until its code awaits position 1 (the charge started, or the sleep's timer). */
async function started(input) {
  const handle = await client.startWorkflow(saga, input, { id: newId("saga") });
  const id = handle.workflowId;
  if (input.at === "sleep") {
    await eventually(
      async () => (await entries(handle)).some((e) => e[2] === "TIMER_STARTED"),
      "the timer to start",
    );
  } else if (input.at === "between") {
    await eventually(() => state(id).between === true, "the code to wait between its steps");
  } else {
    await eventually(() => state(id).chargeSignal !== undefined, "the charge to start");
  }
  return { handle, id, s: state(id) };
}

test("a saga cancelled while its charge hangs: the attempt is stopped, refund runs once, CANCELLED", {
  timeout: 60_000,
}, async () => {
  const { handle, s } = await started({ at: "step" });
  const before = Date.now();
  const info = await handle.cancel({ reason: "customer asked", cleanupMs: 30_000 });
  // A request: still running, with its reason and the end of its window.
  assert.equal(info.status, "RUNNING");
  assert.equal(info.cancelReason, "customer asked");
  assert.ok(
    info.cancelDeadlineMs >= before + 29_000 && info.cancelDeadlineMs <= Date.now() + 31_000,
    `deadline ${info.cancelDeadlineMs}, cancelled at ${before}`,
  );
  await cancelledWith(handle, "customer asked");
  // The hanging attempt's own signal aborted with the cancellation.
  assert.equal(s.chargeSignal.aborted, true);
  assert.ok(s.chargeSignal.reason instanceof Cancelled, String(s.chargeSignal.reason));
  assert.equal(s.chargeSignal.reason.reason, "customer asked");
  // The code caught it at the charge, and the refund ran once, its signal alive.
  assert.ok(s.caught instanceof Cancelled, String(s.caught));
  assert.equal(s.caught.reason, "customer asked");
  assert.equal(s.charges, 1);
  assert.equal(s.refunds, 1);
  assert.equal(s.refundSignal.aborted, false, "a compensation step's signal is not aborted");
  // ctx.signal says the workflow is being cancelled.
  assert.equal(s.ctxSignalAbortedInCatch, true);
  const done = await handle.get();
  assert.equal(done.status, "CANCELLED");
  assert.equal(done.error, "customer asked");
  assert.equal(done.cancelReason, undefined);
  assert.equal(done.cancelDeadlineMs, undefined);
  assert.deepEqual(await entries(handle), [
    [0, "reserve", "VALUE"],
    [1, "charge", "STEP_FAILED"],
    [2, "refund", "VALUE"],
  ]);
});

test("a saga cancelled during ctx.sleep('1h') with the sidecar's window: the sleep rejects, refund runs once", {
  timeout: 60_000,
}, async () => {
  const { handle, s } = await started({ at: "sleep" });
  const info = await handle.cancel("no more waiting");
  assert.equal(info.status, "RUNNING");
  assert.equal(info.cancelReason, "no more waiting");
  assert.ok(info.cancelDeadlineMs > info.updatedAtMs, JSON.stringify(info));
  await cancelledWith(handle, "no more waiting");
  assert.ok(s.caught instanceof Cancelled, String(s.caught));
  assert.equal(s.refunds, 1);
  assert.equal(s.refundSignal.aborted, false);
  assert.equal((await handle.get()).status, "CANCELLED");
  assert.deepEqual(await entries(handle), [
    [0, "reserve", "VALUE"],
    [1, "hold", "TIMER_STARTED"],
    [1, "hold", "TIMER_CANCELLED"],
    [2, "refund", "VALUE"],
  ]);
});

test("a cancel requested between steps reaches the next step, which does not run", {
  timeout: 60_000,
}, async () => {
  const { handle, id, s } = await started({ at: "between" });
  const info = await handle.cancel({ reason: "too late", cleanupMs: 30_000 });
  assert.equal(info.status, "RUNNING");
  await eventually(() => s.ctxSignal.aborted, "ctx.signal to abort");
  assert.ok(s.ctxSignal.reason instanceof Cancelled, String(s.ctxSignal.reason));
  named(`${id} go`).open();
  await cancelledWith(handle, "too late");
  assert.equal(s.charges, 0, "the charge never ran");
  assert.equal(s.refunds, 1);
  assert.deepEqual(await entries(handle), [
    [0, "reserve", "VALUE"],
    [1, "charge", "STEP_FAILED"],
    [2, "refund", "VALUE"],
  ]);
});

test("cleanupMs 0 cancels at once: CANCELLED in the cancel's answer, no refund", {
  timeout: 60_000,
}, async () => {
  const { handle, s } = await started({ at: "step" });
  const info = await handle.cancel({ reason: "fraud", cleanupMs: 0 });
  assert.equal(info.status, "CANCELLED");
  assert.equal(info.error, "fraud");
  assert.equal(info.cancelDeadlineMs, undefined);
  await cancelledWith(handle, "fraud");
  await eventually(() => s.ended, "the workflow function to end");
  assert.equal(s.chargeSignal.aborted, true);
  assert.ok(s.caught instanceof Cancelled, String(s.caught));
  assert.equal(s.refunds, 0, "no compensation after a cancel without cleanup");
  assert.deepEqual(await entries(handle), [[0, "reserve", "VALUE"]]);
});

test("a cleanup that outlasts its window is cut off: CANCELLED, cleanup window ran out", {
  timeout: 60_000,
}, async () => {
  const { handle, s } = await started({ at: "step", stubborn: true });
  const info = await client.cancelWorkflow(handle.workflowId, { reason: "customer asked", cleanupMs: 500 });
  assert.equal(info.status, "RUNNING");
  await cancelledWith(handle, /cleanup window ran out/);
  const done = await handle.get();
  assert.equal(done.status, "CANCELLED");
  assert.match(done.error, /^customer asked .*cleanup window ran out/);
  assert.equal(s.refunds, 1, "the refund ran before the window ran out");
  // The stuck step's attempt is stopped too, and the function ends.
  await eventually(() => s.stuckSignal?.aborted === true, "the stuck step's signal to abort");
  await eventually(() => s.ended, "the workflow function to end");
  const history = await entries(handle);
  assert.deepEqual(history.slice(0, 3), [
    [0, "reserve", "VALUE"],
    [1, "charge", "STEP_FAILED"],
    [2, "refund", "VALUE"],
  ]);
  assert.ok(!history.some((e) => e[1] === "stuck" && e[2] === "VALUE"), JSON.stringify(history));
});

test("code that catches the cancellation and returns ends COMPLETED; another error ends FAILED", {
  timeout: 60_000,
}, async () => {
  const returned = await started({ at: "step", outcome: "return" });
  await returned.handle.cancel({ reason: "customer asked" });
  assert.equal(await returned.handle.result(), "refunded");
  assert.equal((await returned.handle.get()).status, "COMPLETED");

  const failed = await started({ at: "step", outcome: "fail" });
  await failed.handle.cancel({ reason: "customer asked" });
  await assert.rejects(failed.handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.equal(e.error, "Error: refunded, then failed");
    return true;
  });
  assert.equal(failed.s.refunds, 1);
});

test("a bad cleanupMs is refused, and nothing is cancelled", { timeout: 60_000 }, async () => {
  const { handle } = await started({ at: "step" });
  const cases = [
    [-1, /cleanupMs is -1/],
    [1.5, /cleanupMs is 1.5/],
    [Number.NaN, /cleanupMs is NaN/],
    [Number.POSITIVE_INFINITY, /cleanupMs is Infinity/],
    [367 * 24 * 3600 * 1000, /366 days/],
    ["30s", /cleanupMs is 30s \(a string\)/],
  ];
  for (const [cleanupMs, says] of cases) {
    await assert.rejects(handle.cancel({ reason: "no", cleanupMs }), (e) => {
      assert.ok(e instanceof InvalidArgument, `${String(cleanupMs)}: ${e}`);
      assert.match(e.message, says);
      return true;
    });
  }
  const info = await handle.get();
  assert.equal(info.status, "RUNNING");
  assert.equal(info.cancelReason, undefined, "no cancel requested");
  // Done with it: at once.
  assert.equal((await handle.cancel({ cleanupMs: 0 })).status, "CANCELLED");
});
