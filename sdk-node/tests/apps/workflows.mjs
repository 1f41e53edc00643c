// Workflows of the tests, shared by the worker process and in-process workers.
import { appendFileSync, existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import { Cancelled, NonDeterminism, workflow } from "@raftoral/client";

/** Appends one effect line (one append write: lines never mix). */
export function record(id, what, step) {
  const path = process.env.EFFECTS;
  if (!path) return;
  appendFileSync(path, `${id} ${what} ${step} ${process.env.WORKER_NAME ?? "inproc"}\n`);
}

export const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text) =>
  ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")),
);

/**
 * Step i yields 2i. At `gateAt` the step waits for the `gate` file (or the
 * abort signal); at `busyAt` it keeps the JS thread busy for `busyMs`.
 */
export const steps = workflow("steps", { version: 1 }, async (ctx, inp) => {
  const prefix = process.env.RENAME_STEPS ? "renamed" : "step";
  let total = 0;
  try {
    for (let i = 0; i < inp.n; i++) {
      total += await ctx.checkpoint(`${prefix}-${i}`, async () => {
        record(ctx.workflowId, "compute", i);
        if (i === inp.gateAt && inp.gate) {
          while (!existsSync(inp.gate)) {
            if (ctx.signal.aborted) {
              record(ctx.workflowId, "aborted", i);
              throw ctx.signal.reason;
            }
            await sleep(20);
          }
        }
        if (i === inp.busyAt) {
          const end = Date.now() + inp.busyMs;
          while (Date.now() < end) {
            // Busy on purpose: the JS thread does nothing else meanwhile.
          }
        }
        return 2 * i;
      });
    }
  } catch (e) {
    if (e instanceof Cancelled) record(ctx.workflowId, "cancelled", e.reason.replaceAll(" ", "_") || "-");
    if (e instanceof NonDeterminism)
      record(ctx.workflowId, "nondeterminism", `${e.seq}:${e.expected}:${e.got}`);
    throw e;
  }
  return total;
});

export const fails = workflow("fails", { version: 1 }, async (ctx, message) => {
  await ctx.checkpoint("before", () => 1);
  throw new Error(message);
});

export const ALL = [pingPong, steps, fails];
