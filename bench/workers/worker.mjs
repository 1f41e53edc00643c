// The Node SDK's bench worker: the contract of the Rust one (`handler` in
// bench/src/workflows.rs), so `raftoral-bench sdks` compares the bindings on
// the same workloads.
//
// `ping_pong` answers "pong" to "ping" after one checkpoint; `steps` makes N
// sequential checkpoints and returns each one's latency as the workflow
// function saw it, in nanoseconds; `hold` makes one checkpoint and never
// finishes. Environment: RAFTORAL_SIDECAR_URL. Prints `worker ready` once
// registered; stops on SIGTERM. `make bench` copies it into the npm project
// where the tarballs are installed, so `@raftoral/client` resolves.
import { Client, Worker, workflow } from "@raftoral/client";

const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text) =>
  ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")),
);

const steps = workflow("steps", { version: 1 }, async (ctx, n) => {
  const nanos = [];
  for (let i = 0; i < n; i++) {
    const started = process.hrtime.bigint();
    await ctx.checkpoint(`step-${i}`, () => i + 1);
    nanos.push(Number(process.hrtime.bigint() - started));
  }
  return nanos;
});

const hold = workflow("hold", { version: 1 }, async (ctx) => {
  await ctx.checkpoint("started", () => 1);
  await ctx.checkpoint("never", () => new Promise(() => {}));
});

const client = await Client.connect(process.env.RAFTORAL_SIDECAR_URL);
const worker = await Worker.create(client, { workflows: [pingPong, steps, hold] });
console.log("worker ready");
const stop = () => {
  void worker.shutdown();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
