// Durable timers (ctx.sleep, ctx.sleepUntil): committed with their deadline
// and fired by the cluster. On LocalNode: a sleep ends after its duration
// and records TIMER_STARTED and TIMER_FIRED, bad durations are refused
// before any position is taken, sleepUntil a past instant ends at once,
// sleeps and steps side by side take positions in call order, a
// cancellation ends a sleep. Against a sidecar: a worker stopped mid-sleep
// leaves the timer to the next worker, which does not start it again, and a
// sleep where the history has a step is non-determinism.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  Cancelled,
  Client,
  InvalidArgument,
  LocalNode,
  NonDeterminism,
  parseDuration,
  Worker,
  WorkflowFailed,
  workflow,
} from "@raftoral/client";

import { eventually, named, singleNode, tempDir } from "./harness.mjs";

/** 366 days in milliseconds: the longest durable timer. */
const MAX_TIMER_MS = 366 * 24 * 3600 * 1000;

/** What the workflows caught, by workflow id. */
const caught = new Map();

/** A sleep of `ms` (named `nap`), then a step. */
const napThenStep = workflow("nap_then_step", { version: 1 }, async (ctx, ms) => {
  await ctx.sleep(ms, { name: "nap" });
  return ctx.checkpoint("after", () => "woke");
});

/** A sleep the SDK refuses (`infinite`: Infinity, which JSON cannot carry); the error is kept, and a step follows. */
const refused = workflow("refused_sleep", { version: 1 }, async (ctx, { ms, infinite, rethrow }) => {
  try {
    await ctx.sleep(infinite ? Number.POSITIVE_INFINITY : ms);
  } catch (e) {
    caught.set(ctx.workflowId, e);
    if (rethrow) throw e;
  }
  return ctx.checkpoint("after", () => "went on");
});

/** sleepUntil an instant in the past (a Date, then a number), then one 200 ms ahead. */
const until = workflow("until", { version: 1 }, async (ctx) => {
  await ctx.sleepUntil(new Date(Date.now() - 60_000), { name: "past-date" });
  await ctx.sleepUntil(0, { name: "epoch" });
  await ctx.sleepUntil(Date.now() + 200, { name: "soon" });
  try {
    await ctx.sleepUntil(new Date(Number.NaN));
  } catch (e) {
    caught.set(ctx.workflowId, e);
  }
  return ctx.checkpoint("after", () => "done");
});

/** A sleep and a step side by side, both ways round, then a step. */
const sideBySide = workflow("side_by_side", { version: 1 }, async (ctx) => {
  const [slept, work] = await Promise.all([
    ctx.sleep("200ms", { name: "nap" }),
    ctx.checkpoint("work", () => "worked"),
  ]);
  const [first, napped] = await Promise.all([
    ctx.checkpoint("first", () => 1),
    ctx.sleep(0, { name: "nap-2" }),
  ]);
  const last = await ctx.checkpoint("last", () => "last");
  // A sleep resolves with undefined (JSON would drop it: as text).
  return { slept: String(slept), work, first, napped: String(napped), last };
});

/** An hour's sleep; a cancellation is kept. */
const long = workflow("long_sleep", { version: 1 }, async (ctx) => {
  try {
    await ctx.sleep("1h");
  } catch (e) {
    caught.set(ctx.workflowId, e);
    throw e;
  }
  return "never";
});

/** Step `before` (its value: the how-manieth execution), a sleep of `ms`, then step `after`. */
let executions = 0;
const napAcross = workflow("nap_across", { version: 1 }, async (ctx, ms) => {
  const execution = executions++;
  await ctx.checkpoint("before", () => execution);
  await ctx.sleep(ms, { name: "nap" });
  return ctx.checkpoint("after", () => "after");
});

/** Step `first`, or a sleep named `first` once `shifted` (another version of the code). */
let shifted = false;
const shifty = workflow("shifty", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  try {
    if (shifted) {
      await ctx.sleep(10, { name: "first" });
    } else {
      await ctx.checkpoint("first", () => 1);
    }
  } catch (e) {
    caught.set(id, e);
    throw e;
  }
  return ctx.checkpoint("block", async () => {
    named(`${id} blocked`).open();
    await new Promise(() => {});
  });
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [napThenStep, refused, until, sideBySide, long] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

/** The history as `[seq, name, kind]`, in commit order. */
const entries = async (handle) => (await handle.history()).map((e) => [e.seq, e.checkpointName, e.kind]);

test("parseDuration reads milliseconds and unit strings", () => {
  const valid = [
    [0, 0],
    [250, 250],
    [1.5, 1.5],
    [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY],
    ["0ms", 0],
    ["250ms", 250],
    ["30s", 30_000],
    ["5m", 300_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["1h30m", 5_400_000],
    ["2m30s500ms", 150_500],
    ["1d 12h", 129_600_000],
    ["1.5s", 1_500],
    ["0.1s", 100],
    [".5m", 30_000],
    ["  45s ", 45_000],
    ["367d", 367 * 86_400_000],
  ];
  for (const [input, ms] of valid) {
    assert.equal(parseDuration(input), ms, `parseDuration(${JSON.stringify(input)})`);
  }
});

test("parseDuration refuses what is no duration with a TypeError, and a negative one", () => {
  const invalid = [
    "",
    "   ",
    "250",
    "5x",
    "5 s",
    "5sec",
    "1.s",
    "1e3ms",
    "ms",
    "h1",
    "1h-30m",
    "1h,30m",
    "soon",
    "+5s",
    "-",
    Number.NaN,
    null,
    undefined,
    {},
    [],
    new Date(),
    10n,
  ];
  for (const input of invalid) {
    assert.throws(
      () => parseDuration(input),
      (e) => {
        assert.ok(e instanceof TypeError, `${String(input)}: ${e}`);
        assert.match(e.message, /duration/);
        return true;
      },
    );
  }
  for (const input of [-1, -0.5, Number.NEGATIVE_INFINITY, "-5s", "-1h30m"]) {
    assert.throws(
      () => parseDuration(input),
      (e) => {
        assert.ok(e instanceof InvalidArgument, `${String(input)}: ${e}`);
        assert.match(e.message, /negative/);
        return true;
      },
    );
  }
});

test("a 300 ms sleep then a step: the cluster fires the timer, recorded in the history", {
  timeout: 30_000,
}, async () => {
  const began = performance.now();
  const handle = await client.startWorkflow(napThenStep, 300);
  assert.equal(await handle.result(), "woke");
  const took = performance.now() - began;
  assert.ok(took >= 300, `finished after ${took} ms, before the sleep's 300 ms`);
  assert.deepEqual(await entries(handle), [
    [0, "nap", "TIMER_STARTED"],
    [0, "nap", "TIMER_FIRED"],
    [1, "after", "VALUE"],
  ]);
  const [started, fired, step] = await handle.history();
  assert.equal(started.fireAtMs, started.committedAtMs + 300, "deadline = start's commit + duration");
  assert.equal(fired.fireAtMs, started.fireAtMs);
  assert.ok(fired.committedAtMs >= fired.fireAtMs, "never fired before its deadline");
  assert.equal(started.value, undefined);
  assert.equal(step.value, "woke");
  assert.equal(step.fireAtMs, undefined);
});

test("negative and too long sleeps are refused before any position is taken", {
  timeout: 30_000,
}, async () => {
  const cases = [
    [-1, InvalidArgument, /negative/],
    ["-5s", InvalidArgument, /negative/],
    [MAX_TIMER_MS + 1, InvalidArgument, /366 days/],
    ["367d", InvalidArgument, /366 days/],
    [Number.POSITIVE_INFINITY, InvalidArgument, /366 days/],
    ["in a while", TypeError, /not a duration/],
  ];
  for (const [ms, type, says] of cases) {
    const infinite = ms === Number.POSITIVE_INFINITY;
    const handle = await client.startWorkflow(refused, infinite ? { infinite } : { ms });
    assert.equal(await handle.result(), "went on");
    const e = caught.get(handle.workflowId);
    assert.ok(e instanceof type, `${ms}: ${e}`);
    assert.match(e.message, says);
    // The step after it took position 0: the sleep took none.
    assert.deepEqual(await entries(handle), [[0, "after", "VALUE"]], `${ms}`);
  }
  // Uncaught, the error fails the workflow with its message.
  const handle = await client.startWorkflow(refused, { ms: -5, rethrow: true });
  await assert.rejects(handle.result(), (e) => {
    assert.ok(e instanceof WorkflowFailed, String(e));
    assert.match(e.error, /negative/);
    return true;
  });
  assert.deepEqual(await entries(handle), []);
});

test("sleepUntil a past instant ends at once; a future one waits for it", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(until, null);
  assert.equal(await handle.result(), "done");
  const history = await handle.history();
  assert.deepEqual(
    history.map((e) => [e.seq, e.checkpointName, e.kind]),
    [
      [0, "past-date", "TIMER_STARTED"],
      [0, "past-date", "TIMER_FIRED"],
      [1, "epoch", "TIMER_STARTED"],
      [1, "epoch", "TIMER_FIRED"],
      [2, "soon", "TIMER_STARTED"],
      [2, "soon", "TIMER_FIRED"],
      [3, "after", "VALUE"],
    ],
  );
  for (const started of history.filter((e) => e.kind === "TIMER_STARTED" && e.checkpointName !== "soon")) {
    assert.equal(started.fireAtMs, started.committedAtMs, `${started.checkpointName}: clamped at 0`);
  }
  const soon = history.find((e) => e.kind === "TIMER_STARTED" && e.checkpointName === "soon");
  const left = soon.fireAtMs - soon.committedAtMs;
  assert.ok(left > 0 && left <= 200, `'soon' sleeps ${left} ms`);
  const e = caught.get(handle.workflowId);
  assert.ok(e instanceof TypeError, String(e));
  assert.match(e.message, /sleepUntil takes a valid Date/);
});

test("a sleep and a step in Promise.all take positions in call order", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(sideBySide, null);
  assert.deepEqual(await handle.result(), {
    slept: "undefined",
    work: "worked",
    first: 1,
    napped: "undefined",
    last: "last",
  });
  const history = await entries(handle);
  assert.deepEqual(
    [...history].sort((x, y) => x[0] - y[0]),
    [
      [0, "nap", "TIMER_STARTED"],
      [0, "nap", "TIMER_FIRED"],
      [1, "work", "VALUE"],
      [2, "first", "VALUE"],
      [3, "nap-2", "TIMER_STARTED"],
      [3, "nap-2", "TIMER_FIRED"],
      [4, "last", "VALUE"],
    ].sort((x, y) => x[0] - y[0]),
  );
  // The step ran while the timer was pending: committed before it fired.
  const at = (seq, kind) => history.findIndex((e) => e[0] === seq && e[2] === kind);
  assert.ok(at(1, "VALUE") < at(0, "TIMER_FIRED"), JSON.stringify(history));
});

test("a cancel without cleanup ends a sleep with Cancelled", { timeout: 30_000 }, async () => {
  const handle = await client.startWorkflow(long, null);
  const id = handle.workflowId;
  await eventually(
    async () => (await entries(handle)).some((e) => e[2] === "TIMER_STARTED"),
    "the timer to start",
  );
  // No cleanup window: CANCELLED at once (cancel.test.mjs has requests).
  const info = await handle.cancel({ reason: "no more waiting", cleanupMs: 0 });
  assert.equal(info.status, "CANCELLED");
  await eventually(() => caught.has(id), "the sleep to end");
  const e = caught.get(id);
  assert.ok(e instanceof Cancelled, String(e));
  assert.equal(e.reason, "no more waiting");
  assert.equal((await handle.get()).status, "CANCELLED");
  assert.ok(!(await entries(handle)).some((x) => x[2] === "TIMER_FIRED"));
});

test("a worker stopped mid-sleep leaves the timer to the next one, which does not start it again", {
  timeout: 60_000,
}, async () => {
  const sidecar = await singleNode(join(tempDir(), "sidecar"));
  try {
    const c = await Client.connect(sidecar.url);
    const first = await Worker.create(await Client.connect(sidecar.url), {
      workflows: [napAcross],
      shutdownGraceMs: 10,
    });
    let handle;
    try {
      handle = await c.startWorkflow(napAcross, 1500);
      await eventually(
        async () => (await entries(handle)).some((e) => e[2] === "TIMER_STARTED"),
        "the timer to start",
      );
    } finally {
      await first.shutdown();
    }
    // The second worker replays `before` and waits for the same timer.
    const second = await Worker.create(c, { workflows: [napAcross] });
    try {
      assert.equal(await handle.result(), "after");
    } finally {
      await second.shutdown();
    }
    const history = await handle.history();
    assert.deepEqual(
      history.map((e) => [e.seq, e.checkpointName, e.kind]),
      [
        [0, "before", "VALUE"],
        [1, "nap", "TIMER_STARTED"],
        [1, "nap", "TIMER_FIRED"],
        [2, "after", "VALUE"],
      ],
    );
    assert.equal(history[0].value, 0, "`before` ran in the first execution only");
    assert.equal(history[1].fireAtMs, history[1].committedAtMs + 1500);
    assert.ok(history[2].committedAtMs >= history[1].fireAtMs);
  } finally {
    await sidecar.kill();
  }
});

test("a sleep where the history has a step is non-determinism", { timeout: 60_000 }, async () => {
  const sidecar = await singleNode(join(tempDir(), "sidecar"));
  try {
    const c = await Client.connect(sidecar.url);
    const first = await Worker.create(await Client.connect(sidecar.url), {
      workflows: [shifty],
      shutdownGraceMs: 10,
    });
    let handle;
    try {
      handle = await c.startWorkflow(shifty, null);
      await named(`${handle.workflowId} blocked`).opened;
    } finally {
      await first.shutdown();
    }
    shifted = true;
    const second = await Worker.create(c, { workflows: [shifty] });
    try {
      await assert.rejects(handle.result(), (e) => {
        assert.ok(e instanceof WorkflowFailed, String(e));
        assert.match(e.error, /non-determinism/);
        return true;
      });
    } finally {
      await second.shutdown();
    }
    const e = caught.get(handle.workflowId);
    assert.ok(e instanceof NonDeterminism, String(e));
    assert.equal(e.seq, 0);
  } finally {
    await sidecar.kill();
  }
});
