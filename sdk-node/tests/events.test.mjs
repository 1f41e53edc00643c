// Events against a real `raftoral serve`: a workflow waits durably for an
// event sent from outside (ctx.waitEvent, client.signalWorkflow,
// handle.signal). An event sent before the wait waits in the inbox and is
// consumed by it; events of a name come first in, first out; the same
// idempotency key twice delivers once; a wait whose timeout passes resolves
// with null and an event sent after it stays for the next wait; waits side
// by side take positions in call order; a cancel ends a wait. Refusals: bad
// timeouts at the call, an unknown and an ended workflow (distinct errors),
// a bad name, a payload over the limit, a full inbox. WorkflowInfo reports
// inboxSize and eventWaits; the history the EVENT_* entries.
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

let sidecar;
let client;
let worker;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"), ["--max-value-bytes", String(MAX_VALUE_BYTES)]);
  client = await Client.connect(sidecar.url);
  worker = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [collector, pair, refused, cancellable],
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
