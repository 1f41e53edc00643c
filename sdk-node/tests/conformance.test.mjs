// The conformance worker (conformance/worker.mjs) keeps the contract of the
// Rust one: workflows, inputs, results, effect lines, failures.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Client, WorkflowFailed } from "@raftoral/client";

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
