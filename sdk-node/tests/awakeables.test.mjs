// Awakeables against a real `raftoral serve`: the code creates one
// (ctx.awakeable), publishes its id (a status value, or a step), and awaits
// its promise; a client completes it once, by id (client.resolveAwakeable,
// client.rejectAwakeable). The value reaches the code; a rejection rejects
// with StepFailed (the rejection's type and message), which the code
// catches, or which fails the workflow; a completion before the code awaits
// the promise, and even before the code created the awakeable, is kept
// until it does; a replay on a new worker gets the same id and value.
// Refused: a second completion (AlreadyCompleted, also after the end), a
// malformed id, an unknown workflow, an ended one (distinct errors), an
// awakeable's reserved event name (in a wait, in a signal); first()
// refuses a status value (it races waits and awakeables: first.test.mjs);
// awakeable() after the end.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  AlreadyCompleted,
  Client,
  InvalidArgument,
  NotFound,
  NotRunning,
  StepFailed,
  Worker,
  WorkflowFailed,
  workflow,
} from "@raftoral/client";

import { eventually, named, newId, singleNode, tempDir } from "./harness.mjs";

/** What the workflows saw, by workflow id. */
const seen = new Map();

/** Executions of each workflow, by workflow id (0: the first). */
const executions = new Map();
const nextExecution = (id) => {
  const n = executions.get(id) ?? 0;
  executions.set(id, n + 1);
  return n;
};

/**
 * An awakeable at position 0, its id published as the status `awakeable`,
 * then its value: `{ value }` (`"undefined"` for none), or, when it is
 * rejected and `catches`, `{ rejected }` with what the StepFailed says.
 */
const waiter = workflow("awk_waiter", { version: 1 }, async (ctx, { catches }) => {
  const awakeable = ctx.awakeable();
  await ctx.setStatus("awakeable", awakeable.id);
  try {
    const value = await awakeable.promise;
    return { value: value === undefined ? "undefined" : value };
  } catch (e) {
    if (!catches) throw e;
    seen.set(ctx.workflowId, e);
    return { rejected: { type: e.type, error: e.error, step: e.step, stepFailed: e instanceof StepFailed } };
  }
});

/**
 * Step `gate` (waits for the latch `ID gate`), then an awakeable (position
 * 1) published by step `publish` (into the latch `ID published`), then a
 * wait for the event `go`, and only then the awakeable's promise: a
 * completion may come at any point before.
 */
const late = workflow("awk_late", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("gate", async () => {
    await named(`${id} gate`).opened;
    return true;
  });
  const awakeable = ctx.awakeable();
  await ctx.checkpoint("publish", () => {
    named(`${id} published`).open(awakeable.id);
    return awakeable.id;
  });
  await ctx.waitEvent("go");
  try {
    return { id: awakeable.id, value: await awakeable.promise };
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    return { id: awakeable.id, rejected: `${e.type}: ${e.error}` };
  }
});

/**
 * An awakeable published as a status, then step `block`, which blocks for
 * good in the first execution (its worker then stops, and another one
 * replays the run).
 */
const replayed = workflow("awk_replayed", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  const execution = nextExecution(id);
  const awakeable = ctx.awakeable();
  await ctx.setStatus("awakeable", awakeable.id);
  const value = await awakeable.promise;
  await ctx.checkpoint("block", async () => {
    if (execution === 0) {
      named(`${id} blocked`).open();
      await new Promise(() => {});
    }
    return execution;
  });
  return { id: awakeable.id, value, execution };
});

/**
 * first() with a wait alone (it wins once it times out) and with a status
 * value (refused), and a wait for an awakeable's reserved event name,
 * noting the errors; then the awakeable's value.
 */
const misuse = workflow("awk_misuse", { version: 1 }, async (ctx) => {
  const errors = {};
  const grab = async (name, f) => {
    try {
      await f();
      errors[name] = "no error";
    } catch (e) {
      errors[name] = `${e.constructor.name}: ${e.message}`;
    }
  };
  const awakeable = ctx.awakeable();
  const wait = ctx.waitEvent("never", { timeout: 1 });
  const alone = await ctx.first(wait);
  await grab("reserved", () => ctx.waitEvent("raftoral.awakeable.5"));
  assert.equal(await wait, null, "the wait times out");
  const status = ctx.setStatus("awakeable", awakeable.id);
  await grab("status", () => ctx.first(status));
  await status;
  const value = await awakeable.promise;
  seen.set(ctx.workflowId, { errors, alone, ctx });
  return value;
});

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [waiter, late, misuse],
  });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `seq name kind`, in commit order. */
const kinds = async (handle) => (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);

/** The awakeable id workflow `id` published as its status `awakeable`, once there. */
async function published(id) {
  let found;
  await eventually(async () => {
    found = (await client.getStatus(id, ["awakeable"])).awakeable;
    return found !== undefined;
  }, "the awakeable's id to be published");
  return found;
}

test("a resolved awakeable's value reaches the code; eventWaits and the history show the wait", async () => {
  const handle = await client.startWorkflow(waiter, { catches: false }, { id: newId("awk") });
  const id = handle.workflowId;
  const awakeable = await published(id);
  assert.equal(awakeable, `awk/0/${id}`);
  await eventually(async () => (await handle.get()).eventWaits.length === 1, "the wait to be committed");
  const [wait] = (await handle.get()).eventWaits;
  assert.equal(wait.seq, 0);
  assert.equal(wait.name, "raftoral.awakeable.0");
  assert.equal(wait.timeoutAtMs, undefined, "no timeout");

  const info = await client.resolveAwakeable(awakeable, { receipt: 9 });
  assert.equal(info.workflowId, id, "the workflow's state");
  assert.equal(info.workflowName, "awk_waiter");
  assert.deepEqual(await handle.result(), { value: { receipt: 9 } });
  const history = await handle.history();
  const entries = history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);
  // The wait and the status side by side commit in either order.
  assert.deepEqual(entries.slice(0, 2).sort(), [
    "0 raftoral.awakeable.0 EVENT_WAITING",
    "1 awakeable STATUS_SET",
  ]);
  assert.deepEqual(entries.slice(2), ["0 raftoral.awakeable.0 EVENT_RECEIVED"]);
  assert.deepEqual(history[2].value, { receipt: 9 }, "the value, decoded");
});

test("an awakeable resolved without a value gives undefined", async () => {
  const handle = await client.startWorkflow(waiter, { catches: false }, { id: newId("awk") });
  await client.resolveAwakeable(await published(handle.workflowId));
  assert.deepEqual(await handle.result(), { value: "undefined" });
});

test("a rejected awakeable rejects with StepFailed, which the code catches", async () => {
  const handle = await client.startWorkflow(waiter, { catches: true }, { id: newId("awk") });
  const id = handle.workflowId;
  const awakeable = await published(id);
  const info = await client.rejectAwakeable(awakeable, "card declined", "Declined");
  assert.equal(info.workflowId, id);
  assert.deepEqual(await handle.result(), {
    rejected: { type: "Declined", error: "card declined", step: awakeable, stepFailed: true },
  });
  const e = seen.get(id);
  assert.equal(e.code, "STEP_FAILED");
  assert.equal(e.workflowId, id);
  assert.equal(e.seq, 0);
  assert.match(e.message, /card declined/);

  // The default type.
  const other = await client.startWorkflow(waiter, { catches: true }, { id: newId("awk") });
  await client.rejectAwakeable(await published(other.workflowId), "no");
  assert.equal((await other.result()).rejected.type, "Rejected");
});

test("a rejection not caught fails the workflow with the rejection as its failure", async () => {
  const handle = await client.startWorkflow(waiter, { catches: false }, { id: newId("awk") });
  await client.rejectAwakeable(await published(handle.workflowId), "the manager said no", "Denied");
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.equal(e.failure?.type, "Denied");
    assert.equal(e.failure?.message, "the manager said no");
    return true;
  });
});

test("an awakeable completed before the code awaits its promise, or before it exists, is kept", async () => {
  // Resolved after the code created it, before it awaits the promise.
  const early = await client.startWorkflow(late, null, { id: newId("awk") });
  const earlyId = early.workflowId;
  named(`${earlyId} gate`).open();
  const awakeable = await named(`${earlyId} published`).opened;
  assert.equal(awakeable, `awk/1/${earlyId}`);
  await client.resolveAwakeable(awakeable, "paid");
  await eventually(
    async () => (await kinds(early)).includes("1 raftoral.awakeable.1 EVENT_RECEIVED"),
    "the awakeable to be resolved",
  );
  assert.equal((await early.get()).status, "RUNNING", "the code waits for `go`");
  await early.signal("go");
  assert.deepEqual(await early.result(), { id: awakeable, value: "paid" });

  // Rejected before the code awaits the promise: not an unhandled rejection.
  const rejected = await client.startWorkflow(late, null, { id: newId("awk") });
  named(`${rejected.workflowId} gate`).open();
  await client.rejectAwakeable(await named(`${rejected.workflowId} published`).opened, "expired", "Expired");
  await eventually(
    async () => (await kinds(rejected)).includes("1 raftoral.awakeable.1 EVENT_RECEIVED"),
    "the awakeable to be rejected",
  );
  await rejected.signal("go");
  assert.deepEqual(await rejected.result(), {
    id: `awk/1/${rejected.workflowId}`,
    rejected: "Expired: expired",
  });

  // Resolved before the code created it: ids are positions, known ahead.
  const ahead = await client.startWorkflow(late, null, { id: newId("awk") });
  const aheadId = ahead.workflowId;
  await eventually(async () => (await ahead.get()).status === "RUNNING", "the workflow to run");
  const info = await client.resolveAwakeable(`awk/1/${aheadId}`, { early: true });
  assert.equal(info.inboxSize, 1, "kept in the inbox until the code waits");
  named(`${aheadId} gate`).open();
  assert.equal(await named(`${aheadId} published`).opened, `awk/1/${aheadId}`);
  await ahead.signal("go");
  assert.deepEqual(await ahead.result(), { id: `awk/1/${aheadId}`, value: { early: true } });
});

test("a replay on a new worker gets the same id and the committed value", { timeout: 60_000 }, async () => {
  const first = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [replayed],
    shutdownGraceMs: 10,
  });
  let handle;
  let awakeable;
  try {
    handle = await client.startWorkflow(replayed, null, { id: newId("awk") });
    awakeable = await published(handle.workflowId);
    await client.resolveAwakeable(awakeable, "v1");
    await named(`${handle.workflowId} blocked`).opened;
  } finally {
    await first.shutdown();
  }
  const second = await Worker.create(await Client.connect(sidecar.url), { workflows: [replayed] });
  try {
    // The same id and the committed value; the blocked step ran again.
    assert.deepEqual(await handle.result(), { id: awakeable, value: "v1", execution: 1 });
  } finally {
    await second.shutdown();
  }
  assert.equal(executions.get(handle.workflowId), 2, "the second worker replayed the run");
});

test("a second completion is AlreadyCompleted, also after the workflow ended", async () => {
  const handle = await client.startWorkflow(waiter, { catches: true }, { id: newId("awk") });
  const awakeable = await published(handle.workflowId);
  await client.resolveAwakeable(awakeable, 1);
  const already = (e) => {
    assert.ok(e instanceof AlreadyCompleted, String(e));
    assert.equal(e.code, "ALREADY_COMPLETED");
    assert.equal(e.awakeableId, awakeable);
    assert.match(e.message, /already completed/);
    return true;
  };
  await assert.rejects(client.resolveAwakeable(awakeable, 2), already);
  await assert.rejects(client.rejectAwakeable(awakeable, "too late"), already);
  assert.deepEqual(await handle.result(), { value: 1 }, "the first completion stands");
  await assert.rejects(client.resolveAwakeable(awakeable, 3), already);
});

test("a malformed id, an unknown workflow and an ended one are refused with distinct errors", async () => {
  const invalid = (says) => (e) => {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.message, says);
    return true;
  };
  for (const malformed of ["", "order-1", "awk/x/order-1", "awk/1/"]) {
    await assert.rejects(client.resolveAwakeable(malformed, 1), invalid(/not an awakeable id/));
    await assert.rejects(client.rejectAwakeable(malformed, "no"), invalid(/not an awakeable id/));
  }
  await assert.rejects(client.resolveAwakeable(7, 1), invalid(/must be a string/));
  await assert.rejects(client.resolveAwakeable("awk/0/x", { n: 1n }), invalid(/cannot encode its value/));
  await assert.rejects(
    client.rejectAwakeable("awk/0/x", "no", ""),
    invalid(/type must be a non-empty string/),
  );
  await assert.rejects(client.rejectAwakeable("awk/0/x", 5), invalid(/message must be a string/));

  await assert.rejects(client.resolveAwakeable(`awk/0/${newId("nobody")}`, 1), (e) => {
    assert.ok(e instanceof NotFound, String(e));
    assert.equal(e.code, "NOT_FOUND");
    return true;
  });

  const handle = await client.startWorkflow(waiter, { catches: true }, { id: newId("awk") });
  const id = handle.workflowId;
  await client.resolveAwakeable(await published(id), "done");
  assert.deepEqual(await handle.result(), { value: "done" });
  const ended = (e) => {
    assert.ok(e instanceof NotRunning, String(e));
    assert.equal(e.code, "NOT_RUNNING");
    assert.equal(e.workflowId, id);
    return true;
  };
  // Another position of the ended workflow: it has ended.
  await assert.rejects(client.resolveAwakeable(`awk/7/${id}`, 1), ended);
  await assert.rejects(client.rejectAwakeable(`awk/7/${id}`, "no"), ended);
});

test("first() takes a wait and refuses a status value; reserved names; awakeable() after the end", async () => {
  const handle = await client.startWorkflow(misuse, null, { id: newId("awk") });
  const awakeable = await published(handle.workflowId);
  // Its reserved event is not a user event's.
  await assert.rejects(
    client.signalWorkflow(handle.workflowId, "raftoral.awakeable.0", 1),
    (e) => e instanceof InvalidArgument && /reserved for awakeables/.test(e.message),
  );
  await client.resolveAwakeable(awakeable, "went on");
  assert.equal(await handle.result(), "went on");
  const { errors, alone, ctx } = seen.get(handle.workflowId);
  assert.deepEqual(alone, { index: 0, value: null }, "a wait raced alone wins with its timeout");
  assert.match(errors.status, /^TypeError: first\(\) takes the promises of this workflow's ctx.sleep/);
  assert.match(errors.status, /argument 0 is another promise/);
  assert.match(errors.reserved, /^InvalidArgument: .*reserved for awakeables/);
  assert.throws(
    () => ctx.awakeable(),
    (e) => e instanceof InvalidArgument && /finished/.test(e.message),
  );
  const history = await kinds(handle);
  // The two waits side by side commit in either order; the awakeable is
  // resolved last (its id is published after the wait timed out).
  assert.deepEqual(history.slice(0, 2).sort(), [
    "0 raftoral.awakeable.0 EVENT_WAITING",
    "1 never EVENT_WAITING",
  ]);
  assert.deepEqual(history.slice(2), [
    "1 never EVENT_TIMED_OUT",
    "2 awakeable STATUS_SET",
    "0 raftoral.awakeable.0 EVENT_RECEIVED",
  ]);
});
