// 1,000 concurrent workflows in one worker, then a clean shutdown: the
// process must exit by itself (no handle left keeping it alive). Prints
// `done <completed>` just before the end of the script.
import { Client, Worker } from "@raftoral/client";

import { pingPong } from "./workflows.mjs";

const N = 1000;
const client = await Client.connect(process.env.RAFTORAL_SIDECAR_URL);
const worker = await Worker.create(client, { workflows: [pingPong] });
const handles = await Promise.all(
  Array.from({ length: N }, (_, i) => client.startWorkflow(pingPong, i % 2 ? "ping" : "pong")),
);
const results = await Promise.all(handles.map((h) => h.result()));
const pongs = results.filter((r) => r === "pong").length;
const ids = new Set(handles.map((h) => h.workflowId)).size;
await worker.shutdown();
console.log(`done ${results.length} ${pongs} ${ids} ${worker.running}`);
