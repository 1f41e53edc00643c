// Status values and signal-with-start against a real `raftoral serve`.
// Status: the code sets values (ctx.setStatus) that a client reads by key
// (client.getStatus, handle.getStatus): the latest value of each key, a
// keys filter, read while the workflow runs and after it completed, a
// replay on a new worker does not set them again, positions in call order
// side by side with steps; refused: a value over 64 KiB (in the workflow,
// before any position is taken), an empty key, a call after the end, an
// unknown workflow, bad keys. Signal-with-start: the first call starts the
// workflow and the next ones only deliver (started false), concurrent calls
// start one workflow and deliver every event, a key delivers once, start
// options apply to the start, an ended workflow and a missing id are
// refused with distinct errors. Values and inputs are the codec's bytes,
// stored as they are: a codec whose output is not JSON works too.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  Client,
  InvalidArgument,
  NotFound,
  NotRunning,
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
 * `stage` "started", then per event `next` (of `waits`): `done` the count
 * and `detail` an object; then `stage` "finished" and step `after`.
 */
const progress = workflow("status_progress", { version: 1 }, async (ctx, { waits }) => {
  await ctx.setStatus("stage", "started");
  for (let i = 1; i <= waits; i++) {
    const got = await ctx.waitEvent("next");
    await ctx.setStatus("done", i);
    await ctx.setStatus("detail", { step: i, got });
  }
  await ctx.setStatus("stage", "finished");
  return ctx.checkpoint("after", () => "ok");
});

/**
 * A status and a step side by side, then a status and a step that blocks
 * for good in the first execution (its worker then stops, and another one
 * replays the run).
 */
const replayed = workflow("status_replayed", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  const execution = nextExecution(id);
  const [, a] = await Promise.all([ctx.setStatus("phase", "one"), ctx.checkpoint("a", () => execution)]);
  await ctx.setStatus("phase", "two");
  await ctx.checkpoint("block", async () => {
    if (execution === 0) {
      named(`${id} blocked`).open();
      await new Promise(() => {});
    }
    return execution;
  });
  await ctx.setStatus("phase", "three");
  return { a, execution };
});

/** Calls setStatus with what it refuses, noting each error; then sets a value just under the limit. */
const refused = workflow("status_refused", { version: 1 }, async (ctx) => {
  const errors = [];
  for (const [key, value] of [
    ["big", "x".repeat(64 * 1024)],
    ["", 1],
    ["cyclic", { n: 1n }],
  ]) {
    try {
      await ctx.setStatus(key, value);
      errors.push("not refused");
    } catch (e) {
      errors.push(e);
    }
  }
  // 64 KiB encoded, quotes included: the largest value.
  await ctx.setStatus("fits", "y".repeat(64 * 1024 - 2));
  seen.set(ctx.workflowId, { errors, ctx });
  return ctx.checkpoint("after", () => "went on");
});

/** A status over the limit, not caught: the workflow fails with its error. */
const tooBig = workflow("status_too_big", { version: 1 }, async (ctx) => {
  await ctx.setStatus("blob", { data: "z".repeat(70_000) });
  return "unreachable";
});

/** Waits for `waits` events `add`; returns its input and the payloads. */
const cart = workflow("status_cart", { version: 1 }, async (ctx, input) => {
  const got = [];
  for (let i = 0; i < (input?.waits ?? 1); i++) {
    got.push(await ctx.waitEvent("add"));
    await ctx.setStatus("items", got.length);
  }
  return { input: input === undefined ? "undefined" : input, got };
});

/**
 * Sets its input and `undefined` as status values, then waits for `add`
 * and sets what came; run by a worker with a codec that is not JSON.
 */
const binaryCart = workflow("status_binary_cart", { version: 1 }, async (ctx, input) => {
  await ctx.setStatus("input", input);
  await ctx.setStatus("nothing", undefined);
  const got = await ctx.waitEvent("add");
  await ctx.setStatus("got", got);
  return { input, got };
});

/** Two bytes that are not UTF-8, then JSON: a codec whose output is not JSON text. */
const TAG = Buffer.from([0xff, 0x00]);
const tagged = {
  encode: (v) => (v === undefined ? new Uint8Array(0) : Buffer.concat([TAG, Buffer.from(JSON.stringify(v))])),
  decode: (b) => {
    if (b.length === 0) return undefined;
    assert.deepEqual(Buffer.from(b.subarray(0, 2)), TAG, "tagged bytes");
    return JSON.parse(Buffer.from(b.subarray(2)).toString("utf8"));
  },
};

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [progress, refused, tooBig, cart],
  });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `seq name kind`, in commit order. */
const kinds = async (handle) => (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);

/** Polls the workflow's status values until they equal `want`. */
async function statusIs(id, want) {
  await eventually(
    async () => {
      try {
        assert.deepEqual(await client.getStatus(id), want);
        return true;
      } catch {
        return false;
      }
    },
    `status ${JSON.stringify(want)}`,
  );
}

test("status values are read by key: the latest of each, filtered by keys, also after the end", async () => {
  const handle = await client.startWorkflow(progress, { waits: 2 }, { id: newId("st") });
  const id = handle.workflowId;
  await statusIs(id, { stage: "started" });

  await handle.signal("next", "a");
  await statusIs(id, { stage: "started", done: 1, detail: { step: 1, got: "a" } });
  await handle.signal("next", "b");
  assert.equal(await handle.result(), "ok");

  const all = await client.getStatus(id);
  assert.deepEqual(
    all,
    { stage: "finished", done: 2, detail: { step: 2, got: "b" } },
    "the latest of each key",
  );
  assert.deepEqual(Object.keys(all), ["detail", "done", "stage"], "ordered by key");
  assert.deepEqual(await client.getStatus(id, ["done"]), { done: 2 });
  assert.deepEqual(await handle.getStatus(["stage", "done"]), { stage: "finished", done: 2 });
  assert.deepEqual(await client.getStatus(id, []), all, "no keys: every key");
  assert.deepEqual(await client.getStatus(id, ["never-set"]), {}, "a key never set is absent");

  // Every value is in the history, at its position, decoded.
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`),
    [
      "0 stage STATUS_SET",
      "1 next EVENT_WAITING",
      "1 next EVENT_RECEIVED",
      "2 done STATUS_SET",
      "3 detail STATUS_SET",
      "4 next EVENT_WAITING",
      "4 next EVENT_RECEIVED",
      "5 done STATUS_SET",
      "6 detail STATUS_SET",
      "7 stage STATUS_SET",
      "8 after VALUE",
    ],
  );
  assert.deepEqual(
    history.filter((e) => e.kind === "STATUS_SET").map((e) => e.value),
    ["started", 1, { step: 1, got: "a" }, 2, { step: 2, got: "b" }, "finished"],
  );
});

test("a workflow that has set nothing has no status values", async () => {
  const handle = await client.startWorkflow(progress, { waits: 1 }, { id: newId("st"), startDelay: "1h" });
  assert.deepEqual(await client.getStatus(handle.workflowId), {});
  await handle.cancel({ reason: "done", cleanupMs: 0 });
  assert.deepEqual(await handle.getStatus(), {}, "nor once it ended");
});

test("a replay on a new worker does not set status values again; side by side, positions in call order", {
  timeout: 60_000,
}, async () => {
  const first = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [replayed],
    shutdownGraceMs: 10,
  });
  let handle;
  try {
    handle = await client.startWorkflow(replayed, null, { id: newId("st") });
    await named(`${handle.workflowId} blocked`).opened;
  } finally {
    await first.shutdown();
  }
  assert.deepEqual(await handle.getStatus(), { phase: "two" }, "read while no worker runs it");
  const second = await Worker.create(await Client.connect(sidecar.url), { workflows: [replayed] });
  try {
    assert.deepEqual(await handle.result(), { a: 0, execution: 1 }, "the step's value from the first run");
  } finally {
    await second.shutdown();
  }
  assert.equal(executions.get(handle.workflowId), 2, "the second worker replayed the run");
  const history = await kinds(handle);
  // The status and the step side by side commit in either order.
  assert.deepEqual(history.slice(0, 2).sort(), ["0 phase STATUS_SET", "1 a VALUE"]);
  assert.deepEqual(history.slice(2), ["2 phase STATUS_SET", "3 block VALUE", "4 phase STATUS_SET"]);
  assert.deepEqual(await handle.getStatus(), { phase: "three" });
});

test("setStatus refuses a value over 64 KiB, an empty key and a value it cannot encode, before any position", async () => {
  const handle = await client.startWorkflow(refused, null, { id: newId("st") });
  assert.equal(await handle.result(), "went on");
  const { errors, ctx } = seen.get(handle.workflowId);
  for (const e of errors) {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
  }
  assert.match(errors[0].message, /status 'big'/);
  assert.match(errors[0].message, /65538 bytes, over the 65536-byte limit/);
  assert.match(errors[1].message, /non-empty/);
  assert.match(errors[2].message, /cannot encode/);
  assert.deepEqual(await kinds(handle), ["0 fits STATUS_SET", "1 after VALUE"], "no position was taken");
  assert.equal((await handle.getStatus(["fits"])).fits.length, 64 * 1024 - 2);
  // After the end, the context refuses.
  await assert.rejects(
    ctx.setStatus("late", 1),
    (e) => e instanceof InvalidArgument && /finished/.test(e.message),
  );
});

test("a status over the limit not caught fails the workflow with the limit in its error", async () => {
  const handle = await client.startWorkflow(tooBig, null, { id: newId("st") });
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.match(e.message, /over the 65536-byte limit/);
    return true;
  });
  assert.deepEqual(await kinds(handle), []);
});

test("getStatus of an unknown workflow is NotFound; bad keys are InvalidArgument", async () => {
  await assert.rejects(client.getStatus(newId("nobody")), (e) => {
    assert.ok(e instanceof NotFound, String(e));
    assert.equal(e.code, "NOT_FOUND");
    return true;
  });
  await assert.rejects(client.getStatus(newId("nobody"), "stage"), InvalidArgument);
  await assert.rejects(client.getStatus(newId("nobody"), [1]), InvalidArgument);
  const handle = await client.startWorkflow(progress, { waits: 1 }, { id: newId("st") });
  await assert.rejects(handle.getStatus([""]), (e) => e instanceof InvalidArgument && /key/.test(e.message));
  await handle.signal("next", 1);
  assert.equal(await handle.result(), "ok");
});

test("signalWithStart starts the workflow once and delivers every event to its waits", async () => {
  const id = newId("swst");
  const first = await client.signalWithStart(cart, { waits: 2 }, { id, event: "add", payload: "book" });
  assert.equal(first.started, true);
  assert.equal(first.duplicate, false);
  assert.equal(first.workflow.workflowId, id);
  assert.equal(first.workflow.workflowName, "status_cart");
  assert.deepEqual(first.workflow.input, { waits: 2 });
  await eventually(async () => (await client.getStatus(id)).items === 1, "the first event to be taken");

  const second = await client.signalWithStart(cart, { waits: 99 }, { id, event: "add", payload: "pen" });
  assert.equal(second.started, false, "it exists: only the event is sent");
  assert.equal(second.duplicate, false);
  assert.deepEqual(second.workflow.input, { waits: 2 }, "it keeps its input");
  const handle = client.getHandle(id);
  assert.deepEqual(await handle.result(), { input: { waits: 2 }, got: ["book", "pen"] });
  assert.deepEqual(await kinds(handle), [
    "0 add EVENT_WAITING",
    "0 add EVENT_RECEIVED",
    "1 items STATUS_SET",
    "2 add EVENT_WAITING",
    "2 add EVENT_RECEIVED",
    "3 items STATUS_SET",
  ]);
});

test("concurrent signalWithStarts start one workflow and deliver every event", async () => {
  const id = newId("swst");
  const n = 5;
  const answers = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      client.signalWithStartByName("status_cart", 1, { waits: n }, { id, event: "add", payload: i }),
    ),
  );
  assert.equal(answers.filter((a) => a.started).length, 1, "one of them started it");
  assert.ok(answers.every((a) => !a.duplicate && a.workflow.workflowId === id));
  const { got } = await client.getHandle(id).result();
  assert.deepEqual(
    [...got].sort((x, y) => x - y),
    [0, 1, 2, 3, 4],
  );
});

test("signalWithStart with a key already delivered does not deliver again", async () => {
  const id = newId("swst");
  const options = { id, event: "add", payload: { sku: "book" }, key: "add-book" };
  const first = await client.signalWithStart(cart, { waits: 2 }, { ...options, startDelay: "1h" });
  assert.equal(first.started, true);
  assert.equal(first.workflow.status, "PENDING", "the start options apply to the start");
  assert.equal(typeof first.workflow.startAtMs, "number");
  assert.equal(first.workflow.inboxSize, 1, "a pending workflow keeps the event");
  const again = await client.signalWithStart(cart, { waits: 2 }, options);
  assert.equal(again.started, false);
  assert.equal(again.duplicate, true, "sent before: not delivered again");
  assert.equal(again.workflow.inboxSize, 1);
  const empty = await client.signalWithStart(cart, { waits: 2 }, { id, event: "add", payload: 2, key: "" });
  assert.equal(empty.duplicate, false, "an empty key is none");
  assert.equal(empty.workflow.inboxSize, 2);
  await client.cancelWorkflow(id, { reason: "done", cleanupMs: 0 });
});

test("signalWithStart sends an undefined input and no payload as undefined, as startWorkflow does", async () => {
  const id = newId("swst");
  const sent = await client.signalWithStart(cart, undefined, { id, event: "add" });
  assert.equal(sent.started, true);
  assert.equal(sent.workflow.input, undefined, "no input");
  // JSON has no undefined: the result array carries null for the payload.
  assert.deepEqual(await client.getHandle(id).result(), { input: "undefined", got: [null] });
  const received = (await client.history(id)).find((e) => e.kind === "EVENT_RECEIVED");
  assert.equal(received.value, undefined, "no payload");
});

test("signalWithStart to an ended workflow is NotRunning; without an id, InvalidArgument", async () => {
  const id = newId("swst");
  await client.signalWithStart(cart, { waits: 1 }, { id, event: "add", payload: 1 });
  assert.deepEqual(await client.getHandle(id).result(), { input: { waits: 1 }, got: [1] });
  await assert.rejects(client.signalWithStart(cart, { waits: 1 }, { id, event: "add", payload: 2 }), (e) => {
    assert.ok(e instanceof NotRunning, String(e));
    assert.equal(e.code, "NOT_RUNNING");
    assert.equal(e.workflowId, id);
    return true;
  });

  const invalid = (says) => (e) => {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.message, says);
    return true;
  };
  await assert.rejects(client.signalWithStart(cart, null, { event: "add" }), invalid(/needs an id/));
  await assert.rejects(client.signalWithStart(cart, null, { id: "", event: "add" }), invalid(/needs an id/));
  await assert.rejects(client.signalWithStart(cart, null, { id: newId(), event: 7 }), invalid(/event/));
  await assert.rejects(client.signalWithStart(cart, null, { id: newId(), event: "" }), invalid(/name/));
  await assert.rejects(
    client.signalWithStart(cart, null, { id: newId(), event: "add", key: 7 }),
    invalid(/key must be a string/),
  );
  await assert.rejects(
    client.signalWithStart(cart, null, { id: newId(), event: "add", executionTimeout: 0 }),
    invalid(/executionTimeout/),
  );
  await assert.rejects(
    client.signalWithStart(cart, { n: 1n }, { id: newId(), event: "add" }),
    invalid(/cannot encode its input/),
  );
  await assert.rejects(
    client.signalWithStart(cart, null, { id: newId(), event: "add", payload: { n: 1n } }),
    invalid(/cannot encode its payload/),
  );
});

test("with a codec that is not JSON, signalWithStart's input and status values are its bytes", async () => {
  const binary = await Client.connect(sidecar.url, { codec: tagged });
  const binaryWorker = await Worker.create(await Client.connect(sidecar.url, { codec: tagged }), {
    workflows: [binaryCart],
  });
  try {
    const id = newId("swst");
    const sent = await binary.signalWithStart(binaryCart, { n: 1 }, { id, event: "add", payload: "book" });
    assert.equal(sent.started, true);
    assert.deepEqual(sent.workflow.input, { n: 1 }, "decoded with the codec");
    assert.deepEqual(await binary.getHandle(id).result(), { input: { n: 1 }, got: "book" });
    assert.deepEqual(await binary.getStatus(id), { got: "book", input: { n: 1 }, nothing: undefined });
    // Stored as the codec encoded them: read back byte for byte.
    const raw = await Client.connect(sidecar.url, {
      codec: { encode: (v) => v, decode: (b) => Buffer.from(b) },
    });
    const values = (await raw.history(id)).filter((e) => e.kind === "STATUS_SET").map((e) => e.value);
    assert.deepEqual(values, [
      Buffer.concat([TAG, Buffer.from('{"n":1}')]),
      Buffer.alloc(0),
      Buffer.concat([TAG, Buffer.from('"book"')]),
    ]);
    assert.deepEqual((await raw.getWorkflow(id)).input, Buffer.concat([TAG, Buffer.from('{"n":1}')]));
  } finally {
    await binaryWorker.shutdown();
  }
});
