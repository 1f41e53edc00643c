// The SDK against a cluster of real `raftoral serve` processes.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Client, Worker } from "@raftoral/client";

import { pingPong, steps } from "./apps/workflows.mjs";
import { Cluster, Effects, eventually, newId, tempDir, WorkerProcess } from "./harness.mjs";

async function withCluster(n, extra, body) {
  const dir = tempDir();
  const cluster = await Cluster.start(join(dir, "cluster"), n, extra);
  try {
    await body(cluster, new Effects(join(dir, "effects.txt")), dir);
  } finally {
    await cluster.stop();
  }
}

test("ping_pong on three nodes through a worker in another process", async () => {
  await withCluster(3, ["--app-timeout-ms", "1000"], async (cluster, effects) => {
    // The worker sits on node 2; the client starts the workflow on node 1.
    const worker = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "a");
    try {
      const client = await Client.connect(cluster.nodes[1].url);
      const id = newId();
      const handle = await client.startWorkflow(pingPong, "ping", { id });
      assert.equal(await handle.result(), "pong");
      assert.equal((await handle.get()).ownerNodeId, 2);
      // Every node serves the same state.
      for (const node of Object.values(cluster.nodes)) {
        const other = await Client.connect(node.url);
        assert.equal(await other.getHandle(id).result(), "pong");
      }
    } finally {
      await worker.kill();
    }
  });
});

for (const dies of ["app", "node"]) {
  test(`owner failover to a Node worker on another node when the owner's ${dies} dies`, async () => {
    await withCluster(3, ["--app-timeout-ms", "1000"], async (cluster, effects, dir) => {
      const gate = join(dir, "gate");
      const first = await WorkerProcess.start(cluster.nodes[1].url, effects.path, "first");
      let second;
      try {
        const client = await Client.connect(cluster.nodes[1].url);
        const id = newId();
        // Started while only node 1's app runs `steps`: node 1 owns it.
        const handle = await client.startWorkflow(steps, { n: 5, gateAt: 2, gate }, { id });
        await eventually(() => effects.count(id, "compute", 2) === 1, "step 2 to start");
        assert.equal((await handle.get()).ownerNodeId, 1);
        // Node 2's worker joins as a replica (replaying steps 0 and 1).
        second = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "second");
        if (dies === "app") await first.kill();
        else await cluster.nodes[1].kill();
        writeFileSync(gate, "");
        const survivor = await Client.connect(cluster.nodes[2].url);
        assert.equal(await survivor.getHandle(id).result(), 0 + 2 + 4 + 6 + 8);
        assert.equal((await survivor.getWorkflow(id)).ownerNodeId, 2);
        const computed = new Set(effects.find(id, "compute").map((p) => `${p[2]}:${p[3]}`));
        // Committed steps ran once, on the first owner; the rest on node 2's
        // worker, which had caught up as a replica.
        assert.equal(effects.count(id, "compute", 0), 1);
        assert.equal(effects.count(id, "compute", 1), 1);
        for (const c of ["0:first", "1:first", "3:second", "4:second"]) assert.ok(computed.has(c), c);
        assert.equal(effects.count(id, "compute", 3), 1);
      } finally {
        await first.kill();
        if (second) await second.kill();
      }
    });
  });
}

test("a 10 s synchronous busy loop in a step keeps the stream: no reconnect, no failover", async () => {
  await withCluster(2, ["--app-timeout-ms", "2000"], async (cluster, effects, dir) => {
    process.env.EFFECTS = effects.path;
    const gate = join(dir, "gate");
    let standby;
    try {
      const client = await Client.connect(cluster.nodes[1].url);
      const worker = await Worker.create(client, { workflows: [steps] });
      const id = newId();
      // Started while only node 1's app runs `steps`: node 1 owns it.
      const handle = await client.startWorkflow(
        steps,
        { n: 3, gateAt: 0, gate, busyAt: 1, busyMs: 10_500 },
        { id },
      );
      await eventually(() => effects.count(id, "compute", 0) === 1, "step 0");
      assert.equal((await handle.get()).ownerNodeId, 1);
      // Node 2's worker joins as a replica, ready to take over.
      standby = await WorkerProcess.start(cluster.nodes[2].url, effects.path, "standby");
      writeFileSync(gate, "");
      assert.equal(await handle.result(), 6);
      await worker.shutdown();
      assert.equal((await client.getWorkflow(id)).ownerNodeId, 1);
      assert.equal(effects.count(id, "compute", 1), 1);
      assert.ok(effects.find(id, "compute").every((p) => p[3] === "inproc"));
      const log = cluster.nodes[1].log();
      assert.equal(log.split("app registered workflow").length - 1, 1, "the app registered once: one stream");
      assert.ok(!log.includes("treating it as gone"), "the sidecar never saw the app fall silent");
    } finally {
      delete process.env.EFFECTS;
      if (standby) await standby.kill();
    }
  });
});
