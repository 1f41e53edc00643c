// Events against a real `raftoral serve`: a workflow waits durably for an
// event sent from outside (ctx.waitEvent, client.signalWorkflow,
// handle.signal). An event sent before the wait waits in the inbox and is
// consumed by it; events of a name come first in, first out; the same
// idempotency key twice delivers once; a wait whose timeout passes resolves
// with null and an event sent after it stays for the next wait; waits side
// by side take positions in call order; a cancel ends a wait. Refusals: bad
// timeouts at the call, an unknown and an ended workflow (distinct errors),
// a bad name, a payload over the limit, a full inbox. WorkflowInfo reports
// inboxSize and eventWaits; the history the EVENT_* entries. The async
// iterable ctx.events: items in order (those sent before it included), a
// timeout ends it (the late event goes to the next wait), a break leaves
// the later events in the inbox, the history is that of plain waits, a
// null payload is an item, refusals at the call, ctx.first refuses an
// item, a cancel ends it after throwing.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  Cancelled,
  Client,
  InvalidArgument,
  NotFound,
  NotRunning,
  RaftoralError,
  ResourceExhausted,
  Worker,
  workflow,
} from "@raftoral/client";

import { eventually, named, newId, singleNode, tempDir } from "./harness.mjs";

/** The sidecar's value limit in these tests (`--max-value-bytes`). */
const MAX_VALUE_BYTES = 4096;

/** The engine's limit on the events an inbox holds. */
const MAX_INBOX_EVENTS = 1000;

/** What the workflows saw, by workflow id. */
const seen = new Map();

/**
 * Step `gate` (waits for the test's latch `ID gate` when `gated`), then one
 * wait for event `name` per entry of `waits` (its timeout, or null for
 * none), each after step `between-i` when `pauseBetween` (it waits for the
 * latch `ID between-i`). Returns the payloads (null: timed out).
 */
const collector = workflow(
  "events_collector",
  { version: 1 },
  async (ctx, { name, waits, gated, pauseBetween }) => {
    const id = ctx.workflowId;
    await ctx.checkpoint("gate", async () => {
      if (gated) await named(`${id} gate`).opened;
      return true;
    });
    const got = [];
    for (const [i, timeout] of waits.entries()) {
      if (pauseBetween && i > 0) {
        await ctx.checkpoint(`between-${i}`, async () => {
          await named(`${id} between-${i}`).opened;
          return true;
        });
      }
      const options = timeout === null ? undefined : { timeout };
      got.push(await ctx.waitEvent(name, options));
    }
    return got;
  },
);

/** Two waits side by side (`a` then `b`). */
const pair = workflow("events_pair", { version: 1 }, async (ctx) => {
  const [a, b] = await Promise.all([ctx.waitEvent("a"), ctx.waitEvent("b")]);
  return { a, b };
});

/** Calls waitEvent with bad timeouts and a bad name, noting each error and whether it was thrown at the call. */
const refused = workflow("events_refused", { version: 1 }, async (ctx) => {
  const errors = [];
  const bad = [
    ["approval", { timeout: -1 }],
    ["approval", { timeout: "-5s" }],
    ["approval", { timeout: 366 * 24 * 3600 * 1000 + 1 }],
    ["approval", { timeout: "367d" }],
    ["approval", { timeout: "soon" }],
    ["approval", { timeout: Number.NaN }],
    ["approval", { timeout: Number.POSITIVE_INFINITY }],
    ["", undefined],
  ];
  for (const [name, options] of bad) {
    let thrown;
    try {
      const p = ctx.waitEvent(name, options);
      // Not thrown: the wait must not linger.
      p.catch(() => {});
      thrown = "not thrown";
    } catch (e) {
      thrown = e;
    }
    errors.push(thrown);
  }
  seen.set(ctx.workflowId, errors);
  return ctx.checkpoint("after", () => "went on");
});

/** A wait without a timeout; a Cancelled there is noted and thrown again. */
const cancellable = workflow("events_cancellable", { version: 1 }, async (ctx) => {
  try {
    return await ctx.waitEvent("never");
  } catch (e) {
    seen.set(ctx.workflowId, e);
    throw e;
  }
});

/**
 * Step `gate` (waits for the latch `ID gate` when `gated`), then the items
 * of `ctx.events(name, { timeout })` (no timeout when it is null) until it
 * ends or `take` items came (`take` null: no limit). Then, when
 * `waitsAfter` is a number, step `after` (opens the latch `ID at after`,
 * then waits for the latch `ID after`) and `waitsAfter` plain waits for
 * `name`. Returns the items, whether the iteration ended by itself, and
 * what the plain waits got.
 */
const streamer = workflow("events_stream", { version: 1 }, async (ctx, inp) => {
  const { name, take, timeout, gated, waitsAfter } = inp;
  const id = ctx.workflowId;
  await ctx.checkpoint("gate", async () => {
    if (gated) await named(`${id} gate`).opened;
    return true;
  });
  const items = [];
  let ended = true;
  if (take !== 0) {
    for await (const item of ctx.events(name, timeout === null ? undefined : { timeout })) {
      // Kept as it came: undefined (no payload) apart from null.
      items.push(item === undefined ? "<undefined>" : item);
      if (items.length === take) {
        ended = false;
        break;
      }
    }
  }
  const rest = [];
  if (typeof waitsAfter === "number") {
    await ctx.checkpoint("after", async () => {
      named(`${id} at after`).open();
      await named(`${id} after`).opened;
      return true;
    });
    for (let i = 0; i < waitsAfter; i++) rest.push(await ctx.waitEvent(name));
  }
  return { items, ended, rest };
});

/**
 * Calls ctx.events with a bad name and bad timeouts (noting each error and
 * whether it was thrown at the call), races an item with ctx.first (noting
 * the error), then step `after`.
 */
const streamRefused = workflow("events_stream_refused", { version: 1 }, async (ctx) => {
  const errors = [];
  for (const [name, options] of [
    ["", undefined],
    ["x", { timeout: -1 }],
    ["x", { timeout: "367d" }],
    ["x", { timeout: Number.POSITIVE_INFINITY }],
    ["x", { timeout: "soon" }],
  ]) {
    try {
      ctx.events(name, options);
      errors.push("not thrown");
    } catch (e) {
      errors.push(e);
    }
  }
  // An item is a wait: its position is taken by next(), and it times out.
  const items = ctx.events("x", { timeout: 1 });
  const item = items.next();
  try {
    await ctx.first(item);
    errors.push("not thrown");
  } catch (e) {
    errors.push(e);
  }
  const end = await item;
  const again = await items.next();
  seen.set(ctx.workflowId, { errors, end, again });
  return ctx.checkpoint("after", () => "went on");
});

/** An iteration without a timeout; a Cancelled there is noted with what next() gives after it, and thrown again. */
const streamCancellable = workflow("events_stream_cancellable", { version: 1 }, async (ctx) => {
  const items = ctx.events("never");
  try {
    for await (const item of items) return item;
  } catch (e) {
    seen.set(ctx.workflowId, { error: e, after: await items.next() });
    throw e;
  }
  return "ended";
});

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"), ["--max-value-bytes", String(MAX_VALUE_BYTES)]);
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [collector, pair, refused, cancellable, streamer, streamRefused, streamCancellable],
  });
});

after(async () => {
  await worker.shutdown();
  await sidecar.kill();
});

/** The history as `seq name kind`, in commit order. */
const kinds = async (handle) => (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);

/** Starts the collector and waits until its code blocks in step `gate`. */
async function gated(name, waits, extra = {}) {
  const handle = await client.startWorkflow(
    collector,
    { name, waits, gated: true, ...extra },
    { id: newId("ev") },
  );
  await eventually(async () => (await handle.get()).status === "RUNNING", "the workflow to run");
  return handle;
}

test("an event sent before the wait waits in the inbox and is consumed by it", async () => {
  const handle = await gated("approval", [null]);
  const sent = await handle.signal("approval", { approved: true, by: "ann" });
  assert.equal(sent.duplicate, false);
  assert.equal(sent.workflow.workflowId, handle.workflowId);
  assert.equal(sent.workflow.inboxSize, 1, "kept in the inbox: no wait yet");
  assert.deepEqual(sent.workflow.eventWaits, []);
  const info = await handle.get();
  assert.equal(info.inboxSize, 1);

  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), [{ approved: true, by: "ann" }]);
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`),
    ["0 gate VALUE", "1 approval EVENT_WAITING", "1 approval EVENT_RECEIVED"],
  );
  const received = history[2];
  assert.deepEqual(received.value, { approved: true, by: "ann" }, "the payload, decoded");
  assert.equal(received.fireAtMs, undefined, "no timeout");
  assert.equal(history[1].value, undefined);
});

test("a wait open before the event consumes it at once; eventWaits lists it with its timeout", async () => {
  const id = newId("ev");
  const handle = await client.startWorkflow(collector, { name: "approval", waits: ["1h"] }, { id });
  await eventually(async () => (await handle.get()).eventWaits.length === 1, "the wait to be committed");
  const info = await handle.get();
  assert.equal(info.inboxSize, 0);
  const [wait] = info.eventWaits;
  assert.equal(wait.seq, 1);
  assert.equal(wait.name, "approval");
  assert.equal(typeof wait.timeoutAtMs, "number");
  const hour = 3600 * 1000;
  assert.ok(
    wait.timeoutAtMs > Date.now() + hour - 60_000 && wait.timeoutAtMs <= Date.now() + hour + 60_000,
    `timeoutAtMs ${wait.timeoutAtMs} is an hour ahead`,
  );
  assert.equal(info.pendingTimers.length, 0, "a wait's timeout is not a sleep");

  // Through the client, without a handle.
  const sent = await client.signalWorkflow(id, "approval", "yes");
  assert.equal(sent.duplicate, false);
  assert.equal(sent.workflow.inboxSize, 0, "consumed by the open wait, never in the inbox");
  assert.deepEqual(await handle.result(), ["yes"]);
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`),
    ["0 gate VALUE", "1 approval EVENT_WAITING", "1 approval EVENT_RECEIVED"],
  );
  assert.equal(history[1].fireAtMs, wait.timeoutAtMs, "the wait's deadline");
});

test("an empty idempotency key is none: both events are delivered", async () => {
  const handle = await gated("tick", [null, null]);
  assert.equal((await handle.signal("tick", 1, { idempotencyKey: "" })).duplicate, false);
  assert.equal((await handle.signal("tick", 2, { idempotencyKey: "" })).duplicate, false);
  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), [1, 2]);
});

test("events of a name are consumed first in, first out; other names wait apart", async () => {
  const handle = await gated("item", [null, null]);
  assert.equal((await handle.signal("item", { n: 1 })).workflow.inboxSize, 1);
  assert.equal((await handle.signal("other", { n: 99 })).workflow.inboxSize, 2);
  assert.equal((await handle.signal("item", { n: 2 })).workflow.inboxSize, 3);
  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), [{ n: 1 }, { n: 2 }]);
});

test("the same idempotency key twice delivers once", async () => {
  // Two waits: the first gets the one delivery, the second times out.
  const handle = await gated("pay", [null, 300]);
  const first = await handle.signal("pay", { amount: 5 }, { idempotencyKey: "pay-1" });
  assert.equal(first.duplicate, false);
  assert.equal(first.workflow.inboxSize, 1);
  const again = await client.signalWorkflow(
    handle.workflowId,
    "pay",
    { amount: 5 },
    { idempotencyKey: "pay-1" },
  );
  assert.equal(again.duplicate, true, "sent before: not delivered again");
  assert.equal(again.workflow.inboxSize, 1);
  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), [{ amount: 5 }, null]);
  assert.deepEqual(await kinds(handle), [
    "0 gate VALUE",
    "1 pay EVENT_WAITING",
    "1 pay EVENT_RECEIVED",
    "2 pay EVENT_WAITING",
    "2 pay EVENT_TIMED_OUT",
  ]);
});

test("a wait whose timeout passes resolves with null; an event sent after it stays for the next wait", async () => {
  const handle = await client.startWorkflow(
    collector,
    { name: "reply", waits: [200, null], pauseBetween: true },
    { id: newId("ev") },
  );
  const id = handle.workflowId;
  await eventually(
    async () => (await kinds(handle)).includes("1 reply EVENT_TIMED_OUT"),
    "the first wait to time out",
  );
  const sent = await handle.signal("reply", "late");
  assert.equal(sent.duplicate, false);
  assert.equal(sent.workflow.inboxSize, 1, "the timed-out wait does not take it");
  assert.deepEqual(sent.workflow.eventWaits, []);
  named(`${id} between-1`).open();
  assert.deepEqual(await handle.result(), [null, "late"]);
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`),
    [
      "0 gate VALUE",
      "1 reply EVENT_WAITING",
      "1 reply EVENT_TIMED_OUT",
      "2 between-1 VALUE",
      "3 reply EVENT_WAITING",
      "3 reply EVENT_RECEIVED",
    ],
  );
  const timedOut = history[2];
  assert.equal(timedOut.value, undefined);
  assert.equal(typeof timedOut.fireAtMs, "number");
  assert.ok(timedOut.committedAtMs >= timedOut.fireAtMs, "timed out at its deadline, not before");
});

test("waits side by side take positions in call order and get their own events", async () => {
  const handle = await client.startWorkflow(pair, null, { id: newId("ev") });
  await eventually(async () => (await handle.get()).eventWaits.length === 2, "both waits to be committed");
  assert.deepEqual(
    (await handle.get()).eventWaits.map((w) => [w.seq, w.name, w.timeoutAtMs]),
    [
      [0, "a", undefined],
      [1, "b", undefined],
    ],
  );
  await handle.signal("b", "bee");
  await handle.signal("a", "ay");
  assert.deepEqual(await handle.result(), { a: "ay", b: "bee" });
  const history = await kinds(handle);
  assert.deepEqual(history.slice(0, 2).sort(), ["0 a EVENT_WAITING", "1 b EVENT_WAITING"]);
  assert.deepEqual(history.slice(2), ["1 b EVENT_RECEIVED", "0 a EVENT_RECEIVED"]);
});

test("an event without a payload resolves the wait with undefined, not null", async () => {
  const handle = await gated("ping", [null]);
  await handle.signal("ping");
  named(`${handle.workflowId} gate`).open();
  // JSON has no undefined: the result array carries null for it.
  const info = await handle.wait(30_000);
  assert.equal(info.status, "COMPLETED");
  assert.deepEqual(info.result, [null]);
  const received = (await handle.history()).find((e) => e.kind === "EVENT_RECEIVED");
  assert.equal(received.value, undefined);
});

test("bad timeouts and names throw InvalidArgument at the call, before any position is taken", async () => {
  const handle = await client.startWorkflow(refused, null, { id: newId("ev") });
  assert.equal(await handle.result(), "went on");
  const errors = seen.get(handle.workflowId);
  for (const e of errors) {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
  }
  const messages = errors.map((e) => e.message);
  assert.match(messages[0], /negative/);
  assert.match(messages[1], /negative/);
  assert.match(messages[2], /366 days/);
  assert.match(messages[3], /366 days/);
  assert.match(messages[4], /'soon' is not a duration/);
  assert.match(messages[5], /NaN/);
  assert.match(messages[6], /366 days/);
  assert.match(messages[7], /non-empty/);
  assert.deepEqual(await kinds(handle), ["0 after VALUE"], "no position was taken");
});

test("a cancel ends a wait with Cancelled", async () => {
  const handle = await client.startWorkflow(cancellable, null, { id: newId("ev") });
  await eventually(async () => (await handle.get()).eventWaits.length === 1, "the wait to be committed");
  await handle.cancel({ reason: "no answer coming", cleanupMs: 10_000 });
  await assert.rejects(handle.result(), (e) => e instanceof Cancelled && e.reason === "no answer coming");
  const caught = seen.get(handle.workflowId);
  assert.ok(caught instanceof Cancelled, String(caught));
  assert.deepEqual(await kinds(handle), ["0 never EVENT_WAITING", "0 never STEP_FAILED"]);
});

test("a signal to an unknown workflow and to an ended one fail with distinct errors", async () => {
  await assert.rejects(client.signalWorkflow(newId("nobody"), "approval", true), (e) => {
    assert.ok(e instanceof NotFound, String(e));
    assert.equal(e.code, "NOT_FOUND");
    return true;
  });

  const done = await gated("x", []);
  named(`${done.workflowId} gate`).open();
  assert.deepEqual(await done.result(), []);
  await assert.rejects(done.signal("x", 1), (e) => {
    assert.ok(e instanceof NotRunning, String(e));
    assert.equal(e.code, "NOT_RUNNING");
    assert.equal(e.workflowId, done.workflowId);
    assert.match(e.message, /has ended/);
    assert.match(e.message, /completed/i);
    return true;
  });

  // A cancelled one has ended too.
  const gone = await gated("x", [null]);
  await gone.cancel({ reason: "stop", cleanupMs: 0 });
  await assert.rejects(gone.signal("x", 1), (e) => e instanceof NotRunning && /cancelled/i.test(e.message));
});

test("a bad event name, a bad key and a payload over the limit are refused with InvalidArgument", async () => {
  const handle = await gated("big", [null]);
  const invalid = (says) => (e) => {
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.message, says);
    return true;
  };
  await assert.rejects(handle.signal("", 1), invalid(/name/));
  await assert.rejects(handle.signal("n".repeat(257), 1), invalid(/name/));
  await assert.rejects(handle.signal("big", 1, { idempotencyKey: 7 }), invalid(/idempotencyKey/));
  await assert.rejects(handle.signal("big", { n: 1n }), invalid(/cannot encode/));
  await assert.rejects(handle.signal("big", "x".repeat(MAX_VALUE_BYTES + 10)), invalid(/payload/));
  const info = await handle.get();
  assert.equal(info.inboxSize, 0, "nothing refused was kept");
  // Just under the limit is fine.
  const fits = "y".repeat(MAX_VALUE_BYTES - 100);
  assert.equal((await handle.signal("big", fits)).workflow.inboxSize, 1);
  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), [fits]);
});

test("a pending workflow keeps events; a full inbox refuses more with ResourceExhausted", {
  timeout: 120_000,
}, async () => {
  const handle = await client.startWorkflow(
    collector,
    { name: "n", waits: [null] },
    { id: newId("ev"), startDelay: "1h" },
  );
  assert.equal((await handle.get()).status, "PENDING");
  const batch = 100;
  for (let i = 0; i < MAX_INBOX_EVENTS; i += batch) {
    await Promise.all(Array.from({ length: batch }, (_, j) => handle.signal("n", i + j)));
  }
  assert.equal((await handle.get()).inboxSize, MAX_INBOX_EVENTS);
  await assert.rejects(handle.signal("n", "one too many"), (e) => {
    assert.ok(e instanceof ResourceExhausted, String(e));
    assert.ok(e instanceof RaftoralError);
    assert.equal(e.code, "RESOURCE_EXHAUSTED");
    assert.match(e.message, /inbox/);
    assert.match(e.message, /full/);
    return true;
  });
  await handle.cancel({ reason: "done", cleanupMs: 0 });
});

/** Starts the streamer (`gated` unless said otherwise) and waits until it runs. */
async function streaming(inp) {
  const handle = await client.startWorkflow(
    streamer,
    { take: null, timeout: null, gated: true, waitsAfter: null, ...inp },
    { id: newId("evs") },
  );
  await eventually(async () => (await handle.get()).status === "RUNNING", "the workflow to run");
  return handle;
}

test("ctx.events yields the events of a name in order, those sent before it starts first", async () => {
  const handle = await streaming({ name: "item", take: 4 });
  const id = handle.workflowId;
  await handle.signal("item", "a");
  await handle.signal("other", "not an item");
  await handle.signal("item", { n: 2 });
  assert.equal((await handle.get()).inboxSize, 3);
  named(`${id} gate`).open();
  // The two sent before are taken; the third item waits for its event.
  await eventually(
    async () => (await handle.get()).eventWaits.some((w) => w.seq === 3 && w.name === "item"),
    "the third item's wait",
  );
  await handle.signal("item", "c");
  await handle.signal("item", "d");
  assert.deepEqual(await handle.result(), { items: ["a", { n: 2 }, "c", "d"], ended: false, rest: [] });
  assert.deepEqual(await kinds(handle), [
    "0 gate VALUE",
    "1 item EVENT_WAITING",
    "1 item EVENT_RECEIVED",
    "2 item EVENT_WAITING",
    "2 item EVENT_RECEIVED",
    "3 item EVENT_WAITING",
    "3 item EVENT_RECEIVED",
    "4 item EVENT_WAITING",
    "4 item EVENT_RECEIVED",
  ]);
});

test("a null payload is an item of ctx.events, and so is an event without one: only a timeout ends it", async () => {
  const handle = await streaming({ name: "n", timeout: 300 });
  await handle.signal("n", null);
  await handle.signal("n");
  await handle.signal("n", 0);
  named(`${handle.workflowId} gate`).open();
  assert.deepEqual(await handle.result(), { items: [null, "<undefined>", 0], ended: true, rest: [] });
  assert.deepEqual((await kinds(handle)).slice(-2), ["4 n EVENT_WAITING", "4 n EVENT_TIMED_OUT"]);
});

test("a timeout ends ctx.events; an event sent after it goes to the next wait", async () => {
  const handle = await streaming({ name: "reply", timeout: 200, waitsAfter: 1 });
  const id = handle.workflowId;
  await handle.signal("reply", "first");
  named(`${id} gate`).open();
  await eventually(
    async () => (await kinds(handle)).includes("2 reply EVENT_TIMED_OUT"),
    "the second item's wait to time out",
  );
  const sent = await handle.signal("reply", "late");
  assert.equal(sent.workflow.inboxSize, 1, "the timed-out wait does not take it");
  assert.deepEqual(sent.workflow.eventWaits, [], "the ended iteration waits no more");
  named(`${id} after`).open();
  assert.deepEqual(await handle.result(), { items: ["first"], ended: true, rest: ["late"] });
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`),
    [
      "0 gate VALUE",
      "1 reply EVENT_WAITING",
      "1 reply EVENT_RECEIVED",
      "2 reply EVENT_WAITING",
      "2 reply EVENT_TIMED_OUT",
      "3 after VALUE",
      "4 reply EVENT_WAITING",
      "4 reply EVENT_RECEIVED",
    ],
  );
  const timedOut = history[4];
  assert.ok(timedOut.committedAtMs >= timedOut.fireAtMs, "timed out at its deadline, not before");
});

test("breaking out of ctx.events after K items leaves the later events in the inbox", async () => {
  const handle = await streaming({ name: "job", take: 2, waitsAfter: 1 });
  const id = handle.workflowId;
  for (const job of ["j1", "j2", "j3", "j4"]) await handle.signal("job", job);
  named(`${id} gate`).open();
  // Blocked in step `after`, past the break: no wait was taken ahead.
  await named(`${id} at after`).opened;
  const info = await handle.get();
  assert.equal(info.inboxSize, 2, "j3 and j4 stay in the inbox");
  assert.deepEqual(info.eventWaits, []);
  named(`${id} after`).open();
  assert.deepEqual(await handle.result(), { items: ["j1", "j2"], ended: false, rest: ["j3"] });
  assert.deepEqual(await kinds(handle), [
    "0 gate VALUE",
    "1 job EVENT_WAITING",
    "1 job EVENT_RECEIVED",
    "2 job EVENT_WAITING",
    "2 job EVENT_RECEIVED",
    "3 after VALUE",
    "4 job EVENT_WAITING",
    "4 job EVENT_RECEIVED",
  ]);
});

test("the history of K items of ctx.events is that of K plain waits", async () => {
  // The same events, sent the same way, to a stream with a timeout and to
  // the collector's plain waits with that timeout.
  const stream = await streaming({ name: "e", timeout: 300 });
  const plain = await gated("e", [300, 300, 300]);
  for (const handle of [stream, plain]) {
    await handle.signal("e", 1);
    await handle.signal("e", { two: 2 });
    named(`${handle.workflowId} gate`).open();
  }
  assert.deepEqual(await stream.result(), { items: [1, { two: 2 }], ended: true, rest: [] });
  assert.deepEqual(await plain.result(), [1, { two: 2 }, null]);
  const entries = async (handle) =>
    (await handle.history()).map((e) => [e.seq, e.checkpointName, e.kind, e.value, e.fireAtMs === undefined]);
  const history = await entries(stream);
  assert.deepEqual(history, await entries(plain));
  assert.equal(history.length, 7, "the gate, then three waits");
});

test("ctx.events refuses a bad name or timeout at the call; ctx.first refuses an item; a timed-out one ends it", async () => {
  const handle = await client.startWorkflow(streamRefused, null, { id: newId("evs") });
  assert.equal(await handle.result(), "went on");
  const { errors, end, again } = seen.get(handle.workflowId);
  const [name, negative, tooLong, infinite, unreadable, raced] = errors;
  for (const e of [name, negative, tooLong, infinite, unreadable]) {
    assert.ok(e instanceof InvalidArgument, String(e));
  }
  assert.match(name.message, /non-empty/);
  assert.match(negative.message, /negative/);
  assert.match(tooLong.message, /366 days/);
  assert.match(infinite.message, /366 days/);
  assert.match(unreadable.message, /'soon' is not a duration/);
  assert.ok(raced instanceof TypeError, String(raced));
  assert.match(raced.message, /argument 0 is the next item of ctx.events, which cannot be raced/);
  assert.deepEqual(end, { done: true, value: undefined });
  assert.deepEqual(again, { done: true, value: undefined }, "an ended iteration takes no position");
  assert.deepEqual(await kinds(handle), ["0 x EVENT_WAITING", "0 x EVENT_TIMED_OUT", "1 after VALUE"]);
});

test("a cancel ends ctx.events after it throws Cancelled", async () => {
  const handle = await client.startWorkflow(streamCancellable, null, { id: newId("evs") });
  await eventually(async () => (await handle.get()).eventWaits.length === 1, "the wait to be committed");
  await handle.cancel({ reason: "no more items", cleanupMs: 10_000 });
  await assert.rejects(handle.result(), (e) => e instanceof Cancelled && e.reason === "no more items");
  const { error, after: next } = seen.get(handle.workflowId);
  assert.ok(error instanceof Cancelled, String(error));
  assert.deepEqual(next, { done: true, value: undefined }, "no wait after the error");
  assert.deepEqual(await kinds(handle), ["0 never EVENT_WAITING", "0 never STEP_FAILED"]);
});
