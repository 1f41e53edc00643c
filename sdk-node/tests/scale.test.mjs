// Load and lifecycle: many workflows in one worker, and a clean exit.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Client } from "@raftoral/client";

import { eventually, singleNode, tempDir } from "./harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
let sidecar;

before(async () => {
  sidecar = await singleNode(join(tempDir(), "sidecar"));
});

after(async () => {
  await sidecar.kill();
});

test("1,000 concurrent workflows in one worker complete, and the process then exits by itself", async () => {
  const proc = spawn(process.execPath, [join(HERE, "apps", "thousand.mjs")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RAFTORAL_SIDECAR_URL: sidecar.url },
  });
  let out = "";
  proc.stdout.on("data", (d) => {
    out += d;
  });
  let code = null;
  proc.once("exit", (c) => {
    code = c;
  });
  try {
    // The script ends after `worker.shutdown()`: if any handle stayed
    // referenced, the process would not exit and this would time out.
    await eventually(() => code !== null, "the 1,000-workflow process to exit", 120_000);
  } finally {
    proc.kill("SIGKILL");
  }
  assert.equal(code, 0);
  assert.equal(out.trim(), "done 1000 500 1000 0");
  const client = await Client.connect(sidecar.url);
  let completed = 0;
  let pageToken = "";
  do {
    const page = await client.listWorkflows({ status: "COMPLETED", workflowName: "ping_pong", pageToken });
    completed += page.workflows.length;
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.equal(completed, 1000);
});
