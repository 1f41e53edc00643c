// LocalNode (the engine in this process) and bad input.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import {
  Client,
  checkpoint,
  InvalidArgument,
  LocalNode,
  RaftoralError,
  Unavailable,
  Worker,
  WorkflowFailed,
  workflow,
} from "@raftoral/client";

import { pingPong } from "./apps/workflows.mjs";
import { eventually, tempDir } from "./harness.mjs";

const seen = new Map();

const unencodable = workflow("unencodable", { version: 1 }, async (ctx, kind) => {
  await ctx.checkpoint("fine", () => 1);
  try {
    await ctx.checkpoint(kind, () => {
      if (kind === "bigint") return { n: 10n };
      const cycle = { name: "loop" };
      cycle.self = cycle;
      return cycle;
    });
  } catch (e) {
    seen.set(ctx.workflowId, e);
    throw e;
  }
});

let leaked;
const leaks = workflow("leaks", { version: 1 }, async (ctx) => {
  leaked = ctx;
  return ctx.checkpoint("only", () => "done");
});

const voidStep = workflow("void_step", { version: 1 }, async (ctx) => {
  const v = await ctx.checkpoint("nothing", () => undefined);
  return v === undefined ? "undefined" : typeof v;
});

let node;
let client;
let worker;

before(async () => {
  node = await LocalNode.start();
  client = node.client();
  worker = await Worker.create(client, { workflows: [pingPong, unencodable, leaks, voidStep] });
});

after(async () => {
  await worker.shutdown();
  await node.shutdown();
});

test("LocalNode runs ping_pong in process", async () => {
  const handle = await client.startWorkflow(pingPong, "ping");
  assert.equal(await handle.result(), "pong");
  assert.equal((await handle.wait(1000)).status, "COMPLETED");
  assert.equal(await (await client.startWorkflow(voidStep, null)).result(), "undefined");
});

for (const kind of ["bigint", "cycle"]) {
  test(`a value JSON cannot encode (${kind}) names the checkpoint and commits nothing`, async () => {
    const handle = await client.startWorkflow(unencodable, kind);
    await assert.rejects(handle.result(), WorkflowFailed);
    const e = seen.get(handle.workflowId);
    assert.ok(e instanceof InvalidArgument, String(e));
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.message, new RegExp(`checkpoint '${kind}' \\(seq 1\\)`));
    assert.match(e.message, kind === "bigint" ? /BigInt/ : /circular/);
    const history = await handle.history();
    assert.deepEqual(
      history.map((h) => h.checkpointName),
      ["fine"],
      "only the step before it is committed",
    );
  });
}

test("a checkpoint outside a workflow is refused", async () => {
  await assert.rejects(
    checkpoint("stray", () => 1),
    (e) => {
      assert.ok(e instanceof InvalidArgument);
      assert.match(e.message, /no workflow is running here/);
      return true;
    },
  );
  assert.equal(await (await client.startWorkflow(leaks, null)).result(), "done");
  await assert.rejects(
    leaked.checkpoint("late", () => 2),
    (e) => {
      assert.ok(e instanceof InvalidArgument);
      assert.match(e.message, /after workflow '.*' finished/);
      return true;
    },
  );
});

test("connecting to an address nobody serves fails after bounded retries, naming it", async () => {
  // A port that was free a moment ago: nobody listens there.
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  await assert.rejects(Client.connect(url, { attempts: 3, retryDelayMs: 10 }), (e) => {
    assert.ok(e instanceof Unavailable, String(e));
    assert.ok(e instanceof RaftoralError);
    assert.equal(e.code, "UNAVAILABLE");
    assert.equal(e.address, url);
    assert.match(e.message, new RegExp(url.replaceAll(".", "\\.")));
    assert.match(e.message, /gave up after 3 attempts/);
    return true;
  });
});

test("unknown ids and bad waits map to NotFound and Timeout", async () => {
  await assert.rejects(client.getWorkflow("nobody"), { code: "NOT_FOUND", name: "NotFound" });
  await assert.rejects(client.getHandle("nobody").result(), { code: "NOT_FOUND" });
});

test("a custom codec encodes inputs, checkpoints and results", async () => {
  const calls = [];
  const codec = {
    encode(v) {
      calls.push("encode");
      return Buffer.from(`x${JSON.stringify(v)}`);
    },
    decode(d) {
      calls.push("decode");
      return d.length === 0 ? undefined : JSON.parse(Buffer.from(d).toString().slice(1));
    },
  };
  const other = await LocalNode.start();
  const c = other.client({ codec });
  const w = await Worker.create(c, { workflows: [pingPong] });
  try {
    const handle = await c.startWorkflow(pingPong, "ping");
    assert.equal(await handle.result(), "pong");
    const [entry] = await handle.history();
    assert.equal(entry.value, "pong");
    assert.ok(calls.includes("encode") && calls.includes("decode"));
  } finally {
    await w.shutdown();
    await other.shutdown();
  }
});

/** A step, then a wait for the event `go`; returns the step's value and the payload. */
const durable = workflow("durable_gate", { version: 1 }, async (ctx, x) => {
  const before = await ctx.checkpoint("before", () => ({ x }));
  const go = await ctx.waitEvent("go");
  return { before, go };
});

test("a LocalNode with storagePath keeps its workflows across a restart on the same directory", async () => {
  const storagePath = tempDir("raftoral-local-");
  const first = await LocalNode.start({ storagePath });
  const c1 = first.client();
  const w1 = await Worker.create(c1, { workflows: [pingPong, durable] });
  const done = await c1.startWorkflow(pingPong, "ping", { id: "kept-done" });
  assert.equal(await done.result(), "pong");
  const waiting = await c1.startWorkflow(durable, 3, { id: "kept-waiting" });
  await eventually(
    async () => (await waiting.history()).some((e) => e.kind === "EVENT_WAITING"),
    "the workflow to reach its wait",
  );
  await w1.shutdown();
  await first.shutdown();

  const second = await LocalNode.start({ storagePath });
  const c2 = second.client();
  try {
    const kept = await c2.getWorkflow("kept-done");
    assert.equal(kept.status, "COMPLETED");
    assert.equal(kept.result, "pong");
    assert.equal((await c2.getWorkflow("kept-waiting")).status, "RUNNING");
    // A worker resumes the running one by replay: the step is not run again.
    const w2 = await Worker.create(c2, { workflows: [pingPong, durable] });
    try {
      await c2.signalWorkflow("kept-waiting", "go", "after restart");
      assert.deepEqual(await c2.getHandle("kept-waiting").result(), {
        before: { x: 3 },
        go: "after restart",
      });
      const steps = (await c2.history("kept-waiting")).filter((e) => e.checkpointName === "before");
      assert.equal(steps.length, 1);
    } finally {
      await w2.shutdown();
    }
  } finally {
    await second.shutdown();
  }
  // In memory (no storagePath): nothing of that is there.
  const memory = await LocalNode.start();
  try {
    await assert.rejects(memory.client().getWorkflow("kept-done"), { code: "NOT_FOUND" });
  } finally {
    await memory.shutdown();
  }
});

test("a storagePath that is not a string is refused", async () => {
  await assert.rejects(LocalNode.start({ storagePath: 42 }), InvalidArgument);
});
