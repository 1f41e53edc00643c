// The conformance worker (conformance/worker.mjs) keeps the contract of the
// Rust one: workflows, inputs, results, effect lines, failures.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Cancelled, Client, WorkflowFailed } from "@raftoral/client";

import { Effects, eventually, newId, singleNode, tempDir } from "./harness.mjs";

const WORKER = "conformance/worker.mjs";

test("the conformance worker runs ping_pong, steps and blob as the Rust one does", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RAFTORAL_SIDECAR_URL: sidecar.url, CONFORMANCE_EFFECTS: effects.path },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  const exited = new Promise((r) => proc.once("exit", (code) => r(code)));
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const ping = await client.startWorkflowByName("ping_pong", 1, "ping");
    assert.equal(await ping.result(), "pong");
    const id = newId();
    const steps = await client.startWorkflowByName("steps", 1, { n: 3, step_delay_ms: 1 }, { id });
    assert.equal(await steps.result(), 0 + 2 + 4);
    assert.deepEqual(
      effects
        .lines()
        .filter((l) => l[0] === id)
        .map((l) => `${l[1]} ${l[2]}`),
      ["start 0", "done 0", "start 1", "done 1", "start 2", "done 2"],
    );
    const failing = await client.startWorkflowByName("steps", 1, { n: 3, fail_at: 1 });
    await assert.rejects(
      failing.result(),
      (e) => e instanceof WorkflowFailed && e.error === "failed on purpose at step 1",
    );
    const blob = await client.startWorkflowByName("blob", 1, { n: 2, size: 1000 });
    assert.equal(await blob.result(), 2000);
    proc.kill("SIGTERM");
    assert.equal(await exited, 0, "SIGTERM stops the worker cleanly");
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});

test("the conformance worker's sleeper sleeps durably and fails on bad durations", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      CONFORMANCE_EFFECTS: effects.path,
      CONFORMANCE_WORKFLOWS: "sleeper",
    },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const id = newId();
    const began = performance.now();
    const slept = await client.startWorkflowByName("sleeper", 1, { sleeps: [300, 0] }, { id });
    assert.deepEqual(await slept.result(), { slept: 2 });
    assert.ok(performance.now() - began >= 300);
    assert.deepEqual(
      (await slept.history()).map((e) => `${e.checkpointName} ${e.kind}`),
      [
        "before VALUE",
        "nap-0 TIMER_STARTED",
        "nap-0 TIMER_FIRED",
        "nap-1 TIMER_STARTED",
        "nap-1 TIMER_FIRED",
        "after VALUE",
      ],
    );
    assert.deepEqual(
      effects
        .lines()
        .filter((l) => l[0] === id)
        .map((l) => `${l[1]} ${l[2]}`),
      ["start 0", "start 1"],
    );
    // 366 days and one millisecond.
    for (const [ms, says] of [
      [-5, /negative/],
      [31_622_400_001, /366 days/],
    ]) {
      const bad = await client.startWorkflowByName("sleeper", 1, { sleeps: [ms] });
      await assert.rejects(bad.result(), (e) => e instanceof WorkflowFailed && says.test(e.error));
      assert.ok(!(await bad.history()).some((e) => e.kind === "TIMER_STARTED"));
    }
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});

test("the conformance worker's racer races a sleep with a step, and scheduled runs after its delay", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      CONFORMANCE_EFFECTS: effects.path,
      CONFORMANCE_WORKFLOWS: "racer,scheduled",
    },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const kinds = async (handle) =>
      (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);
    const stepWins = await client.startWorkflowByName("racer", 1, { timer_ms: 60_000, step_ms: 0 });
    assert.deepEqual(await stepWins.result(), { winner: "step", value: "worked" });
    assert.deepEqual(await kinds(stepWins), [
      "0 deadline TIMER_STARTED",
      "1 work VALUE",
      "0 deadline TIMER_CANCELLED",
      "2 after VALUE",
    ]);
    const timerWins = await client.startWorkflowByName("racer", 1, { timer_ms: 100, step_ms: 2000 });
    assert.deepEqual(await timerWins.result(), { winner: "timer" });
    assert.deepEqual((await kinds(timerWins)).slice(0, 2), [
      "0 deadline TIMER_STARTED",
      "0 deadline TIMER_FIRED",
    ]);
    const id = newId();
    const before = Date.now();
    const later = await client.startWorkflowByName("scheduled", 1, { x: 1 }, { id, startDelay: 300 });
    const { input, ran_at: ranAt } = await later.result();
    assert.deepEqual(input, { x: 1 });
    assert.ok(ranAt >= before + 300, `ran ${ranAt - before} ms after the start call`);
    assert.equal(effects.count(id, "start", 0), 1);
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});

test("the conformance worker's compensate refunds on a cancel at a step or a sleep; a stubborn one is cut off", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      CONFORMANCE_EFFECTS: effects.path,
      CONFORMANCE_WORKFLOWS: "compensate,steps",
    },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const lines = (id) =>
      effects
        .lines()
        .filter((l) => l[0] === id)
        .map((l) => `${l[1]} ${l[2]}`);
    const kinds = async (handle) =>
      (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);
    const cancelled = async (handle, says) =>
      assert.rejects(handle.result(), (e) => e instanceof Cancelled && says.test(e.reason));

    // At a step: the charge is stopped, the refund runs, CANCELLED.
    const id = newId();
    const atStep = await client.startWorkflowByName("compensate", 1, { at: "step" }, { id });
    await eventually(() => effects.count(id, "start", 1) === 1, "the charge to start");
    assert.equal((await atStep.cancel({ reason: "customer asked", cleanupMs: 30_000 })).status, "RUNNING");
    await cancelled(atStep, /^customer asked$/);
    assert.deepEqual(lines(id), ["done 0", "start 1", "start 2"]);
    assert.deepEqual(await kinds(atStep), ["0 reserve VALUE", "1 charge STEP_FAILED", "2 refund VALUE"]);

    // At a sleep, with the sidecar's window.
    const sleeping = await client.startWorkflowByName("compensate", 1, { at: "sleep" });
    await eventually(
      async () => (await kinds(sleeping)).includes("1 hold TIMER_STARTED"),
      "the timer to start",
    );
    await sleeping.cancel("no more waiting");
    await cancelled(sleeping, /^no more waiting$/);
    assert.deepEqual(lines(sleeping.workflowId), ["done 0", "start 2"]);
    assert.deepEqual((await kinds(sleeping)).slice(1), [
      "1 hold TIMER_STARTED",
      "1 hold TIMER_CANCELLED",
      "2 refund VALUE",
    ]);

    // A cleanup that never ends is cut off by its window.
    const stubborn = await client.startWorkflowByName("compensate", 1, { at: "step", stubborn: true });
    const sid = stubborn.workflowId;
    await eventually(() => effects.count(sid, "start", 1) === 1, "the charge to start");
    await stubborn.cancel({ reason: "customer asked", cleanupMs: 500 });
    await cancelled(stubborn, /cleanup window ran out/);
    assert.deepEqual(lines(sid), ["done 0", "start 1", "start 2", "start 3"]);

    // `steps` notes the cancellation delivered at its step and throws it again.
    const sid2 = newId();
    const steps = await client.startWorkflowByName("steps", 1, { n: 3, step_delay_ms: 60_000 }, { id: sid2 });
    await eventually(() => effects.count(sid2, "start", 0) === 1, "step 0 to start");
    await steps.cancel({ reason: "enough" });
    await cancelled(steps, /^enough$/);
    assert.deepEqual(lines(sid2), ["start 0", "cancelled 0"]);
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});

test("the conformance worker's waiter waits for events, with and without a timeout, and sets status values", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      CONFORMANCE_EFFECTS: effects.path,
      CONFORMANCE_WORKFLOWS: "waiter",
    },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const kinds = async (handle) =>
      (await handle.history()).map((e) => `${e.seq} ${e.checkpointName} ${e.kind}`);
    const id = newId();
    const waiting = await client.startWorkflowByName("waiter", 1, { name: "go", waits: 2 }, { id });
    // The first event before the first wait is committed or after: either way it is kept.
    await client.signalWorkflow(id, "go", { a: 1 });
    await eventually(
      async () => (await kinds(waiting)).includes("2 go EVENT_WAITING"),
      "the second wait to be committed",
    );
    await waiting.signal("go", 2);
    assert.deepEqual(await waiting.result(), { events: [{ a: 1 }, 2] });
    assert.deepEqual(
      effects
        .lines()
        .filter((l) => l[0] === id)
        .map((l) => `${l[1]} ${l[2]}`),
      ["start 0", "start 1"],
    );
    // With `status`: stage, then the count of waits done, then stage done.
    const reporting = await client.startWorkflowByName("waiter", 1, { name: "go", waits: 2, status: true });
    await eventually(
      async () => (await reporting.getStatus()).stage === "waiting",
      "the stage to be set before the first wait",
    );
    await reporting.signal("go", "a");
    await eventually(
      async () => (await reporting.getStatus()).received === 1,
      "the first wait to be counted",
    );
    await reporting.signal("go", "b");
    assert.deepEqual(await reporting.result(), { events: ["a", "b"] });
    assert.deepEqual(await reporting.getStatus(), { stage: "done", received: 2 });
    assert.deepEqual(await kinds(reporting), [
      "0 before VALUE",
      "1 stage STATUS_SET",
      "2 go EVENT_WAITING",
      "2 go EVENT_RECEIVED",
      "3 received STATUS_SET",
      "4 go EVENT_WAITING",
      "4 go EVENT_RECEIVED",
      "5 received STATUS_SET",
      "6 stage STATUS_SET",
      "7 after VALUE",
    ]);
    const timing = await client.startWorkflowByName("waiter", 1, { name: "go", waits: 1, timeout_ms: 100 });
    assert.deepEqual(await timing.result(), { events: [null] });
    assert.deepEqual(await kinds(timing), [
      "0 before VALUE",
      "1 go EVENT_WAITING",
      "1 go EVENT_TIMED_OUT",
      "2 after VALUE",
    ]);
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});

test("the conformance worker's awakener publishes its awakeable and returns its value or rejection", {
  skip: !existsSync(WORKER) && "conformance worker not copied",
  timeout: 60_000,
}, async () => {
  const dir = tempDir();
  const sidecar = await singleNode(join(dir, "sidecar"));
  const effects = new Effects(join(dir, "effects.txt"));
  const proc = spawn(process.execPath, [WORKER], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      RAFTORAL_SIDECAR_URL: sidecar.url,
      CONFORMANCE_EFFECTS: effects.path,
      CONFORMANCE_WORKFLOWS: "awakener",
    },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  try {
    await eventually(() => out.includes("worker ready"), "the worker to register");
    const client = await Client.connect(sidecar.url);
    const published = async (handle) => {
      let found;
      await eventually(async () => {
        found = (await handle.getStatus(["awakeable"])).awakeable;
        return found !== undefined;
      }, "the awakeable's id to be published");
      return found;
    };
    const resolved = await client.startWorkflowByName("awakener", 1, null);
    const id = resolved.workflowId;
    const awakeable = await published(resolved);
    assert.equal(awakeable, `awk/1/${id}`);
    await client.resolveAwakeable(awakeable, { receipt: 9 });
    assert.deepEqual(await resolved.result(), { value: { receipt: 9 } });
    assert.deepEqual(
      effects
        .lines()
        .filter((l) => l[0] === id)
        .map((l) => `${l[1]} ${l[2]}`),
      ["start 0"],
    );
    const rejected = await client.startWorkflowByName("awakener", 1, null);
    await client.rejectAwakeable(await published(rejected), "card declined", "Declined");
    assert.deepEqual(await rejected.result(), { rejected: { type: "Declined", message: "card declined" } });
  } finally {
    proc.kill("SIGKILL");
    await sidecar.kill();
  }
});
