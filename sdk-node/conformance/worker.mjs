// The Node SDK's conformance worker: the same contract as the Rust one
// (conformance/src/bin/worker_rust.rs), so the shared scenarios can check Node.
//
// Environment: RAFTORAL_SIDECAR_URL (sidecar), CONFORMANCE_EFFECTS (file that
// records each side effect as a line), CONFORMANCE_HANG=1 (`steps` hangs at
// `hang_at` instead of finishing that step, `blob` hangs before returning,
// `saga` hangs in its last step, `fanout` in its `sum` step, `helpers` in
// its `gate` step, `sleeper`, `racer` and `waiter` in their `after` step,
// `compensate` in its `refund` step),
// CONFORMANCE_STEP_PREFIX (checkpoint names of `steps`, default `step`),
// CONFORMANCE_WORKFLOWS (comma list of what to register; default
// `ping_pong,steps,blob`; `saga`, `flaky`, `fanout`, `helpers`, `sleeper`,
// `racer`, `scheduled`, `compensate`, `waiter`, `awakener`,
// `event_racer`, `parent` and `caller` only when named),
// CONFORMANCE_BAD_POLICY (`negative_interval` or `zero_attempts`: a workflow
// defined with that retry policy, which the SDK refuses before anything is
// registered). Prints `worker ready` once registered; stops cleanly on SIGTERM.
import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import {
  ApplicationError,
  Cancelled,
  Client,
  NonRetryableError,
  RaftoralError,
  StepFailed,
  Worker,
  workflow,
} from "@raftoral/client";

/**
 * Appends one line `ID WHAT STEP MS` (MS: milliseconds since the Unix epoch,
 * comparable with the sidecar's commit times on the same machine) with one
 * append write: lines never interleave.
 */
function effect(id, what, step) {
  const path = process.env.CONFORMANCE_EFFECTS;
  if (path) appendFileSync(path, `${id} ${what} ${step} ${Date.now()}\n`);
}

const hang = () => process.env.CONFORMANCE_HANG === "1";
const forever = () => new Promise(() => {});

const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text) =>
  ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")),
);

const steps = workflow("steps", { version: 1 }, async (ctx, inp) => {
  // Another prefix makes this code differ from the one that wrote the
  // history: replay must report non-determinism.
  const prefix = process.env.CONFORMANCE_STEP_PREFIX ?? "step";
  let total = 0;
  for (let i = 0; i < inp.n; i++) {
    try {
      total += await ctx.checkpoint(`${prefix}-${i}`, async () => {
        effect(ctx.workflowId, "start", i);
        if (hang() && inp.hang_at === i) await forever(); // the app "dies" here
        if (inp.step_delay_ms > 0) await sleep(inp.step_delay_ms);
        effect(ctx.workflowId, "done", i);
        return i * 2;
      });
    } catch (e) {
      // Thrown again: a cancellation delivered here ends the workflow
      // CANCELLED (a request's cleanup has nothing to do).
      if (e instanceof Cancelled) effect(ctx.workflowId, "cancelled", i);
      throw e;
    }
    if (inp.fail_at === i) throw new RaftoralError("WORKFLOW_FAILED", `failed on purpose at step ${i}`);
  }
  return total;
});

const blob = workflow("blob", { version: 1 }, async (ctx, inp) => {
  let total = 0;
  for (let i = 0; i < inp.n; i++) {
    total += (await ctx.checkpoint(`blob-${i}`, () => "x".repeat(inp.size))).length;
  }
  if (hang()) await forever();
  return total;
});

// A charge that fails for good (non-retryable CardDeclined with details),
// caught, then a refund and a final step (which hangs under CONFORMANCE_HANG=1);
// with {"fail":true} the workflow fails with its own structured error right
// after the refund, raised outside any step.
const saga = workflow("saga", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  let caught;
  try {
    await ctx.checkpoint("charge", () => {
      effect(id, "start", 0);
      throw new NonRetryableError("card declined", {
        type: "CardDeclined",
        details: { code: "insufficient_funds", amount: 42 },
      });
    });
    throw new RaftoralError("WORKFLOW_FAILED", "the charge cannot succeed");
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    caught = e;
  }
  const refunded = await ctx.checkpoint("refund", () => {
    effect(id, "done", 1);
    return true;
  });
  if (inp?.fail) {
    throw new ApplicationError("order failed after refund", { type: "OrderFailed", details: { refunded } });
  }
  await ctx.checkpoint("finish", async () => {
    effect(id, "start", 2);
    if (hang()) await forever(); // the app "dies" here
    return true;
  });
  return {
    caught: { type: caught.type, message: caught.error, details: caught.details, attempts: caught.attempts },
    refunded,
  };
});

// One step whose first `hang_times` attempts hang (until the attempt timeout
// `timeout_ms` stops them) and whose first `fail_times` attempts fail.
const flaky = workflow("flaky", { version: 1 }, async (ctx, inp) => {
  const retry = {
    initialIntervalMs: inp.initial_ms,
    backoffCoefficient: inp.coefficient,
    maximumIntervalMs: Math.max(60_000, inp.initial_ms),
    maximumAttempts: inp.max_attempts,
    jitter: 0,
    ...(inp.timeout_ms === undefined ? {} : { attemptTimeoutMs: inp.timeout_ms }),
  };
  try {
    const attempts = await ctx.checkpoint(
      "flaky",
      async ({ attempt, signal }) => {
        effect(ctx.workflowId, "attempt", attempt);
        if (attempt <= (inp.hang_times ?? 0)) {
          // Until the attempt timeout aborts the attempt's signal.
          await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
        }
        if (attempt <= inp.fail_times) {
          const message = `attempt ${attempt} failed`;
          const options = { type: "Flaky" };
          throw inp.non_retryable
            ? new NonRetryableError(message, options)
            : new ApplicationError(message, options);
        }
        return attempt;
      },
      { retry },
    );
    return { attempts };
  } catch (e) {
    if (!(e instanceof StepFailed) || !inp.catch) throw e;
    return { caught: { type: e.type, message: e.error, attempts: e.attempts } };
  }
});

// Branches side by side: Promise.all starts them in order, so their first
// steps take positions 0..n-1; nothing but steps is awaited in a branch.
// Then a `sum` step (which hangs under CONFORMANCE_HANG=1).
const fanout = workflow("fanout", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  const delays = inp.delays_ms ?? [];
  const branch = async (i) => {
    const first = await ctx.checkpoint(`branch-${i}`, async () => {
      await sleep(delays[i] ?? 0);
      effect(id, "done", i);
      return i * i;
    });
    if (!inp.chain) return first;
    return ctx.checkpoint(`branch-${i}-b`, () => {
      effect(id, "done", 1000 + i);
      return first + 1;
    });
  };
  const values = await Promise.all(Array.from({ length: inp.n }, (_, i) => branch(i)));
  const sum = await ctx.checkpoint("sum", async () => {
    effect(id, "start", inp.n);
    if (hang()) await forever(); // the app "dies" here
    return values.reduce((a, b) => a + b, 0);
  });
  return { sum };
});

// The deterministic helpers' draws and recorded time, kept in step `record`
// and returned again after step `gate` (which hangs under CONFORMANCE_HANG=1),
// so a replay shows whether they changed.
const helpers = workflow("helpers", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  const random = ctx.random();
  const uuid = ctx.uuid();
  const now = (await ctx.now()).getTime();
  const drawn = { random, uuid, now };
  const recorded = await ctx.checkpoint("record", () => {
    effect(id, "start", 0);
    return drawn;
  });
  const after = ctx.random();
  await ctx.checkpoint("gate", async () => {
    effect(id, "start", 1);
    if (hang()) await forever(); // the app "dies" here
    return true;
  });
  return { recorded, replayed: drawn, after };
});

// Step `before`, a durable sleep `nap-i` of each of `sleeps` (milliseconds,
// possibly negative or huge: the SDK's error then fails the workflow), then
// step `after` (which hangs under CONFORMANCE_HANG=1).
const sleeper = workflow("sleeper", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  for (const [i, ms] of inp.sleeps.entries()) {
    await ctx.sleep(ms, { name: `nap-${i}` });
  }
  await ctx.checkpoint("after", async () => {
    effect(id, "start", 1);
    if (hang()) await forever(); // the app "dies" here
    return true;
  });
  return { slept: inp.sleeps.length };
});

// A durable sleep `deadline` (position 0) raced with step `work` (position
// 1, an ordinary wait of `step_ms` inside), then step `after` (which hangs
// under CONFORMANCE_HANG=1). A losing step runs on; a losing sleep is
// cancelled.
const racer = workflow("racer", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  const deadline = ctx.sleep(inp.timer_ms, { name: "deadline" });
  const work = ctx.checkpoint("work", async () => {
    effect(id, "start", 0);
    // The step's own work, S ms (WORKERS.md): a delay the race is about,
    // not a wait for a condition.
    await sleep(inp.step_ms);
    effect(id, "done", 0);
    return "worked";
  });
  const won = await ctx.first(deadline, work);
  const out = won.index === 0 ? { winner: "timer" } : { winner: "step", value: won.value };
  await ctx.checkpoint("after", async () => {
    effect(id, "start", 1);
    if (hang()) await forever(); // the app "dies" here
    return true;
  });
  return out;
});

// One step recording when it ran (started with a start delay).
const scheduled = workflow("scheduled", { version: 1 }, async (ctx, input) => {
  const ranAt = await ctx.checkpoint("ran", () => {
    effect(ctx.workflowId, "start", 0);
    return Date.now();
  });
  return { input, ran_at: ranAt };
});

// Step `reserve`, then at position 1 a wait only a cancellation ends: step
// `charge`, which waits forever (the SDK stops waiting for it), or a durable
// sleep `hold` of an hour. The cancellation is caught there and cleaned up
// after: step `refund` (which hangs under CONFORMANCE_HANG=1), then with
// `stubborn` step `stuck`, which never ends (the cleanup window cuts it
// off); otherwise the cancellation is thrown again: the workflow ends
// CANCELLED.
const compensate = workflow("compensate", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("reserve", () => {
    effect(id, "done", 0);
    return true;
  });
  try {
    if (inp.at === "sleep") {
      await ctx.sleep(3_600_000, { name: "hold" });
    } else {
      await ctx.checkpoint("charge", async () => {
        effect(id, "start", 1);
        return forever();
      });
    }
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    await ctx.checkpoint("refund", async () => {
      effect(id, "start", 2);
      if (hang()) await forever(); // the app "dies" here
      return true;
    });
    if (inp.stubborn) {
      await ctx.checkpoint("stuck", async () => {
        effect(id, "start", 3);
        return forever();
      });
    }
    throw e;
  }
  throw new RaftoralError("WORKFLOW_FAILED", "the wait at position 1 ended without a cancellation");
});

// Step `before`, then `waits` durable waits, one after another, for the
// event `name` (with `timeout_ms`, a timeout; else none): each gives the
// event's payload, or null when the timeout passed first. With `status`,
// status values too: `stage` "waiting" before the first wait, `received`
// the number of waits done after each, `stage` "done" after the last.
// With `stream` (never with `timeout_ms` or `status`), the waits are the
// first `waits` items of `ctx.events(name)`.
// Then step `after` (which hangs under CONFORMANCE_HANG=1).
const waiter = workflow("waiter", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  const options = inp.timeout_ms == null ? {} : { timeout: inp.timeout_ms };
  if (inp.status) await ctx.setStatus("stage", "waiting");
  const events = [];
  if (inp.stream) {
    // The first K items of the async iterable (never with a timeout or
    // status): the same waits, one after another, none taken ahead.
    if (inp.waits > 0) {
      for await (const item of ctx.events(inp.name)) {
        events.push(item ?? null);
        if (events.length === inp.waits) break;
      }
    }
  } else {
    for (let i = 1; i <= inp.waits; i++) {
      // An event sent without a payload decodes as undefined: null in JSON.
      events.push((await ctx.waitEvent(inp.name, options)) ?? null);
      if (inp.status) await ctx.setStatus("received", i);
    }
  }
  if (inp.status) await ctx.setStatus("stage", "done");
  await ctx.checkpoint("after", async () => {
    effect(id, "start", 1);
    if (hang()) await forever(); // the app "dies" here
    return true;
  });
  return { events };
});

// Step `before`, then an awakeable whose id it publishes as the status
// `awakeable`, and a wait for it: the value it was resolved with, or the
// type and message it was rejected with (the SDK's step failure, caught).
const awakener = workflow("awakener", { version: 1 }, async (ctx) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  const awakeable = ctx.awakeable();
  await ctx.setStatus("awakeable", awakeable.id);
  try {
    // A completion without a value decodes as undefined: null in JSON.
    return { value: (await awakeable.promise) ?? null };
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    return { rejected: { type: e.type, message: e.error } };
  }
});

// Step `before`, then an event wait for `name` (position 1, no timeout),
// or with `awakeable` an awakeable (position 1) whose id is the status
// `awakeable` (position 2), raced with a durable sleep `race` of `timer_ms`
// (the next position). The wait wins: its payload. The sleep wins: without
// `awakeable`, one more wait for `name` (no timeout) and its payload.
const eventRacer = workflow("event_racer", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  if (inp.awakeable) {
    const awakeable = ctx.awakeable();
    await ctx.setStatus("awakeable", awakeable.id);
    const won = await ctx.first(awakeable.promise, ctx.sleep(inp.timer_ms, { name: "race" }));
    // A completion without a value decodes as undefined: null in JSON.
    return won.index === 0 ? { winner: "event", value: won.value ?? null } : { winner: "timer" };
  }
  const wait = ctx.waitEvent(inp.name);
  const won = await ctx.first(wait, ctx.sleep(inp.timer_ms, { name: "race" }));
  if (won.index === 0) return { winner: "event", value: won.value ?? null };
  const then = (await ctx.waitEvent(inp.name)) ?? null;
  // The key WORKERS.md names (a JSON value, never a thenable).
  return { winner: "timer", then };
});

// Step `before`, then `n` children of type `child` with input `input`
// started one after another (positions 1..n, default ids `ID/SEQ`) with the
// parent-close policy `policy` (absent: cancel). With `self`: one child
// named with this workflow's own id instead, which the SDK refuses (the
// workflow fails with that refusal). With `leave`: their ids, at once.
// Otherwise their results in start order, or the first failure in start
// order (the SDK's step failure, caught).
const parent = workflow("parent", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  const options = inp.policy === undefined || inp.policy === null ? {} : { parentClose: inp.policy };
  if (inp.self) {
    await ctx.startChild(inp.child, inp.input, { ...options, id });
    throw new Error("the SDK started a child with the parent's own id");
  }
  const children = [];
  for (let i = 0; i < inp.n; i++) {
    children.push(await ctx.startChild(inp.child, inp.input, options));
  }
  if (inp.leave) return { children: children.map((c) => c.id) };
  const settled = await Promise.allSettled(children.map((c) => c.result));
  const failed = settled.find((s) => s.status === "rejected");
  if (failed !== undefined) {
    if (!(failed.reason instanceof StepFailed)) throw failed.reason;
    return { failed: { type: failed.reason.type, message: failed.reason.error } };
  }
  // A result without a value decodes as undefined: null in JSON.
  return { results: settled.map((s) => s.value ?? null) };
});

// Step `before`, then the event `name` with `payload` sent to the workflow
// `target` (a step `signal:T:N` at position 1); with `result_of`, then that
// workflow's result (a step `result:R`). Returns the duplicate flag (and the
// result), or the type of the send's failure (the SDK's step failure,
// caught).
const caller = workflow("caller", { version: 1 }, async (ctx, inp) => {
  const id = ctx.workflowId;
  await ctx.checkpoint("before", () => {
    effect(id, "start", 0);
    return true;
  });
  let sent;
  try {
    sent = await ctx.signalWorkflow(inp.target, inp.name, inp.payload);
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    return { failed: { type: e.type } };
  }
  if (inp.result_of === undefined || inp.result_of === null) return { sent };
  // A result without a value decodes as undefined: null in JSON.
  return { sent, result: (await ctx.workflowResult(inp.result_of)) ?? null };
});

const known = {
  ping_pong: pingPong,
  steps,
  blob,
  saga,
  flaky,
  fanout,
  helpers,
  sleeper,
  racer,
  scheduled,
  compensate,
  waiter,
  awakener,
  event_racer: eventRacer,
  parent,
  caller,
};

// A bad retry policy (CONFORMANCE_BAD_POLICY) stops the worker before it
// registers anything: the SDK refuses it where it is defined.
const bad = process.env.CONFORMANCE_BAD_POLICY;
if (bad === "negative_interval" || bad === "zero_attempts") {
  const retry = bad === "negative_interval" ? { initialIntervalMs: -1 } : { maximumAttempts: 0 };
  workflow("bad_policy", { version: 1, retry }, async () => null);
}

const only = (process.env.CONFORMANCE_WORKFLOWS ?? "ping_pong,steps,blob").split(",").filter(Boolean);
const client = await Client.connect(process.env.RAFTORAL_SIDECAR_URL);
const worker = await Worker.create(client, { workflows: only.map((n) => known[n]) });
console.log("worker ready");
const stop = () => {
  void worker.shutdown();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
