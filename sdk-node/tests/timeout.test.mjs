// The retry policy's attempt timeout, on LocalNode: an attempt that outlasts
// attemptTimeoutMs has its signal aborted with AttemptTimeout, is no longer
// waited for, and fails with the core's failure (type AttemptTimeout,
// message `attempt N timed out after T ms`), retried per the policy.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  AttemptTimeout,
  Cancelled,
  LocalNode,
  RaftoralError,
  StepFailed,
  Worker,
  WorkflowFailed,
  workflow,
} from "@raftoral/client";

import { eventually } from "./harness.mjs";

/** Retries without waiting. */
const fast = { initialIntervalMs: 0, backoffCoefficient: 1, jitter: 0 };

/** What each attempt saw, by workflow id, in order. */
const seen = new Map();
function attemptsOf(id) {
  if (!seen.has(id)) seen.set(id, []);
  return seen.get(id);
}

/**
 * One step `slow` whose first `hangTimes` attempts hang: until their signal
 * aborts (rejecting with its reason), or for good with `ignoreSignal`.
 * `retry` is the step's policy (with `noLimit`, plus `attemptTimeoutMs:
 * Infinity`, which JSON cannot carry); with `catch` a StepFailed is returned.
 */
const slow = workflow(
  "slow",
  { version: 1 },
  async (ctx, { hangTimes, retry, noLimit, ignoreSignal, catch: caught }) => {
    const id = ctx.workflowId;
    try {
      const attempt = await ctx.checkpoint(
        "slow",
        async ({ attempt, signal }) => {
          const a = { attempt, signal, workflowSignal: signal === ctx.signal, startedAt: performance.now() };
          attemptsOf(id).push(a);
          if (attempt <= hangTimes) {
            await new Promise((_, reject) => {
              if (ignoreSignal) return;
              signal.addEventListener("abort", () => {
                a.abortedAt = performance.now();
                reject(signal.reason);
              });
            });
          }
          return attempt;
        },
        { retry: noLimit ? { ...retry, attemptTimeoutMs: Number.POSITIVE_INFINITY } : retry },
      );
      return { attempt };
    } catch (e) {
      if (!(e instanceof StepFailed) || !caught) throw e;
      return { failed: { type: e.type, error: e.error, attempts: e.attempts, nonRetryable: e.nonRetryable } };
    }
  },
);

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [slow] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

async function run(input) {
  const handle = await client.startWorkflow(slow, input);
  return { id: handle.workflowId, out: await handle.result() };
}

test("an attempt that outlasts attemptTimeoutMs is aborted with AttemptTimeout and retried", async () => {
  const { id, out } = await run({
    hangTimes: 1,
    retry: { ...fast, maximumAttempts: 3, attemptTimeoutMs: 100 },
  });
  assert.deepEqual(out, { attempt: 2 });
  const [first, second, ...more] = attemptsOf(id);
  assert.equal(more.length, 0);
  // The attempt's own signal, aborted by the timeout, not before it.
  assert.equal(first.workflowSignal, false);
  assert.equal(first.signal.aborted, true);
  assert.ok(first.abortedAt - first.startedAt >= 99, `aborted after ${first.abortedAt - first.startedAt} ms`);
  const reason = first.signal.reason;
  assert.ok(reason instanceof AttemptTimeout && reason instanceof RaftoralError, String(reason));
  assert.deepEqual(
    [reason.code, reason.type, reason.message, reason.workflowId, reason.step, reason.seq, reason.attempt],
    ["ATTEMPT_TIMEOUT", "AttemptTimeout", "attempt 1 timed out after 100 ms", id, "slow", 0, 1],
  );
  assert.equal(reason.timeoutMs, 100);
  // The next attempt, in time, is left alone.
  assert.equal(second.attempt, 2);
  assert.notEqual(second.signal, first.signal);
  assert.equal(second.signal.aborted, false);
});

test("an attempt that ignores its signal is not waited for", async () => {
  const { id, out } = await run({
    hangTimes: 1,
    ignoreSignal: true,
    retry: { ...fast, maximumAttempts: 2, attemptTimeoutMs: 50 },
  });
  assert.deepEqual(out, { attempt: 2 });
  assert.equal(attemptsOf(id)[0].signal.reason.message, "attempt 1 timed out after 50 ms");
});

test("the last attempt's timeout fails the step with the core's failure", async () => {
  const { out } = await run({
    hangTimes: 9,
    catch: true,
    retry: { ...fast, maximumAttempts: 2, attemptTimeoutMs: 30 },
  });
  assert.deepEqual(out, {
    failed: {
      type: "AttemptTimeout",
      error: "attempt 2 timed out after 30 ms",
      attempts: 2,
      nonRetryable: false,
    },
  });
  // Uncaught, it fails the workflow with it, structured.
  const handle = await client.startWorkflow(slow, {
    hangTimes: 9,
    retry: { ...fast, maximumAttempts: 1, attemptTimeoutMs: 30 },
  });
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.deepEqual(e.failure, {
      type: "AttemptTimeout",
      message: "attempt 1 timed out after 30 ms",
      details: undefined,
      nonRetryable: false,
    });
    return true;
  });
});

test("AttemptTimeout listed as non-retryable stops the step at the first timeout", async () => {
  const { id, out } = await run({
    hangTimes: 9,
    catch: true,
    retry: { ...fast, maximumAttempts: 5, attemptTimeoutMs: 30, nonRetryableErrorTypes: ["AttemptTimeout"] },
  });
  assert.equal(out.failed.attempts, 1);
  assert.equal(attemptsOf(id).length, 1);
});

test("without a timeout, or with Infinity, an attempt's signal is its own too, never aborted", async () => {
  for (const noLimit of [false, true]) {
    const { id, out } = await run({ hangTimes: 0, retry: fast, noLimit });
    assert.deepEqual(out, { attempt: 1 });
    const [only] = attemptsOf(id);
    assert.deepEqual([only.workflowSignal, only.signal.aborted], [false, false]);
  }
  // A step done in time: one attempt, its signal never aborted.
  const { id } = await run({ hangTimes: 0, retry: { ...fast, attemptTimeoutMs: 60_000 } });
  const [only, ...more] = attemptsOf(id);
  assert.deepEqual([more.length, only.workflowSignal, only.signal.aborted], [0, false, false]);
});

test("a cancellation aborts a timed attempt's signal with Cancelled", async () => {
  const handle = await client.startWorkflow(slow, {
    hangTimes: 1,
    retry: { ...fast, maximumAttempts: 2, attemptTimeoutMs: 60_000 },
  });
  const id = handle.workflowId;
  await eventually(() => attemptsOf(id).length === 1, "the attempt to start");
  // A request (the sidecar's cleanup window): the step rejects with
  // Cancelled, which the workflow does not catch, so it ends CANCELLED.
  await handle.cancel("changed my mind");
  await assert.rejects(handle.result(), Cancelled);
  await eventually(() => attemptsOf(id)[0].signal.aborted, "the attempt's signal to abort");
  const reason = attemptsOf(id)[0].signal.reason;
  assert.ok(reason instanceof Cancelled, String(reason));
  assert.equal(reason.reason, "changed my mind");
  assert.equal(attemptsOf(id).length, 1, "no attempt after the cancellation");
});
