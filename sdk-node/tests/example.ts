// Type-checked with `tsc --noEmit --strict` in the fresh project: types flow
// from the workflow definition to startWorkflow and handle.result().
import {
  AlreadyCompleted,
  type Awakeable,
  Cancelled,
  type CancelOptions,
  Client,
  type Duration,
  type EventsOptions,
  type EventWait,
  type FirstResult,
  type HistoryEntryKind,
  type LogRecord,
  type LogSink,
  NonRetryableError,
  type PendingTimer,
  type RaftoralError,
  ResourceExhausted,
  type RetryPolicy,
  type SignalOptions,
  type SignalResult,
  type SignalWithStartOptions,
  type SignalWithStartResult,
  type StartOptions,
  StepFailed,
  type WaitEventOptions,
  Worker,
  type WorkflowInfo,
  workflow,
} from "@raftoral/client";

interface Order {
  id: string;
  amount: number;
}

const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text: string) =>
  ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")),
);

const charge = workflow("charge", { version: 2 }, async (ctx, order: Order) => {
  const receipt = await ctx.checkpoint("charge", async () => ({ ok: true, cents: order.amount * 100 }));
  await ctx.checkpoint("notify", () => {
    ctx.signal.throwIfAborted();
  });
  return receipt.cents;
});

const retry: RetryPolicy = { initialIntervalMs: 100, maximumAttempts: Infinity };

const saga = workflow("saga", { version: 1, retry }, async (ctx, order: Order) => {
  try {
    const attempts: number = await ctx.checkpoint(
      "pay",
      ({ attempt }) => {
        if (order.amount > 10) throw new NonRetryableError("declined", { type: "CardDeclined" });
        return attempt;
      },
      { retry: { maximumAttempts: 3, nonRetryableErrorTypes: ["Fraud"] } },
    );
    return attempts;
  } catch (e) {
    if (e instanceof StepFailed && e.type === "CardDeclined") return -e.attempts;
    throw e;
  }
});

const refunding = workflow("refunding", { version: 1 }, async (ctx, order: Order) => {
  try {
    await ctx.checkpoint("charge", ({ signal }) =>
      fetch(`https://pay.example/${order.id}`, { signal }).then(() => 1),
    );
  } catch (e) {
    if (e instanceof Cancelled) {
      const reason: string = e.reason;
      await ctx.checkpoint("refund", () => reason.length);
    }
    throw e;
  }
});

const helpers = workflow("helpers", { version: 1 }, async (ctx) => {
  const started: Date = await ctx.now();
  const r: number = ctx.random();
  const key: string = ctx.uuid();
  const replaying: boolean = ctx.isReplaying;
  ctx.log.info("charging", { key }, 42);
  ctx.log.warn("slow");
  // @ts-expect-error: random() is synchronous, no step
  const late: Promise<number> = ctx.random();
  return { at: started.getTime(), r, key, replaying, late };
});

const sleeper = workflow("sleeper", { version: 1 }, async (ctx, naps: Duration[]) => {
  for (const nap of naps) {
    const slept: Promise<void> = ctx.sleep(nap, { name: "nap" });
    await slept;
  }
  await Promise.all([ctx.sleep("1h30m"), ctx.checkpoint("meanwhile", () => 1)]);
  await ctx.sleepUntil(new Date(Date.now() + 1000));
  await ctx.sleepUntil(0, { name: "epoch" });
  // @ts-expect-error: a duration is a number or a string
  await ctx.sleep({ ms: 1 });
  // @ts-expect-error: sleepUntil takes a Date or epoch milliseconds
  await ctx.sleepUntil("tomorrow");
  return naps.length;
});

const racer = workflow("racer", { version: 1 }, async (ctx, ms: number) => {
  const deadline = ctx.sleep(ms, { name: "deadline" });
  const work = ctx.checkpoint("work", () => ({ cents: 5 }));
  const won: FirstResult<[Promise<void>, Promise<{ cents: number }>]> = await ctx.first(deadline, work);
  if (won.index === 1) {
    const cents: number = won.value.cents;
    return cents;
  }
  // @ts-expect-error: the timer's value (void) has no cents
  won.value.cents;
  const many = await ctx.first(...[ctx.sleep(1), ctx.sleep(2)]);
  const index: number = many.index;
  return index;
});

const approval = workflow("approval", { version: 1 }, async (ctx, order: Order) => {
  const options: WaitEventOptions = { timeout: "24h" };
  const answer: { approved: boolean } | null = await ctx.waitEvent<{ approved: boolean }>(
    "approval",
    options,
  );
  const [a, b] = await Promise.all([ctx.waitEvent<string>("a", { timeout: 30_000 }), ctx.waitEvent("b")]);
  const first: string | null = a;
  const other: unknown = b;
  // @ts-expect-error: null on timeout
  const never: { approved: boolean } = await ctx.waitEvent<{ approved: boolean }>("again");
  // @ts-expect-error: a timeout is a duration
  await ctx.waitEvent("x", { timeout: new Date() });
  console.log(first, other, never);
  return answer?.approved === true ? order.id : null;
});

const cart = workflow("cart", { version: 1 }, async (ctx, items: string[]) => {
  await ctx.setStatus("stage", "open");
  for (;;) {
    const item = await ctx.waitEvent<string>("add", { timeout: "1h" });
    if (item === null) break;
    items.push(item);
    const set: Promise<void> = ctx.setStatus("items", { count: items.length, last: item });
    await set;
  }
  await ctx.setStatus("stage", "checked out");
  // @ts-expect-error: a status key is a string
  await ctx.setStatus(1, "x");
  return items.length;
});

const basket = workflow("basket", { version: 1 }, async (ctx, items: string[]) => {
  const options: EventsOptions = { timeout: "1h" };
  for await (const item of ctx.events<string>("add", options)) {
    const added: string = item;
    items.push(added);
  }
  const votes: AsyncIterableIterator<boolean> = ctx.events<boolean>("vote");
  let yes = 0;
  for await (const vote of votes) {
    if (vote) yes++;
    if (yes === 3) break;
  }
  const next: IteratorResult<unknown> = await ctx.events("any", { timeout: 30_000 }).next();
  for await (const untyped of ctx.events("raw")) {
    const raw: unknown = untyped;
    // @ts-expect-error: an item without a type argument is unknown
    raw.length;
    break;
  }
  for await (const item of ctx.events<string>("x")) {
    // @ts-expect-error: an item is never null (a timeout ends the iteration)
    const never: null = item;
    console.log(never);
    break;
  }
  // @ts-expect-error: a timeout is a duration
  ctx.events("x", { timeout: new Date() });
  // @ts-expect-error: an event name is a string
  ctx.events(1);
  return { count: items.length, yes, done: next.done === true };
});

const payment = workflow("payment", { version: 1 }, async (ctx, order: Order) => {
  const paid: Awakeable<{ receipt: string }> = ctx.awakeable<{ receipt: string }>();
  const id: string = paid.id;
  await ctx.setStatus("callback", id);
  const untyped: Promise<unknown> = ctx.awakeable().promise;
  untyped.catch(() => {});
  // @ts-expect-error: the id is read-only
  paid.id = "awk/0/other";
  // @ts-expect-error: an awakeable is not a promise; await its promise
  const wrong: { receipt: string } = await paid;
  try {
    const { receipt } = await paid.promise;
    return `${order.id}: ${receipt}`;
  } catch (e) {
    if (e instanceof StepFailed) return `${e.type}: ${e.error}`;
    throw e;
  } finally {
    console.log(wrong);
  }
});

const lines: LogRecord[] = [];
const logSink: LogSink = (record) => {
  lines.push(record);
};

export async function main(url: string): Promise<void> {
  const client = await Client.connect(url);
  const worker = await Worker.create(client, {
    workflows: [pingPong, charge, saga, refunding, helpers, sleeper, racer, approval, cart, basket, payment],
    retry,
    logSink,
  });
  const handle = await client.startWorkflow(pingPong, "ping", { id: "order-42" });
  const answer: string = await handle.result();
  const cents: number = await (await client.startWorkflow(charge, { id: "a", amount: 2 })).result();
  // @ts-expect-error: the input type comes from the definition
  await client.startWorkflow(charge, "not an order");
  // @ts-expect-error: so does the result type
  const wrong: string = await (await client.startWorkflow(charge, { id: "b", amount: 1 })).result();
  try {
    await client.getWorkflow("nobody");
  } catch (e) {
    const code: RaftoralError["code"] = (e as RaftoralError).code;
    console.log(code);
  }
  const naps: number = await (await client.startWorkflow(sleeper, [250, "30s"])).result();
  const kinds: HistoryEntryKind[] = (await handle.history()).map((e) => e.kind);
  const later: StartOptions = { startDelay: "1h", executionTimeout: 86_400_000 };
  // @ts-expect-error: a duration is a number or a string
  const wrongDelay: StartOptions = { startDelay: new Date() };
  const raced: number = await (await client.startWorkflow(racer, 100, later)).result();
  const info = await client.getWorkflow(handle.workflowId);
  const timers: PendingTimer[] = info.pendingTimers;
  const startAt: number | undefined = info.startAtMs ?? info.timeoutAtMs;
  const sleeping = await client.listWorkflows({ sleeping: true });
  const cleanup: CancelOptions = { reason: "customer asked", cleanupMs: 60_000 };
  const requested = await client.cancelWorkflow(handle.workflowId, cleanup);
  const until: number | undefined = requested.cancelDeadlineMs;
  const why: string | undefined = requested.cancelReason;
  await handle.cancel("old style");
  await handle.cancel({ cleanupMs: 0 });
  await client.cancelWorkflow("order-43");
  // @ts-expect-error: cleanupMs is a number of milliseconds
  await handle.cancel({ cleanupMs: "30s" });
  const waiting = await client.startWorkflow(approval, { id: "c", amount: 3 });
  const key: SignalOptions = { idempotencyKey: "approval-c" };
  const sent: SignalResult = await client.signalWorkflow(
    waiting.workflowId,
    "approval",
    { approved: true },
    key,
  );
  const duplicate: boolean = sent.duplicate;
  const inbox: number = sent.workflow.inboxSize;
  const waits: EventWait[] = (await waiting.get()).eventWaits;
  const deadline: number | undefined = waits[0]?.timeoutAtMs;
  await waiting.signal("a", "ay");
  await waiting.signal("b");
  try {
    await waiting.signal("b", 1, key);
  } catch (e) {
    if (e instanceof ResourceExhausted) console.log(e.code === "RESOURCE_EXHAUSTED");
  }
  // @ts-expect-error: the key is a string
  await waiting.signal("b", 1, { idempotencyKey: 7 });
  const add: SignalWithStartOptions = { id: "cart-7", event: "add", payload: "book", key: "book-7" };
  const fed: SignalWithStartResult = await client.signalWithStart(cart, [], add);
  const started: boolean = fed.started;
  const fedInbox: number = fed.workflow.inboxSize;
  await client.signalWithStart(cart, [], {
    id: "cart-7",
    event: "add",
    startDelay: "1s",
    executionTimeout: "1d",
  });
  await client.signalWithStartByName("cart", 1, null, { id: "cart-8", event: "add", payload: 1 });
  // @ts-expect-error: the input type comes from the definition
  await client.signalWithStart(cart, "not a list", add);
  // @ts-expect-error: the id is required
  await client.signalWithStart(cart, [], { event: "add" });
  // @ts-expect-error: so is the event
  await client.signalWithStart(cart, [], { id: "cart-9" });
  const status: Record<string, unknown> = await client.getStatus("cart-7", ["stage", "items"]);
  const everything: Record<string, unknown> = await client.getHandle("cart-7").getStatus();
  const stage: unknown = status.stage;
  // @ts-expect-error: keys are a list of strings
  await client.getStatus("cart-7", "stage");
  console.log(started, fedInbox, stage, everything);
  const paying = await client.startWorkflow(payment, { id: "p", amount: 4 });
  const { callback } = await paying.getStatus(["callback"]);
  const resolved: WorkflowInfo = await client.resolveAwakeable(String(callback), { receipt: "r-1" });
  await client.resolveAwakeable("awk/1/p");
  try {
    await client.rejectAwakeable(String(callback), "too late", "Late");
    await client.rejectAwakeable(String(callback), "too late");
  } catch (e) {
    if (e instanceof AlreadyCompleted) {
      const which: string = e.awakeableId;
      console.log(which, e.code === "ALREADY_COMPLETED");
    }
  }
  // @ts-expect-error: the rejection's message is required
  await client.rejectAwakeable(String(callback));
  const paidFor: string = await paying.result();
  console.log(resolved.status, paidFor);
  const approved: string | null = await waiting.result();
  console.log(duplicate, inbox, deadline, approved);
  console.log(answer, cents, wrong, naps, kinds, raced, timers, startAt, sleeping, wrongDelay, until, why);
  await worker.shutdown();
}
