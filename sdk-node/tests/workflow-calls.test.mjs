// Durable calls from a workflow to other workflows, against a real
// `raftoral serve`: ctx.signalWorkflow sends an event once (a step
// `signal:TARGET:NAME`, idempotency key `WORKFLOW_ID/POSITION`), and the
// target's wait gets its payload; a missing or ended target fails the step
// for good (raftoral.WorkflowNotFound, raftoral.WorkflowEnded);
// ctx.workflowResult waits for another workflow's result (a step
// `result:TARGET`), or fails with the target's own failure
// (raftoral.WorkflowCancelled for a cancelled one, raftoral.WorkflowNotFound
// for a missing one).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { ApplicationError, Client, NotFound, StepFailed, Worker, workflow } from "@raftoral/client";

import { eventually, newId, singleNode, tempDir } from "./harness.mjs";

/** Waits for the event `go`, then for `end`; returns the payload of `go`. */
const target = workflow("wc_target", { version: 1 }, async (ctx) => {
  const go = await ctx.waitEvent("go");
  await ctx.waitEvent("end");
  return go;
});

/** A step, then the event `go` with `payload` to `to`. */
const signaller = workflow("wc_signaller", { version: 1 }, async (ctx, { to, payload }) => {
  await ctx.checkpoint("before", () => true);
  const duplicate = await ctx.signalWorkflow(to, "go", payload);
  return { duplicate };
});

/** What a StepFailed says, or the value. */
async function outcome(f) {
  try {
    return { value: await f() };
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    return { stepFailed: true, step: e.step, type: e.type, error: e.error, details: e.details };
  }
}

/** Signals `to` and reports what happened. */
const trySignal = workflow("wc_try_signal", { version: 1 }, async (ctx, { to }) =>
  outcome(() => ctx.signalWorkflow(to, "go", { x: 1 })),
);

/** The result of `of`, or what its failure says. */
const reader = workflow("wc_reader", { version: 1 }, async (ctx, { of }) =>
  outcome(() => ctx.workflowResult(of)),
);

/** Returns `{ doubled }` from a step. */
const doubler = workflow("wc_doubler", { version: 1 }, async (ctx, n) =>
  ctx.checkpoint("double", () => ({ doubled: 2 * n })),
);

/** Fails with its own structured error. */
const breaks = workflow("wc_breaks", { version: 1 }, async () => {
  throw new ApplicationError("the target broke", { type: "TargetBroke", details: { code: 7 } });
});

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [target, signaller, trySignal, reader, doubler, breaks],
  });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `seq name kind`, in commit order. */
const kinds = (history) => history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);

test("a workflow signals another: the target's wait gets the payload, once", async () => {
  const to = (await client.startWorkflow(target, null, { id: newId("target") })).workflowId;
  const from = await client.startWorkflow(signaller, { to, payload: { tracking: "T-1" } });
  assert.deepEqual(await from.result(), { duplicate: false });

  // The send is a step at position 1, its value committed.
  const sent = (await from.history()).find((e) => e.checkpointName === `signal:${to}:go`);
  assert.ok(sent, kinds(await from.history()).join("\n"));
  assert.equal(sent.seq, 1);
  assert.equal(sent.kind, "VALUE");
  assert.equal(sent.value, false);

  await eventually(
    async () => (await client.history(to)).some((e) => e.kind === "EVENT_RECEIVED"),
    "the target to receive go",
  );
  // The key of the send is `FROM/POSITION`: the same event again is a duplicate.
  const again = await client.signalWorkflow(to, "go", "again", { idempotencyKey: `${from.workflowId}/1` });
  assert.equal(again.duplicate, true);
  assert.equal(again.workflow.inboxSize, 0);

  await client.signalWorkflow(to, "end");
  assert.deepEqual(await client.getHandle(to).result(), { tracking: "T-1" });
  const received = (await client.history(to)).filter((e) => e.kind === "EVENT_RECEIVED");
  assert.deepEqual(kinds(received), ["0 go EVENT_RECEIVED", "1 end EVENT_RECEIVED"]);
  assert.deepEqual(received[0].value, { tracking: "T-1" });
});

test("a signal to a missing workflow fails the step for good: raftoral.WorkflowNotFound", async () => {
  const missing = newId("missing");
  const handle = await client.startWorkflow(trySignal, { to: missing });
  const got = await handle.result();
  assert.equal(got.stepFailed, true, JSON.stringify(got));
  assert.equal(got.type, "raftoral.WorkflowNotFound");
  assert.equal(got.step, `signal:${missing}:go`);
  assert.match(got.error, new RegExp(missing));
  // Non-retryable: one attempt, failed for good.
  const history = kinds(await handle.history());
  assert.deepEqual(history, [`0 signal:${missing}:go STEP_FAILED`], history.join("\n"));
});

test("a signal to an ended workflow fails the step for good: raftoral.WorkflowEnded", async () => {
  const done = await client.startWorkflow(doubler, 1);
  await done.result();
  const got = await (await client.startWorkflow(trySignal, { to: done.workflowId })).result();
  assert.equal(got.stepFailed, true, JSON.stringify(got));
  assert.equal(got.type, "raftoral.WorkflowEnded");
});

test("workflowResult gives a completed target's result, committed as a step", async () => {
  const of = (await client.startWorkflow(doubler, 21)).workflowId;
  const handle = await client.startWorkflow(reader, { of });
  assert.deepEqual(await handle.result(), { value: { doubled: 42 } });
  const [entry] = await handle.history();
  assert.equal(entry.checkpointName, `result:${of}`);
  assert.equal(entry.kind, "VALUE");
  assert.deepEqual(entry.value, { doubled: 42 });
});

test("workflowResult waits for a running target", async () => {
  const of = (await client.startWorkflow(target, null, { id: newId("later") })).workflowId;
  const handle = await client.startWorkflow(reader, { of });
  await eventually(
    async () => (await client.history(of)).some((e) => e.kind === "EVENT_WAITING"),
    "the target to wait for go",
  );
  await client.signalWorkflow(of, "go", "late value");
  await client.signalWorkflow(of, "end");
  assert.deepEqual(await handle.result(), { value: "late value" });
});

test("workflowResult of a failing target fails with the target's own failure", async () => {
  const of = (await client.startWorkflow(breaks, null)).workflowId;
  const got = await (await client.startWorkflow(reader, { of })).result();
  assert.deepEqual(got, {
    stepFailed: true,
    step: `result:${of}`,
    type: "TargetBroke",
    error: "the target broke",
    details: { code: 7 },
  });
});

test("workflowResult of a cancelled or missing target: raftoral.WorkflowCancelled, raftoral.WorkflowNotFound", async () => {
  const of = (await client.startWorkflow(target, null)).workflowId;
  await client.cancelWorkflow(of, { reason: "not needed", cleanupMs: 0 });
  const cancelled = await (await client.startWorkflow(reader, { of })).result();
  assert.equal(cancelled.type, "raftoral.WorkflowCancelled", JSON.stringify(cancelled));
  assert.match(cancelled.error, /not needed/);

  const missing = newId("missing");
  await assert.rejects(client.getWorkflow(missing), NotFound);
  const notFound = await (await client.startWorkflow(reader, { of: missing })).result();
  assert.equal(notFound.type, "raftoral.WorkflowNotFound", JSON.stringify(notFound));
});
