// Child workflows against a real `raftoral serve`: ctx.callChild gives the
// child's result, and the parent's history shows the child's start
// (CHILD_STARTED, its value the child's id, by default `PARENT/SEQ`) then
// its end (CHILD_COMPLETED); twenty children started one after another and
// awaited with Promise.all (fan-out); a failing child rejects the parent's
// await with StepFailed (the child's failure type and message); a child
// still running when its parent ends meets its parent-close policy
// (cancel, the default: CANCELLED; abandon: it runs on); listWorkflows
// ({ parentId }) lists a parent's children; a child's result can be raced
// with first(); a child's result nobody awaits never rejects unhandled;
// refused options.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { ApplicationError, Client, NotFound, StepFailed, Worker, workflow } from "@raftoral/client";

import { eventually, newId, singleNode, tempDir } from "./harness.mjs";

/** Rejections nobody handled while this file ran. */
const unhandled = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

/** A child that returns its input, in a step. */
const echo = workflow("ch_echo", { version: 1 }, async (ctx, x) =>
  ctx.checkpoint("echo", () => ({ echoed: x })),
);

/** A child that fails with its own error type. */
const broken = workflow("ch_broken", { version: 1 }, async () => {
  throw new ApplicationError("the child broke", { type: "ChildBroke" });
});

/** A child that waits for the event `go`, then returns `"went"`. */
const waiter = workflow("ch_waiter", { version: 1 }, async (ctx) => {
  await ctx.waitEvent("go");
  return "went";
});

/** Step `before` (position 0), then the child `echo` (position 1). */
const caller = workflow("ch_caller", { version: 1 }, async (ctx, x) => {
  await ctx.checkpoint("before", () => true);
  return ctx.callChild(echo, x);
});

/** `n` children started one after another, their results awaited together. */
const fan = workflow("ch_fan", { version: 1 }, async (ctx, n) => {
  const children = [];
  for (let i = 0; i < n; i++) {
    children.push(await ctx.startChild(echo, i));
  }
  const results = await Promise.all(children.map((c) => c.result));
  return { ids: children.map((c) => c.id), results };
});

/** A failing child, caught: what the StepFailed says. */
const failing = workflow("ch_failing", { version: 1 }, async (ctx) => {
  try {
    await ctx.callChild("ch_broken", null);
    return "no error";
  } catch (e) {
    return { stepFailed: e instanceof StepFailed, type: e.type, error: e.error };
  }
});

/** Starts a waiting child with the policy `parentClose` and returns at once. */
const leaver = workflow("ch_leaver", { version: 1 }, async (ctx, { parentClose }) => {
  const child = await ctx.startChild(waiter, null, parentClose === undefined ? undefined : { parentClose });
  return { id: child.id };
});

/**
 * A failing child whose result is never awaited, then a wait for `go`;
 * then a child raced with an hour's sleep.
 */
const careless = workflow("ch_careless", { version: 1 }, async (ctx) => {
  const ignored = await ctx.startChild(broken, null);
  await ctx.waitEvent("go");
  const raced = await ctx.startChild(echo, "fast");
  const won = await ctx.first(raced.result, ctx.sleep("1h", { name: "deadline" }));
  return { ignored: ignored.id, index: won.index, value: won.value };
});

/** Misused options, each error noted; then one child named by the code. */
const misuse = workflow("ch_misuse", { version: 1 }, async (ctx, { childId }) => {
  const errors = {};
  const grab = async (name, f) => {
    try {
      await f();
      errors[name] = "no error";
    } catch (e) {
      errors[name] = `${e.constructor.name}: ${e.message}`;
    }
  };
  await grab("own", () => ctx.startChild(echo, 1, { id: ctx.workflowId }));
  await grab("emptyId", () => ctx.callChild(echo, 1, { id: "" }));
  await grab("policy", () => ctx.startChild(echo, 1, { parentClose: "later" }));
  await grab("name", () => ctx.callChild("", 1));
  const named = await ctx.startChild(echo, "named", { id: childId });
  return { errors, id: named.id, result: await named.result };
});

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [echo, broken, waiter, caller, fan, failing, leaver, careless, misuse],
  });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `seq name kind`, in commit order. */
const kinds = (history) => history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);

/** Waits until workflow `id` exists and has the status `status`; its info. */
async function reaches(id, status) {
  let info;
  await eventually(async () => {
    try {
      info = await client.getWorkflow(id);
    } catch (e) {
      if (e instanceof NotFound) return false;
      throw e;
    }
    return info.status === status;
  }, `workflow ${id} to be ${status}`);
  return info;
}

test("callChild gives the child's result; the history shows CHILD_STARTED then CHILD_COMPLETED", async () => {
  const handle = await client.startWorkflow(caller, { n: 7 }, { id: newId("parent") });
  const id = handle.workflowId;
  assert.deepEqual(await handle.result(), { echoed: { n: 7 } });
  const history = await handle.history();
  assert.deepEqual(kinds(history), [
    "0 before VALUE",
    "1 ch_echo CHILD_STARTED",
    "1 ch_echo CHILD_COMPLETED",
  ]);
  assert.equal(history[1].value, `${id}/1`, "the child's default id");
  assert.deepEqual(history[2].value, { echoed: { n: 7 } }, "the child's result, decoded");

  const child = await client.getWorkflow(`${id}/1`);
  assert.equal(child.status, "COMPLETED");
  assert.equal(child.workflowName, "ch_echo");
  assert.equal(child.parentId, id);
  assert.equal(child.parentSeq, 1);
  assert.equal(child.parentClose, "cancel");
  assert.deepEqual(child.input, { n: 7 });
  const parent = await handle.get();
  assert.equal(parent.parentId, undefined, "the parent is no child");
  assert.equal(parent.parentSeq, undefined);
  assert.equal(parent.parentClose, undefined);
  assert.deepEqual(parent.openChildren, [], "no child left open");
});

test("fan-out: twenty children awaited with Promise.all; listWorkflows({ parentId }) lists them", async () => {
  const handle = await client.startWorkflow(fan, 20, { id: newId("fan") });
  const id = handle.workflowId;
  const { ids, results } = await handle.result();
  const expected = Array.from({ length: 20 }, (_, i) => `${id}/${i}`);
  assert.deepEqual(ids, expected, "default ids, positions in start order");
  assert.deepEqual(
    results,
    Array.from({ length: 20 }, (_, i) => ({ echoed: i })),
    "results in start order",
  );
  const history = await handle.history();
  assert.equal(history.filter((e) => e.kind === "CHILD_STARTED").length, 20);
  assert.equal(history.filter((e) => e.kind === "CHILD_COMPLETED").length, 20);

  const listed = [];
  let pageToken = "";
  do {
    const page = await client.listWorkflows({ parentId: id, pageToken, pageSize: 7 });
    listed.push(...page.workflows);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  assert.deepEqual(listed.map((w) => w.workflowId).sort(), [...expected].sort());
  assert.ok(listed.every((w) => w.parentId === id && w.workflowName === "ch_echo"));
  const other = await client.listWorkflows({ parentId: newId("nobody") });
  assert.deepEqual(other.workflows, [], "no children of an unknown workflow");
});

test("a failing child rejects with StepFailed: the child's type and message", async () => {
  const handle = await client.startWorkflow(failing, null, { id: newId("failing") });
  const id = handle.workflowId;
  assert.deepEqual(await handle.result(), { stepFailed: true, type: "ChildBroke", error: "the child broke" });
  assert.deepEqual(kinds(await handle.history()), ["0 ch_broken CHILD_STARTED", "0 ch_broken CHILD_FAILED"]);
  const child = await client.getWorkflow(`${id}/0`);
  assert.equal(child.status, "FAILED");
  assert.equal(child.failure?.type, "ChildBroke");
});

test("parent close: cancel (the default) cancels the child; abandon lets it run on", async () => {
  const cancelling = await client.startWorkflow(leaver, {}, { id: newId("leave-cancel") });
  const { id: cancelledId } = await cancelling.result();
  assert.equal(cancelledId, `${cancelling.workflowId}/0`);
  const cancelled = await reaches(cancelledId, "CANCELLED");
  assert.equal(cancelled.parentClose, "cancel");

  const abandoning = await client.startWorkflow(
    leaver,
    { parentClose: "abandon" },
    { id: newId("leave-abandon") },
  );
  const { id: abandonedId } = await abandoning.result();
  const abandoned = await client.getWorkflow(abandonedId);
  assert.equal(abandoned.status, "RUNNING", "the child outlives its parent");
  assert.equal(abandoned.parentClose, "abandon");
  assert.equal(abandoned.parentId, abandoning.workflowId);
  await client.signalWorkflow(abandonedId, "go");
  assert.equal((await reaches(abandonedId, "COMPLETED")).result, "went");
});

test("a child's result nobody awaits never rejects unhandled; first() races a child's result", async () => {
  const handle = await client.startWorkflow(careless, null, { id: newId("careless") });
  const id = handle.workflowId;
  await reaches(`${id}/0`, "FAILED");
  // The parent's record of the failure, before the parent goes on.
  await eventually(
    async () => (await handle.history()).some((e) => e.kind === "CHILD_FAILED"),
    "the parent to record the child's failure",
  );
  await client.signalWorkflow(id, "go");
  assert.deepEqual(await handle.result(), { ignored: `${id}/0`, index: 0, value: { echoed: "fast" } });
  // Let any stray rejection surface.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(unhandled, [], "no unhandled rejection");
});

test("refused: the workflow's own id, an empty id or name, an unknown policy; a child named by the code", async () => {
  const childId = newId("named-child");
  const handle = await client.startWorkflow(misuse, { childId }, { id: newId("misuse") });
  const { errors, id, result } = await handle.result();
  assert.match(errors.own, /^InvalidArgument: .*own child/);
  assert.match(errors.emptyId, /^InvalidArgument: .*must not be empty/);
  assert.match(errors.policy, /^InvalidArgument: .*parentClose/);
  assert.match(errors.name, /^InvalidArgument: /);
  assert.equal(id, childId);
  assert.deepEqual(result, { echoed: "named" });
  // The refusals took no position: the named child is at position 0.
  assert.deepEqual(kinds(await handle.history()), ["0 ch_echo CHILD_STARTED", "0 ch_echo CHILD_COMPLETED"]);
  assert.equal((await client.getWorkflow(childId)).parentSeq, 0);
});
