// A worker's shutdownGraceMs bounds how long its shutdown waits for a
// workflow function stuck in its own code, in the native core as well (it
// used to wait the Rust stream's fixed 10 s first): measured against a
// longer grace in the same run, never against a fixed time.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LocalNode, Worker, workflow } from "@raftoral/client";

import { eventually } from "./harness.mjs";

const started = new Set();

/** One step that never returns and ignores its signal. */
const stuck = workflow("stuck", { version: 1 }, async (ctx) => {
  await ctx.checkpoint("forever", () => {
    started.add(ctx.workflowId);
    return new Promise(() => {});
  });
  return "never";
});

/** How long a worker with `graceMs` takes to shut down over a stuck run. */
async function shutdownTime(graceMs) {
  const node = await LocalNode.start();
  try {
    const client = node.client();
    const worker = await Worker.create(client, { workflows: [stuck], shutdownGraceMs: graceMs });
    const handle = await client.startWorkflow(stuck, null);
    await eventually(() => started.has(handle.workflowId), "the step to start");
    const t0 = performance.now();
    await worker.shutdown();
    return performance.now() - t0;
  } finally {
    await node.shutdown();
  }
}

test("shutdownGraceMs bounds the wait for a stuck workflow function", async () => {
  const short = await shutdownTime(50);
  const long = await shutdownTime(3000);
  assert.ok(short * 2 < long, `shutdown took ${short} ms with a 50 ms grace, ${long} ms with 3 s`);
});
