// Failed steps on LocalNode: retry policies (checked where they are given,
// applied step > workflow > worker > defaults), what a thrown error is
// committed as, and StepFailed caught or failing the workflow; the
// workflow's own structured error (an ApplicationError thrown outside any
// step), as clients read it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  ApplicationError,
  InvalidArgument,
  LocalNode,
  NonRetryableError,
  RaftoralError,
  StepFailed,
  Worker,
  WorkflowFailed,
  workflow,
} from "@raftoral/client";

/** Retries without waiting: 1 ms apart. */
const fast = { initialIntervalMs: 1, backoffCoefficient: 1, jitter: 0 };

class CardDeclined extends NonRetryableError {}
class Custom extends Error {}

/** What each kind of step throws. */
const throwers = {
  app: () => new ApplicationError("stock busy", { type: "StockBusy", details: { sku: "a-1", n: 2 } }),
  appDefault: () => new ApplicationError("plain"),
  nonRetryable: () => new NonRetryableError("declined", { type: "CardDeclined", details: ["x", 1] }),
  subclass: () => new CardDeclined("declined"),
  typeError: () => new TypeError("not a function"),
  custom: () => new Custom("custom message"),
  string: () => "just a string",
  badDetails: () => new ApplicationError("big", { details: { n: 10n } }),
};

/** Throws `throwers[kind]` on each attempt (at most 2), returns the caught StepFailed's fields. */
const thrower = workflow(
  "thrower",
  { version: 1, retry: { ...fast, maximumAttempts: 2 } },
  async (ctx, kind) => {
    const attempts = [];
    try {
      await ctx.checkpoint("boom", ({ attempt }) => {
        attempts.push(attempt);
        throw throwers[kind]();
      });
    } catch (e) {
      assert.ok(e instanceof StepFailed, String(e));
      const { workflowId, seq, step, type, error, details, nonRetryable } = e;
      // JSON has no undefined: no details come back as null.
      return {
        workflowId,
        seq,
        step,
        attempts: e.attempts,
        seen: attempts,
        type,
        error,
        details: details ?? null,
        nonRetryable,
      };
    }
  },
);

/** Fails `failTimes` attempts, then returns the attempt number (step policy: `stepRetry`). */
const flaky = workflow("flaky", { version: 1 }, async (ctx, { failTimes, stepRetry }) => {
  const seen = [];
  const attempt = await ctx.checkpoint(
    "flaky",
    ({ attempt }) => {
      seen.push(attempt);
      if (attempt <= failTimes) throw new ApplicationError(`attempt ${attempt} failed`, { type: "Flaky" });
      return attempt;
    },
    stepRetry === undefined ? undefined : { retry: stepRetry },
  );
  return { attempt, seen };
});

/** Always fails, with the workflow's own policy (3 attempts). */
const alwaysFails = workflow("always_fails", { version: 1, retry: { ...fast, maximumAttempts: 3 } }, (ctx) =>
  ctx.checkpoint("charge", ({ attempt }) => {
    throw new ApplicationError(`attempt ${attempt} failed`, { type: "Flaky" });
  }),
);

/** An uncaught non-retryable failure: the workflow fails with it. */
const uncaught = workflow("uncaught", { version: 1 }, async (ctx) => {
  await ctx.checkpoint("before", () => 1);
  await ctx.checkpoint("charge", () => {
    throw new NonRetryableError("card declined", { type: "CardDeclined", details: { code: "x" } });
  });
});

class OrderRejected extends ApplicationError {}

/** What the workflow function throws, outside any step, after one step. */
const bodyThrowers = {
  app: () =>
    new ApplicationError("order failed after refund", {
      type: "OrderFailed",
      details: { refunded: true, items: [1, 2] },
    }),
  nonRetryable: () => new NonRetryableError("gone for good", { type: "Gone" }),
  subclass: () => new OrderRejected("no stock"),
  plain: () => new TypeError("not a function"),
};

/** Fails with `bodyThrowers[kind]` after its step `refund`. */
const orderFails = workflow("order_fails", { version: 1 }, async (ctx, kind) => {
  await ctx.checkpoint("refund", () => true);
  throw bodyThrowers[kind]();
});

/** A step with a bad policy: refused before it runs. */
let ran = false;
const badStep = workflow("bad_step", { version: 1 }, async (ctx) => {
  try {
    await ctx.checkpoint(
      "never",
      () => {
        ran = true;
      },
      { retry: { jitter: 2 } },
    );
  } catch (e) {
    return { invalid: e instanceof InvalidArgument, message: e.message };
  }
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  // The worker's policy: 2 attempts, for workflows and steps without one.
  worker = await Worker.create(client, {
    workflows: [thrower, flaky, alwaysFails, uncaught, badStep, orderFails],
    retry: { ...fast, maximumAttempts: 2 },
  });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

/** Asserts that `f` throws InvalidArgument whose message starts `retry policy: ` and matches `says`. */
function refused(f, says) {
  assert.throws(f, (e) => {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.ok(e.message.startsWith("retry policy: "), e.message);
    assert.match(e.message, says);
    return true;
  });
}

test("a bad retry policy is refused where it is written, saying what is wrong", () => {
  const define = (retry) => () => workflow("w", { version: 1, retry }, async () => 1);
  refused(define({ maximumAttempts: 0 }), /maximumAttempts must be a whole number of at least 1/);
  refused(define({ maximumAttempts: 2.5 }), /maximumAttempts.*got 2\.5/);
  refused(define({ maximumAttempts: Number.NaN }), /maximumAttempts.*got NaN/);
  refused(define({ initialIntervalMs: -1 }), /initialIntervalMs must be a non-negative number.*got -1/);
  refused(define({ initialIntervalMs: Number.NaN }), /initialIntervalMs.*got NaN/);
  refused(define({ maximumIntervalMs: Infinity }), /maximumIntervalMs must be a non-negative number/);
  refused(define({ maximumIntervalMs: 8 * 24 * 3600 * 1000 }), /maximumIntervalMs must be at most 7 days/);
  refused(
    define({ initialIntervalMs: 5000, maximumIntervalMs: 10 }),
    /maximumIntervalMs .* must be at least initialIntervalMs/,
  );
  refused(define({ initialIntervalMs: 120_000 }), /must be at least initialIntervalMs/);
  refused(define({ backoffCoefficient: 0.5 }), /backoffCoefficient must be a number of at least 1, got 0\.5/);
  refused(define({ backoffCoefficient: Number.NaN }), /backoffCoefficient/);
  refused(define({ jitter: 1.5 }), /jitter must be between 0 and 1, got 1\.5/);
  refused(define({ jitter: "0.1" }), /jitter must be a number, got a string/);
  refused(define({ maxAttempts: 3 }), /unknown option 'maxAttempts'; the options are initialIntervalMs/);
  refused(define({ nonRetryableErrorTypes: "CardDeclined" }), /nonRetryableErrorTypes must be an array/);
  refused(define(3), /expected an object/);
  refused(define({ jitter: 2 }), /\(the retry option of workflow 'w'\)$/);
  refused(
    define({ attemptTimeoutMs: 0 }),
    /attemptTimeoutMs must be more than 0 \(Infinity: no limit\), got 0/,
  );
  refused(
    define({ attemptTimeoutMs: -5 }),
    /attemptTimeoutMs must be a number of milliseconds more than 0.*got -5/,
  );
  refused(define({ attemptTimeoutMs: Number.NaN }), /attemptTimeoutMs.*got NaN/);
  refused(define({ attemptTimeoutMs: "5s" }), /attemptTimeoutMs must be a number, got a string/);
  // Good ones, including no limit on attempts.
  for (const retry of [
    {},
    { maximumAttempts: Infinity },
    { maximumAttempts: 1 },
    { ...fast, maximumIntervalMs: 1 },
    { attemptTimeoutMs: 250 },
    { attemptTimeoutMs: Infinity, maximumAttempts: 3 },
  ]) {
    assert.deepEqual(define(retry)().retry, retry);
  }
});

test("a worker with a bad retry policy is not created", async () => {
  await assert.rejects(Worker.create(client, { workflows: [], retry: { backoffCoefficient: 0 } }), (e) => {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.match(e.message, /^retry policy: backoffCoefficient .*\(the retry option of the Worker\)$/);
    return true;
  });
});

test("a step with a bad retry policy rejects with InvalidArgument before it runs", async () => {
  const out = await (await client.startWorkflow(badStep, null)).result();
  assert.equal(out.invalid, true);
  assert.match(
    out.message,
    /^retry policy: jitter must be between 0 and 1, got 2 \(the retry option of step 'never'/,
  );
  assert.equal(ran, false);
});

test("what a step throws is committed as its type, message, details and retryability", async () => {
  const expect = {
    app: { type: "StockBusy", error: "stock busy", details: { sku: "a-1", n: 2 }, nonRetryable: false },
    appDefault: { type: "ApplicationError", error: "plain", details: null, nonRetryable: false },
    nonRetryable: { type: "CardDeclined", error: "declined", details: ["x", 1], nonRetryable: true },
    subclass: { type: "CardDeclined", error: "declined", details: null, nonRetryable: true },
    typeError: { type: "TypeError", error: "not a function", details: null, nonRetryable: false },
    custom: { type: "Custom", error: "custom message", details: null, nonRetryable: false },
    string: { type: "Error", error: "just a string", details: null, nonRetryable: false },
    badDetails: { type: "ApplicationError", error: "big", details: null, nonRetryable: false },
  };
  for (const [kind, want] of Object.entries(expect)) {
    const handle = await client.startWorkflow(thrower, kind);
    const got = await handle.result();
    const attempts = want.nonRetryable ? 1 : 2;
    assert.deepEqual(
      got,
      {
        workflowId: handle.workflowId,
        seq: 0,
        step: "boom",
        attempts,
        seen: attempts === 1 ? [1] : [1, 2],
        ...want,
      },
      kind,
    );
  }
});

test("the error classes", () => {
  const e = new NonRetryableError("no", { type: "T", details: { a: 1 } });
  assert.ok(e instanceof ApplicationError && e instanceof RaftoralError && e instanceof Error);
  assert.deepEqual(
    [e.code, e.name, e.type, e.nonRetryable, e.details],
    ["APPLICATION_ERROR", "NonRetryableError", "T", true, { a: 1 }],
  );
  const a = new ApplicationError("maybe");
  assert.deepEqual([a.type, a.nonRetryable, a.details], ["ApplicationError", false, undefined]);
  assert.equal(new ApplicationError("x", { nonRetryable: true }).nonRetryable, true);
});

test("a step is retried with its attempt number and succeeds", async () => {
  const out = await (
    await client.startWorkflow(flaky, { failTimes: 2, stepRetry: { ...fast, maximumAttempts: 5 } })
  ).result();
  assert.deepEqual(out, { attempt: 3, seen: [1, 2, 3] });
});

test("policies apply step, then workflow, then worker", async () => {
  // The step's own: one attempt.
  await assert.rejects(
    (await client.startWorkflow(flaky, { failTimes: 9, stepRetry: { maximumAttempts: 1 } })).result(),
    (e) => {
      assert.ok(e instanceof WorkflowFailed, String(e));
      assert.match(e.message, /failed after 1 attempt: Flaky: attempt 1 failed$/);
      return true;
    },
  );
  // None on the step nor the workflow: the worker's (2 attempts).
  await assert.rejects(
    (await client.startWorkflow(flaky, { failTimes: 9 })).result(),
    /failed after 2 attempts: Flaky: attempt 2 failed$/,
  );
  // The workflow's (3 attempts).
  await assert.rejects(
    (await client.startWorkflow(alwaysFails, null)).result(),
    /failed after 3 attempts: Flaky: attempt 3 failed$/,
  );
});

test("an uncaught StepFailed fails the workflow with the Rust SDK's text", async () => {
  const handle = await client.startWorkflow(uncaught, null);
  const id = handle.workflowId;
  const text = `step 'charge' (seq 1) of workflow '${id}' failed after 1 attempt: CardDeclined: card declined`;
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.equal(e.error, text);
    return true;
  });
  const info = await handle.get();
  assert.equal(info.status, "FAILED");
  assert.equal(info.error, text);
  // Its failure is the step's, structured.
  assert.deepEqual(info.failure, {
    type: "CardDeclined",
    message: "card declined",
    details: { code: "x" },
    nonRetryable: true,
  });
});

test("an ApplicationError thrown by the workflow fails it with that failure, structured", async () => {
  const expect = {
    app: {
      type: "OrderFailed",
      message: "order failed after refund",
      details: { refunded: true, items: [1, 2] },
      nonRetryable: false,
    },
    nonRetryable: { type: "Gone", message: "gone for good", details: undefined, nonRetryable: true },
    subclass: { type: "OrderRejected", message: "no stock", details: undefined, nonRetryable: false },
  };
  for (const [kind, failure] of Object.entries(expect)) {
    const handle = await client.startWorkflow(orderFails, kind);
    const id = handle.workflowId;
    const text = `${failure.type}: ${failure.message}`;
    await assert.rejects(handle.result(), (e) => {
      assert.ok(e instanceof WorkflowFailed, String(e));
      assert.equal(e.message, `workflow '${id}' failed: ${text}`);
      assert.deepEqual([e.workflowId, e.error, e.type, e.details], [id, text, failure.type, failure.details]);
      assert.deepEqual(e.failure, failure, kind);
      return true;
    });
    const listed = await client.listWorkflows({ workflowName: "order_fails", status: "FAILED" });
    for (const info of [
      await client.getWorkflow(id),
      await handle.wait(5_000),
      listed.workflows.find((w) => w.workflowId === id),
    ]) {
      assert.equal(info.status, "FAILED");
      assert.equal(info.error, text);
      assert.deepEqual(info.failure, failure, kind);
    }
    // The step before it ran; the error is no step of the history.
    assert.deepEqual(
      (await handle.history()).map((h) => [h.checkpointName, h.value]),
      [["refund", true]],
    );
  }
});

test("any other error thrown by the workflow fails it with its text, unstructured", async () => {
  const handle = await client.startWorkflow(orderFails, "plain");
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.deepEqual(
      [e.error, e.type, e.details, e.failure],
      ["TypeError: not a function", "", undefined, undefined],
    );
    return true;
  });
  const info = await handle.get();
  assert.deepEqual(
    [info.status, info.error, info.failure],
    ["FAILED", "TypeError: not a function", undefined],
  );
});
