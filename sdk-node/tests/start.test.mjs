// Start options on LocalNode: a delayed start (PENDING with startAtMs until
// the cluster starts it), an execution timeout (FAILED with the failure type
// raftoral.WorkflowTimeout, the sleeping function stopped), the timers a
// workflow waits on (pendingTimers, listWorkflows({ sleeping })), and the
// options the client refuses before anything is started.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Cancelled, InvalidArgument, LocalNode, Worker, WorkflowFailed, workflow } from "@raftoral/client";

import { eventually, newId } from "./harness.mjs";

/** What the workflows caught, by workflow id. */
const caught = new Map();

/** Step `ran`: the owner's clock when it ran. */
const stamp = workflow("stamp", { version: 1 }, async (ctx, input) => {
  const ranAt = await ctx.checkpoint("ran", () => Date.now());
  return { input, ranAt };
});

/** A minute's sleep named `long`; what ends it is kept. */
const sleepy = workflow("sleepy", { version: 1 }, async (ctx) => {
  try {
    await ctx.sleep("60s", { name: "long" });
  } catch (e) {
    caught.set(ctx.workflowId, e);
    throw e;
  }
  return "woke";
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [stamp, sleepy] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

test("a delayed start stays PENDING until its time, then runs", { timeout: 30_000 }, async () => {
  const before = Date.now();
  const handle = await client.startWorkflow(stamp, "later", { startDelay: "1500ms" });
  const pending = await handle.get();
  assert.equal(pending.status, "PENDING");
  assert.equal(typeof pending.startAtMs, "number");
  assert.ok(pending.startAtMs >= pending.createdAtMs + 1500, JSON.stringify(pending));
  assert.equal(pending.timeoutAtMs, undefined);
  assert.deepEqual(pending.pendingTimers, []);
  const { input, ranAt } = await handle.result();
  assert.equal(input, "later");
  assert.ok(ranAt >= before + 1500, `the step ran ${ranAt - before} ms after the start call`);
  const done = await handle.get();
  assert.equal(done.status, "COMPLETED");
  assert.equal(done.startAtMs, undefined);
});

test("a start delay of a number of milliseconds; 0 starts at once", { timeout: 30_000 }, async () => {
  const id = newId();
  const handle = await client.startWorkflow(stamp, 1, { id, startDelay: 300 });
  assert.equal(handle.workflowId, id);
  const info = await handle.get();
  // Pending, unless it already started on a slow machine.
  if (info.status === "PENDING") assert.ok(info.startAtMs >= info.createdAtMs + 300);
  assert.equal((await handle.result()).input, 1);
  const now = await client.startWorkflow(stamp, 2, { startDelay: 0 });
  assert.equal((await now.get()).startAtMs, undefined);
  assert.equal((await now.result()).input, 2);
});

test("an execution timeout fails a workflow that sleeps too long", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(sleepy, null, { executionTimeout: "2s" });
  const id = handle.workflowId;
  const info = await handle.get();
  assert.equal(typeof info.timeoutAtMs, "number");
  assert.ok(info.timeoutAtMs >= info.createdAtMs + 2000, JSON.stringify(info));
  assert.equal(info.startAtMs, undefined);
  // While it sleeps: its timer, and listed as sleeping.
  let timers;
  await eventually(async () => {
    timers = (await handle.get()).pendingTimers;
    return timers.length > 0;
  }, "the timer to start");
  assert.equal(timers.length, 1);
  assert.equal(timers[0].seq, 0);
  assert.equal(timers[0].name, "long");
  assert.ok(timers[0].fireAtMs >= info.createdAtMs + 60_000);
  const listed = await client.listWorkflows({ sleeping: true, workflowName: "sleepy", pageSize: 1000 });
  assert.ok(
    listed.workflows.some((w) => w.workflowId === id && w.pendingTimers.length === 1),
    "listed as sleeping",
  );
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.equal(e.type, "raftoral.WorkflowTimeout");
    assert.equal(e.failure?.type, "raftoral.WorkflowTimeout");
    return true;
  });
  const failed = await handle.get();
  assert.equal(failed.status, "FAILED");
  assert.equal(failed.failure?.type, "raftoral.WorkflowTimeout");
  assert.ok(failed.updatedAtMs >= info.timeoutAtMs, JSON.stringify(failed));
  assert.deepEqual(failed.pendingTimers, []);
  // The sleeping function was stopped as by a cancellation.
  await eventually(() => caught.has(id), "the sleep to end");
  assert.ok(caught.get(id) instanceof Cancelled, String(caught.get(id)));
  assert.ok(!(await handle.history()).some((e) => e.kind === "TIMER_FIRED"));
  const sleepers = await client.listWorkflows({ sleeping: true, workflowName: "sleepy", pageSize: 1000 });
  assert.ok(!sleepers.workflows.some((w) => w.workflowId === id), "no longer sleeping");
});

test("bad start options are refused before anything starts", { timeout: 30_000 }, async () => {
  const cases = [
    [{ startDelay: -1 }, InvalidArgument, /negative/],
    [{ startDelay: "-5s" }, InvalidArgument, /negative/],
    [{ startDelay: "soon" }, TypeError, /not a duration/],
    [{ startDelay: "367d" }, InvalidArgument, /startDelay .*366 days/],
    [{ executionTimeout: 0 }, InvalidArgument, /executionTimeout is 0/],
    [{ executionTimeout: "0s" }, InvalidArgument, /executionTimeout is 0/],
    [{ executionTimeout: Number.NaN }, TypeError, /NaN/],
    [{ executionTimeout: Number.POSITIVE_INFINITY }, InvalidArgument, /executionTimeout .*366 days/],
  ];
  for (const [options, type, says] of cases) {
    const id = newId();
    await assert.rejects(client.startWorkflow(stamp, null, { id, ...options }), (e) => {
      assert.ok(e instanceof type, `${JSON.stringify(options)}: ${e}`);
      assert.match(e.message, says);
      return true;
    });
    await assert.rejects(client.getWorkflow(id), (e) => e.code === "NOT_FOUND", `${id} was not started`);
  }
});
