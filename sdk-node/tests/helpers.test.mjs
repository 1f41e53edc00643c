// The deterministic helpers. Against a real sidecar, a worker stops in the
// middle of a run and a new one (a new connection) replays it: ctx.random(),
// ctx.uuid() and ctx.now() give the replay what the first run drew, and
// ctx.log writes the lines of the replayed part once, not again. On
// LocalNode: the worker's logSink and the helpers' misuse.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Client, InvalidArgument, LocalNode, NOW_STEP, Worker, workflow } from "@raftoral/client";

import { named, singleNode, tempDir } from "./harness.mjs";

/** What each execution of a workflow saw, by workflow id, in the order they ran. */
const executions = new Map();
function executionsOf(id) {
  if (!executions.has(id)) executions.set(id, []);
  return executions.get(id);
}

/**
 * In its first execution a step blocks for good (the worker then "dies"):
 * it opens `ID blocked` and never returns. Later executions return at once.
 */
async function blockFirstTime(id, execution) {
  if (execution === 0) {
    named(`${id} blocked`).open();
    await new Promise(() => {});
  }
  return true;
}

/**
 * Draws a number and a UUID, reads the time, records them in a step, draws
 * again, then blocks in a later step in its first execution.
 */
const drawer = workflow("drawer", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  const seen = { replayingAtStart: ctx.isReplaying };
  const execution = executionsOf(id).push(seen) - 1;
  seen.random = ctx.random();
  seen.uuid = ctx.uuid();
  seen.now = await ctx.now();
  const recorded = await ctx.checkpoint("record", () => ({
    random: seen.random,
    uuid: seen.uuid,
    now: seen.now.getTime(),
  }));
  seen.after = ctx.random();
  await ctx.checkpoint("block", () => blockFirstTime(id, execution));
  seen.replayingAtEnd = ctx.isReplaying;
  return { recorded, random: seen.random, uuid: seen.uuid, now: seen.now.getTime(), after: seen.after };
});

/** Logs a line before each of `n` steps (the last one blocks in the first execution), then `done`. */
const chatty = workflow("chatty", { version: 1 }, async (ctx, n) => {
  const id = ctx.workflowId;
  const execution = executionsOf(id).push({}) - 1;
  for (let i = 0; i < n; i++) {
    ctx.log.info(`before step ${i}`, { i });
    await ctx.checkpoint(`step-${i}`, () => (i === n - 1 ? blockFirstTime(id, execution) : i));
  }
  ctx.log.info("done");
  return n;
});

let sidecar;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
});

after(async () => {
  await sidecar.kill();
});

/**
 * Runs `start()`'s workflows on a first worker until each has opened
 * `ID blocked`, stops that worker, and lets a second one (another
 * connection) replay and finish them; returns their handles and results.
 */
async function acrossRestart(wf, start) {
  const client = await Client.connect(sidecar.url);
  const first = await Worker.create(await Client.connect(sidecar.url), {
    workflows: [wf],
    shutdownGraceMs: 10,
  });
  let handles;
  try {
    handles = await start(client);
    await Promise.all(handles.map((h) => named(`${h.workflowId} blocked`).opened));
  } finally {
    await first.shutdown();
  }
  const atRestart = Date.now();
  const second = await Worker.create(client, { workflows: [wf] });
  try {
    const results = await Promise.all(handles.map((h) => h.result()));
    return { handles, results, atRestart };
  } finally {
    await second.shutdown();
  }
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("random, uuid and now give a replay what the first run drew", { timeout: 60_000 }, async () => {
  const started = Date.now();
  const { handles, results, atRestart } = await acrossRestart(drawer, async (client) => [
    await client.startWorkflow(drawer, null),
    await client.startWorkflow(drawer, null),
  ]);
  for (const [i, handle] of handles.entries()) {
    const id = handle.workflowId;
    const [live, replay, ...more] = executionsOf(id);
    assert.equal(more.length, 0, "one execution per worker");
    assert.ok(replay, "the second worker executed the run");
    // The replay drew the same numbers, in the same order, and got the same time.
    assert.equal(replay.random, live.random);
    assert.equal(replay.uuid, live.uuid);
    assert.equal(replay.after, live.after);
    assert.equal(replay.now.getTime(), live.now.getTime());
    assert.deepEqual(results[i], {
      recorded: { random: live.random, uuid: live.uuid, now: live.now.getTime() },
      random: live.random,
      uuid: live.uuid,
      now: live.now.getTime(),
      after: live.after,
    });
    assert.ok(live.random >= 0 && live.random < 1, String(live.random));
    assert.notEqual(live.after, live.random);
    assert.match(live.uuid, UUID_V4);
    assert.ok(live.now.getTime() >= started && live.now.getTime() <= atRestart, "now() read the clock live");
    // Live, then replaying its history, then live again past it.
    assert.deepEqual(
      [live.replayingAtStart, replay.replayingAtStart, replay.replayingAtEnd],
      [false, true, false],
    );
    // now() cost one step, committed as a JSON integer; random and uuid none.
    const history = (await handle.history()).sort((x, y) => x.seq - y.seq);
    assert.equal(NOW_STEP, "raftoral.now");
    assert.deepEqual(
      history.map((h) => h.checkpointName),
      [NOW_STEP, "record", "block"],
    );
    assert.equal(history[0].value, live.now.getTime());
    assert.ok(Number.isInteger(history[0].value));
  }
  // Two workflows draw different numbers.
  const [a, b] = results;
  assert.notEqual(a.random, b.random);
  assert.notEqual(a.uuid, b.uuid);
  assert.notEqual(a.after, b.after);
});

test("the log writes each line once, not again while a new worker replays", { timeout: 60_000 }, async () => {
  const lines = [];
  const info = console.info;
  console.info = (...args) => {
    lines.push(args);
  };
  let handle;
  let atRestart;
  try {
    await acrossRestart(chatty, async (client) => {
      handle = await client.startWorkflow(chatty, 4);
      await named(`${handle.workflowId} blocked`).opened;
      atRestart = lines.length;
      return [handle];
    });
  } finally {
    console.info = info;
  }
  const id = handle.workflowId;
  const prefix = `[workflow ${id} step `;
  const mine = lines.filter(([text]) => text.startsWith(prefix));
  assert.equal(mine.length, lines.length, "every line names its workflow");
  const before = (i) => [`${prefix}${i}] before step ${i}`, { i }];
  // The first worker wrote a line before each step, with its position.
  assert.deepEqual(lines.slice(0, atRestart), [0, 1, 2, 3].map(before));
  // The second one replayed steps 0 to 2 silently; the line before the step
  // in flight when the first worker stopped is written again (as the docs
  // say), then the rest once.
  assert.deepEqual(lines.slice(atRestart), [before(3), [`${prefix}4] done`]]);
  assert.equal(executionsOf(id).length, 2, "the second worker did replay the run");
});

test("the worker's logSink gets the lines; the helpers refuse to run after the workflow", async () => {
  const node = await LocalNode.start();
  const client = node.client();
  const records = [];
  const worker = await Worker.create(client, {
    workflows: [
      workflow("sunk", { version: 1 }, async (ctx) => {
        ctx.log.warn("low stock", "sku-1", 3);
        await ctx.checkpoint("reserve", () => true);
        ctx.log.error("failed over");
        executionsOf("sunk").push(ctx);
        return ctx.isReplaying;
      }),
    ],
    logSink: (record) => records.push(record),
  });
  const warn = console.warn;
  const warned = [];
  console.warn = (...args) => warned.push(args);
  try {
    const handle = await client.startWorkflowByName("sunk", 1, null);
    assert.equal(await handle.result(), false);
    const id = handle.workflowId;
    assert.deepEqual(records, [
      {
        level: "warn",
        workflowId: id,
        workflowName: "sunk",
        step: 0,
        message: "low stock",
        args: ["sku-1", 3],
      },
      { level: "error", workflowId: id, workflowName: "sunk", step: 1, message: "failed over", args: [] },
    ]);
    assert.deepEqual(warned, [], "the sink replaces the console");
    const [leaked] = executionsOf("sunk");
    for (const f of [() => leaked.random(), () => leaked.uuid()]) {
      assert.throws(f, (e) => e instanceof InvalidArgument && /after workflow '.*' finished/.test(e.message));
    }
    await assert.rejects(leaked.now(), InvalidArgument);
  } finally {
    console.warn = warn;
    await worker.shutdown();
    await node.shutdown();
  }
});
