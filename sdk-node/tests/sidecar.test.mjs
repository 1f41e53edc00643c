// The SDK against real `raftoral serve` processes, workers in other processes.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Cancelled, Client, WorkflowFailed } from "@raftoral/client";

import { fails, pingPong, steps } from "./apps/workflows.mjs";
import { Effects, eventually, newId, singleNode, tempDir, WorkerProcess } from "./harness.mjs";

let dir;
let sidecar;
let client;

before(async () => {
  dir = tempDir();
  sidecar = await singleNode(join(dir, "sidecar"));
  client = await Client.connect(sidecar.url);
});

after(async () => {
  await sidecar.kill();
});

const effectsFile = () => new Effects(join(tempDir(), "effects.txt"));

test("ping_pong through a worker in another process", async () => {
  const effects = effectsFile();
  const worker = await WorkerProcess.start(sidecar.url, effects.path, "a");
  try {
    const id = newId();
    const handle = await client.startWorkflow(pingPong, "ping", { id });
    assert.equal(handle.workflowId, id);
    assert.equal(handle.alreadyStarted, false);
    assert.equal(await handle.result(), "pong");
    const info = await handle.get();
    assert.equal(info.status, "COMPLETED");
    assert.equal(info.checkpointCount, 1);
    assert.equal(info.result, "pong");
    assert.equal(info.input, "ping");
    const history = await handle.history();
    assert.deepEqual(
      history.map((e) => [e.seq, e.checkpointName, e.value]),
      [[0, "result", "pong"]],
    );
    const listed = await client.listWorkflows({ workflowName: "ping_pong", status: "COMPLETED" });
    assert.ok(listed.workflows.some((w) => w.workflowId === id));
    // Idempotent start: the same id is the same workflow.
    const again = await client.startWorkflow(pingPong, "pong", { id });
    assert.equal(again.alreadyStarted, true);
    assert.equal(await again.result(), "pong");
    assert.equal(await client.getHandle(id).result(), "pong");
    // A generated id.
    const generated = await client.startWorkflow(pingPong, "pong");
    assert.match(generated.workflowId, /^[0-9a-f-]{36}$/);
    assert.equal(await generated.result(), "ping");
  } finally {
    await worker.kill();
  }
});

test("an app SIGKILLed mid-workflow replays its committed steps, not recomputes them", async () => {
  const effects = effectsFile();
  const gate = join(tempDir(), "gate");
  const first = await WorkerProcess.start(sidecar.url, effects.path, "first");
  const id = newId();
  const handle = await client.startWorkflow(steps, { n: 5, gateAt: 3, gate }, { id });
  // Step 3 runs only once steps 0..2 are committed.
  await eventually(() => effects.count(id, "compute", 3) === 1, "step 3 to start");
  await first.kill();
  writeFileSync(gate, "");
  const second = await WorkerProcess.start(sidecar.url, effects.path, "second");
  try {
    assert.equal(await handle.result(), 0 + 2 + 4 + 6 + 8);
    for (const step of [0, 1, 2]) {
      assert.equal(effects.count(id, "compute", step), 1, `step ${step} recomputed`);
    }
    // Step 3 had not committed: the restarted app computes it again.
    assert.equal(effects.count(id, "compute", 3), 2);
    assert.equal(effects.count(id, "compute", 4), 1);
    assert.equal((await handle.history()).length, 5);
  } finally {
    await second.kill();
  }
});

test("a cancel without cleanup fires ctx.signal and the pending checkpoint rejects with Cancelled", async () => {
  const effects = effectsFile();
  const gate = join(tempDir(), "gate"); // never opened: only the signal ends the step
  const worker = await WorkerProcess.start(sidecar.url, effects.path, "a");
  try {
    const id = newId();
    const handle = await client.startWorkflow(steps, { n: 3, gateAt: 1, gate }, { id });
    await eventually(() => effects.count(id, "compute", 1) === 1, "step 1 to start");
    // No cleanup window: CANCELLED at once (cancel.test.mjs has requests).
    const info = await handle.cancel({ reason: "changed my mind", cleanupMs: 0 });
    assert.equal(info.status, "CANCELLED");
    await eventually(() => effects.count(id, "aborted", 1) === 1, "the step to see the abort signal");
    await eventually(() => effects.count(id, "cancelled") === 1, "the checkpoint to reject with Cancelled");
    assert.deepEqual(effects.find(id, "cancelled")[0].slice(2, 3), ["changed_my_mind"]);
    await assert.rejects(handle.result(), (e) => {
      assert.ok(e instanceof Cancelled);
      assert.equal(e.code, "CANCELLED");
      assert.equal(e.reason, "changed my mind");
      return true;
    });
    assert.equal((await handle.history()).length, 1, "nothing committed after the cancellation");
    assert.equal(effects.count(id, "compute", 2), 0);
  } finally {
    await worker.kill();
  }
});

test("a failing workflow rejects its result with WorkflowFailed", async () => {
  const effects = effectsFile();
  const worker = await WorkerProcess.start(sidecar.url, effects.path, "a");
  try {
    const handle = await client.startWorkflow(fails, "boom");
    await assert.rejects(handle.result(), (e) => {
      assert.ok(e instanceof WorkflowFailed);
      assert.equal(e.code, "WORKFLOW_FAILED");
      assert.equal(e.error, "Error: boom");
      return true;
    });
    const info = await handle.get();
    assert.equal(info.status, "FAILED");
    assert.equal(info.checkpointCount, 1);
  } finally {
    await worker.kill();
  }
});

test("replay with renamed checkpoints fails with NonDeterminism and its details", async () => {
  const effects = effectsFile();
  const gate = join(tempDir(), "gate");
  const first = await WorkerProcess.start(sidecar.url, effects.path, "first");
  const id = newId();
  const handle = await client.startWorkflow(steps, { n: 3, gateAt: 1, gate }, { id });
  await eventually(() => effects.count(id, "compute", 1) === 1, "step 1 to start");
  await first.kill();
  writeFileSync(gate, "");
  // The new app's code names its steps differently: replay must notice.
  const second = await WorkerProcess.start(sidecar.url, effects.path, "second", { RENAME_STEPS: "1" });
  try {
    await assert.rejects(handle.result(), (e) => {
      assert.ok(e instanceof WorkflowFailed);
      assert.match(e.message, /non-determinism/);
      assert.match(e.error, /history has 'step-0', the code asked for 'renamed-0'/);
      return true;
    });
    assert.deepEqual(
      effects.find(id, "nondeterminism").map((p) => p[2]),
      ["0:step-0:renamed-0"],
    );
    assert.equal(effects.count(id, "compute", 0), 1, "the committed step is not recomputed");
  } finally {
    await second.kill();
  }
});

test("a worker shut down by SIGTERM exits by itself: no handle keeps it alive", async () => {
  const effects = effectsFile();
  const worker = await WorkerProcess.start(sidecar.url, effects.path, "a");
  assert.equal(await (await client.startWorkflow(pingPong, "ping")).result(), "pong");
  assert.equal(await worker.terminate(), 0);
});

test("a sidecar with an app token refuses calls without it", async () => {
  const guarded = await singleNode(join(tempDir(), "guarded"), ["--app-token", "node-s3cret"]);
  try {
    const anonymous = await Client.connect(guarded.url);
    await assert.rejects(anonymous.startWorkflow(pingPong, "ping", { id: "refused" }), (e) => {
      assert.equal(e.code, "UNAUTHENTICATED");
      return true;
    });
    const authed = await Client.connect(guarded.url, { token: "node-s3cret" });
    const page = await authed.listWorkflows();
    assert.deepEqual(page.workflows, [], "the refused call started nothing");
    const handle = await authed.startWorkflow(pingPong, "ping", { id: "accepted" });
    assert.equal((await handle.get()).workflowId, "accepted");
  } finally {
    await guarded.kill();
  }
});
