// ctx.first: races durable operations started side by side; the winner is
// the one the history resolved first. On LocalNode: a timer that beats a
// step (the step runs on, its late result refused without an unhandled
// rejection), a step that beats a timer (the timer is cancelled: a
// TIMER_CANCELLED entry, no pending timer left, not listed as sleeping),
// and what first refuses. Event waits and awakeables raced with a sleep:
// an event that beats a 60 s sleep (TIMER_CANCELLED), a 200 ms sleep that
// beats a wait nobody answers (EVENT_WAIT_CANCELLED at the wait's
// position; the next wait of that name gets the event sent afterwards),
// an awakeable resolved through the client that beats a 60 s sleep.
// Against a sidecar: a replay on another worker picks the same winner
// without running the step again.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { Client, LocalNode, Worker, workflow } from "@raftoral/client";

import { eventually, named, singleNode, tempDir } from "./harness.mjs";

// A loser's rejection must never go unhandled: Node's default (an
// unhandled rejection is an uncaught exception) then fails this file, even
// after its last test. So no test here attaches a handler to a loser.

/** The losing operation's promise, by workflow id. */
const losers = new Map();
/** Executions of step `work`'s function, by workflow id. */
const worked = new Map();
/** Workflow ids whose step `work` finished its function. */
const finished = new Set();
/** Executions of the workflow function, by workflow id. */
const executions = new Map();

/**
 * A sleep `deadline` of `timerMs` (position 0) raced with step `work`
 * (position 1), which waits `stepMs` (or, with `gated`, for the latch
 * `ID work`); then step `after` (with `gated`, once the latch `ID after N`
 * opens, N the execution: 0, then 1 in a replay). Returns the winner's
 * index and value.
 */
const race = workflow("race", { version: 1 }, async (ctx, { timerMs, stepMs, gated }) => {
  const id = ctx.workflowId;
  const execution = executions.get(id) ?? 0;
  executions.set(id, execution + 1);
  const deadline = ctx.sleep(timerMs, { name: "deadline" });
  const work = ctx.checkpoint("work", async () => {
    worked.set(id, (worked.get(id) ?? 0) + 1);
    if (gated) await named(`${id} work`).opened;
    else await delay(stepMs);
    finished.add(id);
    return "worked";
  });
  const won = await ctx.first(deadline, work);
  losers.set(id, won.index === 0 ? work : deadline);
  await ctx.checkpoint("after", async () => {
    if (gated) await named(`${id} after ${execution}`).opened;
    return won.index;
  });
  // A sleep's value is undefined, which JSON drops: as text.
  return { index: won.index, value: String(won.value) };
});

/** What first refuses, by case: the error's class and message. */
const misuse = workflow("misuse", { version: 1 }, async (ctx) => {
  const errors = {};
  const grab = async (name, f) => {
    try {
      await f();
      errors[name] = "no error";
    } catch (e) {
      errors[name] = `${e.constructor.name}: ${e.message}`;
    }
  };
  await grab("plain", () => ctx.first(Promise.resolve(1)));
  await grab("value", () => ctx.first(42));
  await grab("none", () => ctx.first());
  const nap = ctx.sleep(0, { name: "nap" });
  await grab("twice", () => ctx.first(nap, nap));
  await grab("refused", () => ctx.first(ctx.sleep(-1)));
  await grab("derived", () => ctx.first(nap.then(() => 1)));
  const quick = ctx.checkpoint("quick", () => "q");
  const won = await ctx.first(nap, quick);
  const loser = won.index === 0 ? quick : nap;
  await grab("lost", () => ctx.first(loser));
  // A winner may be raced again: it is resolved already, so it wins.
  const again = await ctx.first(won.index === 0 ? nap : quick);
  return { errors, again: again.index };
});

/**
 * An event wait (position 0; with `awakeable`, an awakeable at 0 whose id
 * is the status `awakeable` at 1) raced with a sleep `race` of `timerMs`.
 * The wait wins: `{ winner: "event", value }`. The sleep wins: without
 * `awakeable`, one more wait for `name` (no timeout), `{ winner: "timer",
 * later }` with its payload; with it, `{ winner: "timer" }`.
 */
const waitRace = workflow("wait_race", { version: 1 }, async (ctx, { name, timerMs, awakeable }) => {
  let wait;
  if (awakeable) {
    const awk = ctx.awakeable();
    await ctx.setStatus("awakeable", awk.id);
    wait = awk.promise;
  } else {
    wait = ctx.waitEvent(name);
  }
  const sleep = ctx.sleep(timerMs, { name: "race" });
  const won = await ctx.first(wait, sleep);
  if (won.index === 0) return { winner: "event", value: won.value };
  if (awakeable) return { winner: "timer" };
  const later = await ctx.waitEvent(name);
  return { winner: "timer", later };
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [race, misuse, waitRace] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

/** The history as `[seq, name, kind]`, in commit order. */
const entries = async (handle) => (await handle.history()).map((e) => [e.seq, e.checkpointName, e.kind]);

/** The ids `listWorkflows({ sleeping: true })` lists (every page). */
async function sleeping(c) {
  const ids = [];
  let pageToken = "";
  do {
    const page = await c.listWorkflows({ sleeping: true, pageToken });
    ids.push(...page.workflows.map((w) => w.workflowId));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return ids;
}

test("a 200 ms timer beats a 5 s step: winner 0; the step runs on and its late result is dropped", {
  timeout: 30_000,
}, async () => {
  const began = performance.now();
  const handle = await client.startWorkflow(race, { timerMs: 200, stepMs: 5000 });
  assert.deepEqual(await handle.result(), { index: 0, value: "undefined" });
  const took = performance.now() - began;
  assert.ok(took >= 200 && took < 4000, `finished after ${took} ms`);
  assert.deepEqual(await entries(handle), [
    [0, "deadline", "TIMER_STARTED"],
    [0, "deadline", "TIMER_FIRED"],
    [2, "after", "VALUE"],
  ]);
  assert.deepEqual((await handle.get()).pendingTimers, []);
  // The loser runs on to its end; the workflow has finished by then, so
  // its commit is refused (a rejection first handles).
  assert.equal(worked.get(handle.workflowId), 1);
  await eventually(() => finished.has(handle.workflowId), "the losing step to finish", 10_000);
  assert.ok(!(await entries(handle)).some((e) => e[0] === 1), "no entry at the loser's position");
});

test("a step beats a 60 s timer: winner 1; the timer is cancelled and no longer pending", {
  timeout: 30_000,
}, async () => {
  const handle = await client.startWorkflow(race, { timerMs: 60_000, gated: true });
  const id = handle.workflowId;
  // Before the race is decided: the timer is pending, the workflow sleeping.
  let pending;
  await eventually(async () => {
    pending = (await handle.get()).pendingTimers;
    return pending.length > 0;
  }, "the timer to start");
  assert.equal(pending.length, 1);
  assert.equal(pending[0].seq, 0);
  assert.equal(pending[0].name, "deadline");
  const started = (await handle.history()).find((e) => e.kind === "TIMER_STARTED");
  assert.equal(pending[0].fireAtMs, started.fireAtMs);
  assert.equal(started.fireAtMs, started.committedAtMs + 60_000);
  assert.ok((await sleeping(client)).includes(id), "listed as sleeping");
  // The step finishes: it wins, and the timer is cancelled.
  named(`${id} work`).open();
  await eventually(
    async () => (await entries(handle)).some((e) => e[2] === "TIMER_CANCELLED"),
    "the timer to be cancelled",
  );
  // Still running (in `after`), with no timer left.
  const info = await handle.get();
  assert.equal(info.status, "RUNNING");
  assert.deepEqual(info.pendingTimers, []);
  assert.ok(!(await sleeping(client)).includes(id), "no longer listed as sleeping");
  named(`${id} after 0`).open();
  assert.deepEqual(await handle.result(), { index: 1, value: "worked" });
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => [e.seq, e.checkpointName, e.kind]),
    [
      [0, "deadline", "TIMER_STARTED"],
      [1, "work", "VALUE"],
      [0, "deadline", "TIMER_CANCELLED"],
      [2, "after", "VALUE"],
    ],
  );
  const cancelled = history[2];
  assert.equal(cancelled.fireAtMs, started.fireAtMs, "the deadline it would have fired at");
  assert.equal(cancelled.value, undefined);
  assert.equal(history[1].value, "worked");
  // On the owner, the losing sleep's promise resolves with its cancellation.
  assert.equal(await losers.get(id), undefined);
});

test("first refuses what is not a durable operation of this workflow", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(misuse, null);
  const { errors, again } = await handle.result();
  const promises = /^TypeError: first\(\) takes the promises of this workflow's ctx.sleep/;
  assert.match(errors.plain, promises);
  assert.match(errors.plain, /argument 0 is another promise/);
  assert.match(errors.value, /argument 0 is number/);
  assert.match(errors.derived, /argument 0 is another promise/);
  assert.match(errors.lost, /argument 0 is an operation that lost a race/);
  assert.equal(errors.none, "InvalidArgument: first() needs at least one operation");
  assert.match(errors.twice, /^InvalidArgument: first\(\) got the operation at position 0 twice/);
  // A sleep refused before it took a position: its own error.
  assert.match(errors.refused, /^InvalidArgument: .*negative/);
  assert.equal(again, 0);
  // Positions: nap (0), quick (1); the refused sleep took none.
  const seqs = [...new Set((await entries(handle)).map((e) => `${e[0]} ${e[1]}`))].sort();
  assert.deepEqual(seqs, ["0 nap", "1 quick"]);
});

test("a replay on another worker picks the same winner without running the step again", {
  timeout: 60_000,
}, async () => {
  const sidecar = await singleNode(join(tempDir(), "sidecar"));
  try {
    const c = await Client.connect(sidecar.url);
    const first = await Worker.create(await Client.connect(sidecar.url), {
      workflows: [race],
      shutdownGraceMs: 10,
    });
    let handle;
    try {
      handle = await c.startWorkflow(race, { timerMs: 60_000, gated: true });
      await eventually(
        async () => (await entries(handle)).some((e) => e[2] === "TIMER_STARTED"),
        "the timer to start",
      );
      named(`${handle.workflowId} work`).open();
      await eventually(
        async () => (await entries(handle)).some((e) => e[2] === "TIMER_CANCELLED"),
        "the timer to be cancelled",
      );
    } finally {
      await first.shutdown();
    }
    // The second worker replays the race (the step's value, then the
    // cancellation) and runs `after` (the first one's stays blocked).
    named(`${handle.workflowId} after 1`).open();
    const second = await Worker.create(c, { workflows: [race] });
    try {
      assert.deepEqual(await handle.result(), { index: 1, value: "worked" });
    } finally {
      await second.shutdown();
    }
    assert.equal(worked.get(handle.workflowId), 1, "the step ran once");
    assert.equal(executions.get(handle.workflowId), 2);
    assert.deepEqual(
      (await handle.history()).map((e) => [e.seq, e.checkpointName, e.kind]),
      [
        [0, "deadline", "TIMER_STARTED"],
        [1, "work", "VALUE"],
        [0, "deadline", "TIMER_CANCELLED"],
        [2, "after", "VALUE"],
      ],
    );
  } finally {
    await sidecar.kill();
  }
});

/** Polls the history of `handle` until `check(entries)` holds; returns them. */
async function historyUntil(handle, check, what) {
  let seen = [];
  await eventually(async () => {
    seen = await entries(handle);
    return check(seen);
  }, what);
  return seen;
}

const has = (seq, kind) => (es) => es.some((e) => e[0] === seq && e[2] === kind);

test("an event beats a 60 s sleep: the wait wins with its payload; the sleep is cancelled", {
  timeout: 30_000,
}, async () => {
  const handle = await client.startWorkflow(waitRace, { name: "approval", timerMs: 60_000 });
  await historyUntil(
    handle,
    (es) => has(0, "EVENT_WAITING")(es) && has(1, "TIMER_STARTED")(es),
    "the wait and the sleep to start",
  );
  await handle.signal("approval", { approved: true });
  assert.deepEqual(await handle.result(), { winner: "event", value: { approved: true } });
  const history = await entries(handle);
  assert.deepEqual(history.slice(0, 2).sort(), [
    [0, "approval", "EVENT_WAITING"],
    [1, "race", "TIMER_STARTED"],
  ]);
  assert.deepEqual(history.slice(2), [
    [0, "approval", "EVENT_RECEIVED"],
    [1, "race", "TIMER_CANCELLED"],
  ]);
  assert.deepEqual((await handle.get()).pendingTimers, []);
});

test("a 200 ms sleep beats a wait nobody answers: EVENT_WAIT_CANCELLED; the next wait gets the event", {
  timeout: 30_000,
}, async () => {
  const handle = await client.startWorkflow(waitRace, { name: "approval", timerMs: 200 });
  // The sleep won, the losing wait is cancelled, and the second wait of
  // the name is open before the event is sent.
  await historyUntil(
    handle,
    (es) => has(0, "EVENT_WAIT_CANCELLED")(es) && has(2, "EVENT_WAITING")(es),
    "the losing wait to be cancelled and the next wait to start",
  );
  await eventually(
    async () => (await handle.get()).eventWaits.some((w) => w.seq === 2),
    "the second wait to be listed",
  );
  assert.ok(!(await handle.get()).eventWaits.some((w) => w.seq === 0), "the cancelled wait is not listed");
  await handle.signal("approval", "late");
  assert.deepEqual(await handle.result(), { winner: "timer", later: "late" });
  const history = await handle.history();
  const rows = history.map((e) => [e.seq, e.checkpointName, e.kind]);
  assert.deepEqual(rows.slice(0, 2).sort(), [
    [0, "approval", "EVENT_WAITING"],
    [1, "race", "TIMER_STARTED"],
  ]);
  assert.deepEqual(rows.slice(2), [
    [1, "race", "TIMER_FIRED"],
    [0, "approval", "EVENT_WAIT_CANCELLED"],
    [2, "approval", "EVENT_WAITING"],
    [2, "approval", "EVENT_RECEIVED"],
  ]);
  // The cancel of an open wait gave nothing back.
  assert.equal(history[3].value, undefined);
  assert.equal(history[5].value, "late");
  assert.equal((await handle.get()).inboxSize, 0);
});

test("an awakeable resolved through the client beats a 60 s sleep", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(waitRace, { name: "unused", timerMs: 60_000, awakeable: true });
  await historyUntil(handle, has(2, "TIMER_STARTED"), "the sleep to start");
  const { awakeable } = await client.getStatus(handle.workflowId, ["awakeable"]);
  assert.equal(awakeable, `awk/0/${handle.workflowId}`);
  await client.resolveAwakeable(awakeable, { receipt: "r-9" });
  assert.deepEqual(await handle.result(), { winner: "event", value: { receipt: "r-9" } });
  const history = await entries(handle);
  const name = "raftoral.awakeable.0";
  assert.deepEqual(history.slice(0, 2).sort(), [
    [0, name, "EVENT_WAITING"],
    [1, "awakeable", "STATUS_SET"],
  ]);
  assert.deepEqual(history.slice(-3), [
    [2, "race", "TIMER_STARTED"],
    [0, name, "EVENT_RECEIVED"],
    [2, "race", "TIMER_CANCELLED"],
  ]);
  assert.ok(!has(0, "EVENT_WAIT_CANCELLED")(history), "the winner is not cancelled");
  assert.deepEqual((await handle.get()).pendingTimers, []);
});
