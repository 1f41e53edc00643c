// Steps side by side (Promise.all): on LocalNode they run at once and each
// branch gets its own values; against a sidecar, a new worker (a new
// connection, after the first one stopped mid-run) replays the run and
// hands each branch its own committed values again, whatever order the
// steps committed in and however deep each branch's code is.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Client, LocalNode, NonRetryableError, StepFailed, Worker, workflow } from "@raftoral/client";

import { latch, named, singleNode, tempDir } from "./harness.mjs";

/** What step functions ran, as `ID step`, in the order they ran. */
const ran = [];

/** Step `a` waits until step `b` has run: if steps ran one at a time, `a` would never end. */
const meet = workflow("meet", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  const bRan = latch();
  const [a, b] = await Promise.all([
    ctx.checkpoint("a", async () => {
      ran.push(`${id} start a`);
      await bRan.opened;
      ran.push(`${id} end a`);
      return "A";
    }),
    ctx.checkpoint("b", () => {
      ran.push(`${id} start b`);
      bRan.open();
      ran.push(`${id} end b`);
      return "B";
    }),
  ]);
  return { a, b };
});

/** `n` steps side by side, each running until all of them are running. */
const wide = workflow("wide", { version: 1 }, async (ctx, n) => {
  let started = 0;
  const all = latch();
  const values = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      ctx.checkpoint(`branch-${i}`, async () => {
        started += 1;
        if (started === n) all.open();
        await all.opened;
        return i * i;
      }),
    ),
  );
  return values;
});

/** Extra awaits between a step and the code after it. */
const deep = async (p) => await (async () => await (async () => await p)())();

/**
 * Two branches of two steps, then `total`. `first` says whose first step
 * commits first (the other's waits for it, live only); branch A's code is
 * deeper than B's. Under `hold`, `total` waits for `ID release` (the
 * worker's "death" mid-run).
 */
const fan = workflow("fan", { version: 1 }, async (ctx, { first, hold }) => {
  const id = ctx.workflowId;
  const step = (name, value, wait) =>
    ctx.checkpoint(name, async () => {
      ran.push(`${id} ${name}`);
      if (wait) await wait.opened;
      return value;
    });
  const aDone = latch();
  const bDone = latch();
  const branchA = async () => {
    const a = await deep(step("a", "A", first === "b" ? bDone : null));
    aDone.open();
    return deep(step("a2", `${a}2`, first === "a" ? bDone : null));
  };
  const branchB = async () => {
    const b = await step("b", "B", first === "a" ? aDone : null);
    bDone.open();
    return step("b2", `${b}2`, first === "b" ? aDone : null);
  };
  const [a2, b2] = await Promise.all([branchA(), branchB()]);
  const total = await ctx.checkpoint("total", async () => {
    ran.push(`${id} total`);
    if (hold) {
      named(`${id} reached`).open();
      await named(`${id} release`).opened;
    }
    return `${a2}+${b2}`;
  });
  return { a2, b2, total };
});

/** One branch fails for good, the other succeeds. */
const mixed = workflow("mixed", { version: 1 }, async (ctx) => {
  const [failed, ok] = await Promise.allSettled([
    ctx.checkpoint("charge", () => {
      throw new NonRetryableError("card declined", { type: "CardDeclined" });
    }),
    ctx.checkpoint("reserve", () => "reserved"),
  ]);
  const after = await ctx.checkpoint("after", () => "done");
  const e = failed.reason;
  return { failed: e instanceof StepFailed ? [e.step, e.seq, e.type] : String(e), ok: ok.value, after };
});

let node;
let sidecar;

before(async () => {
  node = await LocalNode.start();
  sidecar = await singleNode(join(tempDir(), "sidecar"));
});

after(async () => {
  await node.shutdown();
  await sidecar.kill();
});

/** The names of the committed steps, by position. */
const positions = async (handle) =>
  (await handle.history()).sort((x, y) => x.seq - y.seq).map((h) => h.checkpointName);

test("steps in Promise.all run at the same time, each with its own value", { timeout: 30_000 }, async () => {
  const client = node.client();
  const worker = await Worker.create(client, { workflows: [meet, mixed, wide] });
  try {
    const handle = await client.startWorkflow(meet, null);
    assert.deepEqual(await handle.result(), { a: "A", b: "B" });
    const id = handle.workflowId;
    // `b` ran from start to end while `a` was running.
    assert.deepEqual(
      ran.filter((r) => r.startsWith(`${id} `)),
      ["start a", "start b", "end b", "end a"].map((r) => `${id} ${r}`),
    );
    // Positions in call order.
    assert.deepEqual(await positions(handle), ["a", "b"]);

    // 50 steps all running at once, with no warning about abort listeners.
    const warnings = [];
    const onWarning = (w) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const w = await client.startWorkflow(wide, 50);
      assert.deepEqual(
        await w.result(),
        Array.from({ length: 50 }, (_, i) => i * i),
      );
      assert.deepEqual(
        await positions(w),
        Array.from({ length: 50 }, (_, i) => `branch-${i}`),
      );
    } finally {
      process.off("warning", onWarning);
    }
    assert.deepEqual(warnings, []);

    const m = await client.startWorkflow(mixed, null);
    assert.deepEqual(await m.result(), {
      failed: ["charge", 0, "CardDeclined"],
      ok: "reserved",
      after: "done",
    });
  } finally {
    await worker.shutdown();
  }
});

for (const first of ["a", "b"]) {
  test(`a new worker replays branches whose step ${first} committed first`, { timeout: 60_000 }, async () => {
    const client = await Client.connect(sidecar.url);
    const firstClient = await Client.connect(sidecar.url);
    const firstWorker = await Worker.create(firstClient, { workflows: [fan], shutdownGraceMs: 10 });
    const handle = await client.startWorkflow(fan, { first, hold: true });
    const id = handle.workflowId;
    // Every branch step committed; the worker stops in `total`.
    await named(`${id} reached`).opened;
    await firstWorker.shutdown();
    const live = await positions(handle);
    assert.deepEqual(live, first === "a" ? ["a", "b", "a2", "b2"] : ["a", "b", "b2", "a2"]);

    // A new worker replays the run: every branch gets its own values back,
    // at the positions it took live (or non-determinism would fail it).
    const worker = await Worker.create(client, { workflows: [fan] });
    try {
      named(`${id} release`).open();
      assert.deepEqual(await handle.result(), { a2: "A2", b2: "B2", total: "A2+B2" });
      const steps = ran.filter((r) => r.startsWith(`${id} `)).map((r) => r.slice(id.length + 1));
      // No branch step ran again; `total` (never committed) ran on both workers.
      assert.deepEqual(steps.filter((s) => s !== "total").sort(), ["a", "a2", "b", "b2"]);
      assert.equal(steps.filter((s) => s === "total").length, 2);
      assert.deepEqual(await positions(handle), [...live, "total"]);
    } finally {
      await worker.shutdown();
    }
  });
}
