// Type-checked with `tsc --noEmit --strict` in the fresh project: types flow
// from the workflow definition to startWorkflow and handle.result().
import {
  Client,
  type LogRecord,
  type LogSink,
  NonRetryableError,
  type RaftoralError,
  type RetryPolicy,
  StepFailed,
  Worker,
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

const lines: LogRecord[] = [];
const logSink: LogSink = (record) => {
  lines.push(record);
};

export async function main(url: string): Promise<void> {
  const client = await Client.connect(url);
  const worker = await Worker.create(client, {
    workflows: [pingPong, charge, saga, helpers],
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
  console.log(answer, cents, wrong);
  await worker.shutdown();
}
