// A worker process for the tests: connects to RAFTORAL_SIDECAR_URL, runs the
// workflows of workflows.mjs, prints `worker ready`, runs until killed or
// SIGTERM (then shuts down and exits by itself: nothing keeps it alive).
import { Client, Worker } from "@raftoral/client";

import { ALL } from "./workflows.mjs";

const client = await Client.connect(process.env.RAFTORAL_SIDECAR_URL);
const worker = await Worker.create(client, { workflows: ALL });
process.once("SIGTERM", () => {
  void worker.shutdown();
});
console.log("worker ready");
