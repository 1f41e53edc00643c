// Client conveniences on LocalNode: executeWorkflow (start, then the
// result), workflows() (an async iterable over every match, fetching pages
// as it goes, by name and by parentId), and handle.result({ timeout })
// (Timeout when the workflow has not ended in time; it keeps running).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { LocalNode, Timeout, Worker, WorkflowFailed, workflow } from "@raftoral/client";

import { pingPong } from "./apps/workflows.mjs";
import { newId } from "./harness.mjs";

/** Returns its input from a step. */
const item = workflow("cl_item", { version: 1 }, async (ctx, n) => ctx.checkpoint("n", () => n));

/** Waits for the event `go`; returns its payload. */
const gate = workflow("cl_gate", { version: 1 }, async (ctx) => ctx.waitEvent("go"));

/** Fails with its own error. */
const fails = workflow("cl_fails", { version: 1 }, async () => {
  throw new Error("nope");
});

/** Starts `n` children (`cl_item`), waits for them; returns their ids. */
const parent = workflow("cl_parent", { version: 1 }, async (ctx, n) => {
  const children = [];
  for (let i = 0; i < n; i++) children.push(await ctx.startChild(item, i));
  await Promise.all(children.map((c) => c.result));
  return children.map((c) => c.id);
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [pingPong, item, gate, fails, parent] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

/** Counts the pages `client.workflows` fetches (calls of listWorkflows). */
function countPages(c) {
  const list = c.listWorkflows.bind(c);
  const seen = { calls: 0 };
  c.listWorkflows = (options) => {
    seen.calls++;
    return list(options);
  };
  return {
    seen,
    restore: () => {
      delete c.listWorkflows;
    },
  };
}

test("executeWorkflow starts a workflow and resolves with its result", async () => {
  assert.equal(await client.executeWorkflow(pingPong, "ping"), "pong");
  // By name (version 1 by default) and with start options.
  const id = newId("exec");
  assert.equal(await client.executeWorkflow("ping_pong", "pong", { id }), "ping");
  assert.equal((await client.getWorkflow(id)).status, "COMPLETED");
  // The same id again: the workflow the first call started.
  assert.equal(await client.executeWorkflow({ name: "ping_pong", version: 1 }, "other", { id }), "ping");
  await assert.rejects(client.executeWorkflow(fails, null), WorkflowFailed);
});

test("executeWorkflow with a timeout rejects with Timeout; the workflow keeps running", async () => {
  const id = newId("exec-gate");
  await assert.rejects(client.executeWorkflow(gate, null, { id, timeout: "200ms" }), (e) => {
    assert.ok(e instanceof Timeout, String(e));
    assert.equal(e.code, "TIMEOUT");
    assert.match(e.message, new RegExp(`workflow '${id}' did not finish within 200 ms`));
    return true;
  });
  assert.equal((await client.getWorkflow(id)).status, "RUNNING");
  await client.signalWorkflow(id, "go", "opened");
  assert.equal(await client.getHandle(id).result({ timeout: 30_000 }), "opened");
});

test("handle.result({ timeout }) rejects with Timeout while the workflow runs, then resolves", async () => {
  const handle = await client.startWorkflow(gate, null);
  const started = Date.now();
  await assert.rejects(handle.result({ timeout: 300 }), (e) => {
    assert.ok(e instanceof Timeout, String(e));
    assert.match(e.message, /did not finish within 300 ms/);
    return true;
  });
  assert.ok(Date.now() - started >= 290, `gave up after ${Date.now() - started} ms`);
  await assert.rejects(handle.result({ timeout: "0.1s" }), Timeout);
  await assert.rejects(handle.result({ timeout: "soon" }), TypeError);
  assert.equal((await handle.get()).status, "RUNNING");
  await handle.signal("go", 5);
  assert.equal(await handle.result({ timeout: "30s" }), 5);
  // Ended: a timeout of 0 answers at once.
  assert.equal(await handle.result({ timeout: 0 }), 5);
  // A failed workflow rejects with its failure, not Timeout.
  const failed = await client.startWorkflow(fails, null);
  await assert.rejects(failed.result({ timeout: "30s" }), WorkflowFailed);
});

test("workflows() iterates every match, fetching pages as it goes", async () => {
  const ids = [];
  for (let i = 0; i < 7; i++) {
    const h = await client.startWorkflow(item, i, { id: newId("item") });
    await h.result();
    ids.push(h.workflowId);
  }
  const pages = countPages(client);
  try {
    const seen = [];
    for await (const w of client.workflows({ workflowName: "cl_item", status: "COMPLETED", pageSize: 3 })) {
      assert.equal(w.workflowName, "cl_item");
      assert.equal(w.status, "COMPLETED");
      seen.push(w.workflowId);
    }
    for (const id of ids) assert.ok(seen.includes(id), `${id} missing from ${seen}`);
    assert.equal(new Set(seen).size, seen.length, "each workflow once");
    assert.ok(pages.seen.calls >= 3, `${pages.seen.calls} pages for ${seen.length} workflows`);

    // A loop that stops early fetches no more pages.
    pages.seen.calls = 0;
    for await (const w of client.workflows({ workflowName: "cl_item", pageSize: 2 })) {
      assert.equal(w.workflowName, "cl_item");
      break;
    }
    assert.equal(pages.seen.calls, 1);

    // Nothing matches: an empty iteration.
    const none = [];
    for await (const w of client.workflows({ workflowName: "cl_nobody" })) none.push(w);
    assert.deepEqual(none, []);
  } finally {
    pages.restore();
  }
});

test("workflows({ parentId }) lists a parent's children across pages", async () => {
  const handle = await client.startWorkflow(parent, 5, { id: newId("parent") });
  const children = await handle.result();
  assert.equal(children.length, 5);
  const listed = [];
  for await (const c of client.workflows({ parentId: handle.workflowId, pageSize: 2 })) {
    assert.equal(c.parentId, handle.workflowId);
    listed.push(c.workflowId);
  }
  assert.deepEqual(listed.sort(), [...children].sort());
});
