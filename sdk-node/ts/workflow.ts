/** Workflow definitions ({@link workflow}) and {@link WorkflowContext}. */
import { AsyncLocalStorage } from "node:async_hooks";

import { Attempts, INTERRUPTED, type StepFn } from "./attempt";
import type { Client } from "./client";
import { type Codec, jsonCodec } from "./codec";
import type { Deliveries, Outcome } from "./deliveries";
import { type Duration, parseDuration } from "./duration";
import {
  ApplicationError,
  Cancelled,
  call,
  callSync,
  failureOf,
  fromNative,
  InvalidArgument,
  NonRetryableError,
  NotFound,
  NotRunning,
  ResourceExhausted,
  WorkflowFailed,
} from "./errors";
import { consoleSink, type LogSink, type WorkflowLogger, workflowLogger } from "./log";
import native from "./native";
import { checkRetryPolicy, type RetryPolicy } from "./retry";

type NativeRetryPolicy = native.NativeRetryPolicy;
type NativeRun = native.NativeRun;
type NativeSlot = native.NativeSlot;

/**
 * The step name {@link WorkflowContext.now} commits the owner's clock under
 * (`"raftoral.now"`, the same in every SDK), as it appears in a history.
 */
export const NOW_STEP: string = native.NOW_STEP;

/** Options of {@link workflow}. */
export interface WorkflowOptions {
  /** Version registered with the cluster (default 1). */
  version?: number;
  /**
   * Retry policy of the workflow's steps that have none of their own
   * (default: the worker's, else 1 s, ×2, at most 60 s, 10 attempts).
   * Checked here: a bad one throws {@link InvalidArgument}.
   */
  retry?: RetryPolicy;
}

/**
 * Options of {@link WorkflowContext.checkpoint}.
 *
 * @example
 * ```ts
 * const options: CheckpointOptions = { retry: { maximumAttempts: 3, initialIntervalMs: 200 } };
 * await ctx.checkpoint("reserve", () => reserve(sku), options);
 * ```
 */
export interface CheckpointOptions {
  /**
   * Retry policy of this step when its function throws (default: the
   * workflow's, else the worker's, else 1 s, ×2, at most 60 s, 10 attempts).
   */
  retry?: RetryPolicy;
}

/**
 * Options of {@link WorkflowContext.sleep} and
 * {@link WorkflowContext.sleepUntil}.
 *
 * @example
 * ```ts
 * await ctx.sleep("1h", { name: "cool-down" });
 * ```
 */
export interface SleepOptions {
  /**
   * The timer's name in the history, checked on replay as a step's name is
   * (default `"sleep"`). Not empty; at most 256 bytes.
   */
  name?: string;
}

/**
 * Options of {@link WorkflowContext.waitEvent}.
 *
 * @example
 * ```ts
 * const options: WaitEventOptions = { timeout: "24h" };
 * const approval = await ctx.waitEvent<{ approved: boolean }>("approval", options);
 * ```
 */
export interface WaitEventOptions {
  /**
   * How long to wait after the wait is committed: a number of milliseconds
   * or a string such as `"30s"` or `"24h"` (see {@link parseDuration}), at
   * most 366 days. When it passes before an event comes, the wait resolves
   * with `null`. Absent: no timeout (the wait lasts until an event comes,
   * or the workflow is cancelled).
   */
  timeout?: Duration;
}

/**
 * Options of {@link WorkflowContext.events}.
 *
 * @example
 * ```ts
 * const options: EventsOptions = { timeout: "1h" };
 * for await (const item of ctx.events<string>("add", options)) {
 *   items.push(item);
 * }
 * ```
 */
export interface EventsOptions {
  /**
   * The timeout of each item's wait, as {@link WaitEventOptions.timeout}
   * takes it (a number of milliseconds or a string such as `"1h"`, at most
   * 366 days), counted from the commit of that wait: the iteration ends
   * at the first wait it passes before an event comes. Absent: no
   * timeout, and the iteration never ends by itself.
   */
  timeout?: Duration;
}

/**
 * An awakeable ({@link WorkflowContext.awakeable}): a durable promise of
 * this workflow that the outside completes once, by `id`.
 *
 * @example
 * ```ts
 * const paid: Awakeable<{ receipt: string }> = ctx.awakeable<{ receipt: string }>();
 * await ctx.checkpoint("ask for payment", () => requestPayment(order, { callback: paid.id }));
 * const { receipt } = await paid.promise;
 * ```
 */
export interface Awakeable<T> {
  /**
   * The id that completes it (`awk/SEQ/WORKFLOW_ID`), with
   * `client.resolveAwakeable(id, value)` or
   * `client.rejectAwakeable(id, message, type)` through any node. The same
   * on every replica and in every replay; hand it out in a step or with
   * {@link WorkflowContext.setStatus}.
   */
  readonly id: string;
  /**
   * Resolves with the value it is resolved with (decoded with the
   * client's codec), or rejects with `StepFailed` (`type` and `error` are
   * the rejection's type and message) when it is rejected; with
   * {@link Cancelled} where the workflow's cancellation is delivered.
   */
  readonly promise: Promise<T>;
}

/**
 * What happens to a child workflow still running when its parent ends:
 * `"cancel"` (the default: a cancel request, so the child's code gets
 * `Cancelled` and may clean up for 30 s), `"abandon"` (it runs on to its own
 * end), or `"terminate"` (it ends at once, cancelled, without cleanup).
 */
export type ParentClose = "cancel" | "abandon" | "terminate";

/**
 * Options of {@link WorkflowContext.startChild} and
 * {@link WorkflowContext.callChild}.
 *
 * @example
 * ```ts
 * const options: ChildOptions = { id: `invoice-${order}`, parentClose: "abandon" };
 * const invoice = await ctx.startChild<string>("invoice", order, options);
 * ```
 */
export interface ChildOptions {
  /**
   * The child's workflow id (not empty, not the parent's own). Absent:
   * `PARENT_ID/SEQ`, the parent's id and the child's position in the
   * parent's history, the same in every replay.
   */
  id?: string;
  /**
   * The child's workflow version (0 means 1). Default: the version of the
   * {@link Workflow} given, else 1.
   */
  version?: number;
  /** What happens to the child if the parent ends first (default `"cancel"`). */
  parentClose?: ParentClose;
}

/**
 * A started child workflow ({@link WorkflowContext.startChild}).
 *
 * @example
 * ```ts
 * const child: ChildHandle<string> = await ctx.startChild<string>("ship", parcel);
 * await ctx.setStatus("shipment", child.id);
 * const tracking: string = await child.result;
 * ```
 */
export interface ChildHandle<T> {
  /** The child's workflow id, for the client API (`client.getWorkflow(id)`). */
  readonly id: string;
  /**
   * Resolves with the child's result (decoded with the client's codec), or
   * rejects with `StepFailed` when the child failed: `type` and `error` are
   * the child's failure type and message (`raftoral.ChildCancelled` for a
   * cancelled child, `raftoral.WorkflowTimeout` for one that timed out,
   * `raftoral.ChildIdInUse` when another workflow holds its id); with
   * {@link Cancelled} where this workflow's cancellation is delivered. Can
   * be raced with {@link WorkflowContext.first}; never rejects unhandled.
   */
  readonly result: Promise<T>;
}

/** The timer name of a sleep without one, the same in every SDK. */
const SLEEP = "sleep";

/** The longest timeout of an event wait, the core's (366 days), checked by the addon too. */
const MAX_WAIT_MS = 366 * 24 * 3600 * 1000;

/**
 * What {@link WorkflowContext.first} resolves with: `index`, the position
 * among its arguments of the operation resolved first (in the workflow's
 * history, the same on every replica and in every replay), and `value`,
 * what that operation's promise resolved with. For arguments of known
 * types (a tuple), a union with one member per argument: testing `index`
 * narrows `value` to that argument's type.
 *
 * @example
 * ```ts
 * const deadline: Promise<void> = ctx.sleep("30m", { name: "deadline" });
 * const payment: Promise<string> = ctx.checkpoint("payment", () => pay(order));
 * const won: FirstResult<[Promise<void>, Promise<string>]> = await ctx.first(deadline, payment);
 * if (won.index === 1) {
 *   const receipt: string = won.value;
 * }
 * ```
 */
export type FirstResult<T extends readonly unknown[]> = {
  [K in keyof T]: {
    /** The index of the winning argument. */
    index: K extends `${infer N extends number}` ? N : number;
    /** What the winner resolved with. */
    value: Awaited<T[K]>;
  };
}[number];

/** A workflow type a child is started as: a {@link Workflow}, or its name and version. */
export interface WorkflowRef {
  /** Workflow type. */
  readonly name: string;
  /** Workflow version. */
  readonly version: number;
}

/** The function of a workflow: `(ctx, input) => output`. */
export type WorkflowFn<I, O> = (ctx: WorkflowContext, input: I) => O | Promise<O>;

/**
 * A workflow definition: name, version and function. Input and output types
 * flow from it to `client.startWorkflow` and `handle.result()`.
 */
export interface Workflow<I, O> {
  /** Workflow type. */
  readonly name: string;
  /** Workflow version. */
  readonly version: number;
  /** The function. */
  readonly fn: WorkflowFn<I, O>;
  /** Retry policy of its steps that have none of their own. */
  readonly retry?: RetryPolicy;
}

/**
 * Declares a workflow. Throws {@link InvalidArgument} for an empty name, a
 * bad version or a bad `retry` policy.
 *
 * @example
 * ```ts
 * const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text: string) =>
 *   ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")));
 *
 * // Steps of `order` that fail are tried 5 times, from 500 ms apart.
 * const order = workflow("order", { version: 1, retry: { initialIntervalMs: 500, maximumAttempts: 5 } },
 *   async (ctx, id: string) => ctx.checkpoint("ship", () => ship(id)));
 * ```
 */
export function workflow<I, O>(name: string, options: WorkflowOptions, fn: WorkflowFn<I, O>): Workflow<I, O> {
  if (!name) {
    throw new InvalidArgument("a workflow name must not be empty");
  }
  const version = options.version ?? 1;
  if (!Number.isInteger(version) || version < 0) {
    throw new InvalidArgument(`workflow '${name}': version must be a non-negative integer`);
  }
  if (options.retry === undefined) {
    return Object.freeze({ name, version, fn });
  }
  // Checked here, where it is written; the worker uses this checked copy.
  const retry: RetryPolicy = checkRetryPolicy(options.retry, `workflow '${name}'`);
  return Object.freeze({ name, version, fn, retry });
}

const current = new AsyncLocalStorage<WorkflowContext>();

/**
 * The context of one workflow run, passed as the first argument.
 *
 * Every checkpoint is committed through Raft before the function goes on.
 * On the owner, the step's function runs once per successful commit; on
 * replicas and on replay the committed value is returned without running it.
 * A step whose function throws is retried per its {@link RetryPolicy}, and
 * once it fails for good it throws `StepFailed`, the same on every replica
 * and in every replay.
 *
 * Steps may run side by side: `await Promise.all([ctx.checkpoint("a", fa),
 * ctx.checkpoint("b", fb)])` runs `fa` and `fb` at once. Each step takes its
 * position when it is called, and the branches get their results in the
 * order the steps committed, one branch at a time, so a replay takes the
 * same positions. Between steps, branches running side by side should
 * await only this context's operations (a non-durable await can make a
 * replay diverge).
 *
 * Durable timers ({@link WorkflowContext.sleep},
 * {@link WorkflowContext.sleepUntil}) take positions as steps do and may run
 * side by side with them; {@link WorkflowContext.first} races sleeps,
 * steps, event waits and awakeables started side by side (a deadline,
 * say), deterministically. A
 * workflow waits durably for an event sent from outside
 * (`client.signalWorkflow`, `client.signalWithStart`) with
 * {@link WorkflowContext.waitEvent}, for a completion from outside by id
 * (a webhook's callback, a person's answer) with
 * {@link WorkflowContext.awakeable} (`client.resolveAwakeable`), and tells
 * the outside how it is doing with {@link WorkflowContext.setStatus}
 * (`client.getStatus`).
 *
 * Code between steps runs again in every replay and on every replica, so it
 * must decide the same each time: take the time from
 * {@link WorkflowContext.now}, random numbers and ids from
 * {@link WorkflowContext.random} and {@link WorkflowContext.uuid}, and log
 * through {@link WorkflowContext.log}, which writes each line once.
 *
 * A cancel (`client.cancelWorkflow`) of a running workflow is a request
 * with a cleanup window: the step or sleep the function awaits rejects
 * with {@link Cancelled} (or the next one it takes), the same on every
 * replica and in every replay; the steps after it run as usual, so the
 * function can compensate, then throw the `Cancelled` again to end the
 * workflow CANCELLED:
 *
 * ```ts
 * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
 *   await ctx.checkpoint("reserve", () => reserve(id));
 *   try {
 *     await ctx.checkpoint("charge", ({ signal }) => charge(id, { signal }));
 *   } catch (e) {
 *     if (e instanceof Cancelled) {
 *       await ctx.checkpoint("release", () => release(id));
 *     }
 *     throw e;
 *   }
 *   return ctx.checkpoint("ship", () => ship(id));
 * });
 * ```
 */
export class WorkflowContext {
  /**
   * Aborted (with {@link Cancelled}) once the workflow's cancel is
   * requested, or it is cancelled for good, and aborted for good: code
   * between steps can check it to stop early, or pass it to work that
   * must stop then. A step's function gets a signal of its own
   * (`StepInfo.signal`), aborted only when that attempt must stop: use
   * that one inside steps, as compensation steps run after a cancellation
   * with `ctx.signal` aborted.
   */
  readonly signal: AbortSignal;
  #run: NativeRun;
  #codec: Codec;
  /** Policy of the steps without one (the workflow's, the worker's or the defaults). */
  #retry: NativeRetryPolicy;
  #active = true;
  /** Where the outcomes of this run's native waits come from (the worker's). */
  #deliveries: Deliveries;
  /**
   * Outcomes ready for this run's code, in the order the core handed them
   * out, each given in a turn of the event loop of its own (see #handOut).
   */
  #ready: (() => void)[] = [];
  #handing = false;
  /** Runs the attempts of this run's steps (interruptions, attempt timeouts). */
  #attempts: Attempts;
  #sink: LogSink;
  #log: WorkflowLogger | undefined;
  /** The worker's client: the calls to other workflows go through it. */
  #client: Client | undefined;
  /**
   * The positions of the durable operations (sleeps, steps, event waits,
   * awakeables) the code started, by the promise each returned: what
   * {@link WorkflowContext.first} races.
   */
  readonly #positions = new WeakMap<Promise<unknown>, number>();
  /** Operations refused before they took a position: `first` rejects with their error. */
  readonly #refused = new WeakSet<Promise<unknown>>();
  /** Operations that lost a `first`: abandoned, never raced again. */
  readonly #lost = new WeakSet<Promise<unknown>>();
  /** The promises of the items of {@link WorkflowContext.events}: `first` refuses them, saying why. */
  readonly #items = new WeakSet<Promise<unknown>>();

  /** @internal Created by the worker. */
  constructor(
    run: NativeRun,
    codec: Codec,
    signal: AbortSignal,
    deliveries: Deliveries,
    retry: NativeRetryPolicy = {},
    sink: LogSink = consoleSink,
    client?: Client,
  ) {
    this.#client = client;
    this.#run = run;
    this.#codec = codec;
    this.signal = signal;
    this.#attempts = new Attempts(run);
    this.#deliveries = deliveries;
    this.#retry = retry;
    this.#sink = sink;
  }

  /** Id of this workflow instance. */
  get workflowId(): string {
    return this.#run.workflowId;
  }

  /** Workflow type. */
  get workflowName(): string {
    return this.#run.workflowName;
  }

  /** Workflow version. */
  get version(): number {
    return this.#run.version;
  }

  /**
   * A durable step named `name`: `fn` (sync or async) runs on the owner only,
   * its value is committed, and every replica returns the committed value.
   *
   * When `fn` throws, the attempt's failure is committed and `fn` runs again
   * after the delay of the retry policy (`options.retry`, else the
   * workflow's, the worker's or the defaults: 1 s, ×2, at most 60 s, 10
   * attempts); `fn` gets the attempt number (`{ attempt }`, 1-based) and
   * the attempt's `signal`. An attempt that outlasts the policy's
   * `attemptTimeoutMs` has that signal aborted, is no longer waited for and
   * fails as type `AttemptTimeout` (retried like any failure). Once
   * the step fails for good (a `NonRetryableError`, a non-retryable
   * type, or the attempts are spent) it rejects with `StepFailed`, here and
   * on every replica and replay: catch it to compensate, or let it fail the
   * workflow with the step's error.
   *
   * Also rejects with {@link Cancelled} where the workflow's cancellation is
   * delivered: a cancel request reaches the steps and sleeps the workflow
   * awaits then (a running attempt is stopped: its `signal` aborts, and
   * its outcome is dropped), or the next one it takes; the steps after it
   * run as usual (compensation), until the cleanup window runs out or for
   * a cancel without cleanup, when every step rejects with it. Rejects
   * with `NonDeterminism` when the history has another name at this
   * position, with {@link InvalidArgument} when the value cannot be
   * encoded (nothing is committed then) or the retry policy is wrong.
   *
   * @example
   * ```ts
   * const total = await ctx.checkpoint("total", async () => (await fetchPrices()).sum);
   *
   * try {
   *   await ctx.checkpoint("charge", ({ attempt }) => pay(order, { idempotencyKey: `${order.id}-${attempt}` }), {
   *     retry: { maximumAttempts: 3, nonRetryableErrorTypes: ["CardDeclined"] },
   *   });
   * } catch (e) {
   *   if (!(e instanceof StepFailed)) throw e;
   *   await ctx.checkpoint("cancel order", () => cancelOrder(order));
   * }
   * ```
   */
  checkpoint<T>(name: string, fn: StepFn<T>, options?: CheckpointOptions): Promise<T> {
    return this.#checkpoint(name, fn, options, this.#codec);
  }

  /**
   * Races durable operations already started (their positions taken): the
   * promises returned by {@link WorkflowContext.sleep},
   * {@link WorkflowContext.sleepUntil}, {@link WorkflowContext.checkpoint}
   * (or the `checkpoint` function), {@link WorkflowContext.now} and
   * {@link WorkflowContext.waitEvent} and {@link WorkflowContext.callChild}
   * of this workflow, the `promise` of its awakeables
   * ({@link WorkflowContext.awakeable}) and the `result` of its children
   * ({@link WorkflowContext.startChild}), not awaited yet. Resolves with the winner ({@link FirstResult}: its `index` among
   * the arguments and its `value`): the operation whose resolution the
   * workflow's history committed first, the same on the owner, on every
   * replica and in every replay, so the code after it takes the same
   * positions each time (which a `Promise.race` of the same promises does
   * not promise).
   *
   * The others lose and are abandoned: a losing sleep is cancelled (its
   * timer never fires; the history records `TIMER_CANCELLED` at its
   * position, and `first` resolves once that is committed); a losing
   * event wait or awakeable is cancelled too (`EVENT_WAIT_CANCELLED` at
   * its position): an event that wait took meanwhile is given back to
   * the workflow, and the next wait of its name gets it; a losing step
   * runs on to its commit (its value is committed if the workflow is
   * still running then) and its result is dropped, and so does a losing
   * child (left to its parent-close policy when this workflow ends). A loser's promise may
   * settle later or never; its rejection is never unhandled. A lost
   * operation cannot be raced again.
   *
   * A step that fails for good is a resolution too: when it wins, `first`
   * rejects with its `StepFailed` (so does a rejected awakeable). A wait
   * with a `timeout` that passes first wins with `null`. Also rejects
   * with `TypeError` for an argument that is not such a promise of this
   * workflow (a plain promise, a `Promise.race`, a `.then` of one, a
   * promise of another workflow, an operation that lost a race, a
   * {@link WorkflowContext.setStatus}, an item of
   * {@link WorkflowContext.events}: race a `waitEvent` instead), with
   * {@link InvalidArgument} for no argument or the same
   * operation twice, with the error of an operation refused before it took
   * a position (a bad duration), and with {@link Cancelled} when the
   * workflow is cancelled meanwhile.
   *
   * @example
   * ```ts
   * const deadline = ctx.sleep("30m", { name: "payment-deadline" });
   * const payment = ctx.checkpoint("wait for payment", () => waitForPayment(order));
   * const won = await ctx.first(deadline, payment);
   * if (won.index === 0) {
   *   await ctx.checkpoint("cancel order", () => cancelOrder(order));
   * } else {
   *   await ctx.checkpoint("ship", () => ship(order, won.value));
   * }
   *
   * // An approval raced with a day: whichever the history resolved first.
   * const approval = ctx.waitEvent<{ approved: boolean }>("approval");
   * const reminder = ctx.sleep("24h", { name: "reminder" });
   * const answer = await ctx.first(approval, reminder);
   * if (answer.index === 1) {
   *   // No answer within a day: the wait is cancelled (an approval sent
   *   // from now on waits in the inbox for the next wait of its name).
   *   await ctx.checkpoint("remind", () => remind(order));
   * }
   * ```
   */
  async first<T extends Promise<unknown>[]>(...ops: T): Promise<FirstResult<T>> {
    // Whatever happens next, a loser's rejection is never unhandled (the
    // winner's still reaches the await below).
    for (const op of ops) {
      if (op instanceof Promise) {
        op.catch(ignore);
      }
    }
    if (!this.#active) {
      throw new InvalidArgument(
        `first() called after workflow '${this.workflowId}' finished; it belongs inside the workflow function`,
      );
    }
    if (ops.length === 0) {
      throw new InvalidArgument("first() needs at least one operation");
    }
    const seqs: number[] = [];
    for (const [i, op] of ops.entries()) {
      if (op instanceof Promise && this.#refused.has(op)) {
        // Refused before it took a position: its own error says why.
        await op;
      }
      const seq = op instanceof Promise ? this.#positions.get(op) : undefined;
      if (seq === undefined) {
        let what: string = typeof op;
        if (op instanceof Promise) {
          if (this.#lost.has(op)) {
            what = "an operation that lost a race";
          } else if (this.#items.has(op)) {
            what =
              "the next item of ctx.events, which cannot be raced (race a ctx.waitEvent, or give ctx.events a timeout)";
          } else {
            what = "another promise";
          }
        }
        throw new TypeError(
          `first() takes the promises of this workflow's ctx.sleep, ctx.sleepUntil, ctx.checkpoint, ctx.now, ctx.waitEvent and ctx.callChild calls and of its awakeables and children's results; argument ${i} is ${what}`,
        );
      }
      if (seqs.includes(seq)) {
        throw new InvalidArgument(`first() got the operation at position ${seq} twice (argument ${i})`);
      }
      seqs.push(seq);
    }
    // The winner, handed out in its turn like a step's value; the core has
    // abandoned the others by then (and cancelled a timer or a wait).
    const { winner } = await this.#wait((key) => this.#run.firstOf(seqs, key));
    const index = winner ?? 0;
    for (const [i, op] of ops.entries()) {
      if (i !== index) {
        this.#positions.delete(op);
        this.#lost.add(op);
      }
    }
    const value = await ops[index];
    return { index, value } as FirstResult<T>;
  }

  /**
   * The current time, recorded: the owner reads its clock (`Date.now()`) in
   * a step named {@link NOW_STEP}, so replicas and every replay get the same
   * instant. It costs a step: read it once and keep it, not in a loop. Its
   * value is committed as a JSON integer (milliseconds since the Unix
   * epoch) whatever the client's codec, as every SDK commits it.
   *
   * Rejects as {@link WorkflowContext.checkpoint} does.
   *
   * @example
   * ```ts
   * const started = await ctx.now();
   * const deadline = new Date(started.getTime() + 24 * 3600 * 1000);
   * ```
   */
  now(): Promise<Date> {
    const step = this.#checkpoint(NOW_STEP, () => Date.now(), undefined, jsonCodec);
    // The same operation for `first`: its position is the step's.
    return this.#sameAs(
      step,
      step.then((ms) => new Date(ms)),
    );
  }

  /**
   * Sleeps durably for `duration`: a number of milliseconds, or a string
   * such as `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"` (see
   * {@link parseDuration}). The timer is committed with its deadline (the
   * start's commit time plus `duration`) and fired by the cluster, never
   * by a worker's clock: the sleep survives the death of its worker, of
   * the owner and of the Raft leader, resumes on whichever worker runs the
   * workflow then, and a replay of a sleep that already fired returns
   * without waiting. At most 366 days: sleep in several steps for longer.
   *
   * Takes a position as a step does, when it is called (before the promise
   * is returned): `Promise.all([ctx.sleep("1s"), ctx.checkpoint("a", fa)])`
   * takes the sleep's position, then the step's. `options.name` names the
   * timer in the history (default `"sleep"`); on replay a step where the
   * history has a timer, or a timer with another name, is non-determinism
   * (a changed duration is not: the committed deadline stands).
   *
   * Rejects with `TypeError` for a duration it cannot read, with
   * {@link InvalidArgument} for a negative one (its message says
   * `negative`) or one beyond 366 days (it says `366 days`), with
   * {@link Cancelled} when the workflow's cancellation is delivered there
   * (a cancel request while it sleeps: the timer is cancelled, and the
   * steps after it run as usual; see {@link WorkflowContext.checkpoint}),
   * with `NonDeterminism` as above.
   *
   * @example
   * ```ts
   * await ctx.checkpoint("send reminder", () => mail(user, "Your trial ends tomorrow"));
   * await ctx.sleep("1d", { name: "trial-end" });
   * await ctx.checkpoint("end trial", () => endTrial(user));
   *
   * // A timer raced against a step: whichever the history resolved first.
   * const timeout = ctx.sleep(30_000, { name: "ask-timeout" });
   * const reply = ctx.checkpoint("ask", () => ask(user));
   * const won = await ctx.first(timeout, reply);
   * const answer = won.index === 1 ? won.value : null;
   * ```
   */
  sleep(duration: Duration, options?: SleepOptions): Promise<void> {
    let ms: number;
    try {
      ms = parseDuration(duration);
    } catch (e) {
      return this.#refuse(e);
    }
    return this.#sleep(ms, options);
  }

  /**
   * Sleeps durably until `when` (a `Date`, or milliseconds since the Unix
   * epoch): a {@link WorkflowContext.sleep} of `when` minus the current
   * time (`Date.now()`), or of 0 when `when` has passed (that timer is
   * still recorded, and fires at once). The duration is what is committed
   * when the timer starts, so a replay waits for the same deadline
   * whatever its clock says.
   *
   * Rejects with `TypeError` for anything but a valid `Date` or a number,
   * otherwise as {@link WorkflowContext.sleep} does.
   *
   * @example
   * ```ts
   * const started = await ctx.now();
   * await ctx.sleepUntil(new Date(started.getTime() + 7 * 24 * 3600 * 1000), { name: "one week in" });
   * ```
   */
  sleepUntil(when: Date | number, options?: SleepOptions): Promise<void> {
    const at = when instanceof Date ? when.getTime() : when;
    if (typeof at !== "number" || Number.isNaN(at)) {
      return this.#refuse(
        new TypeError(
          `sleepUntil takes a valid Date or a number of milliseconds since the Unix epoch, not ${String(when)}`,
        ),
      );
    }
    return this.#sleep(Math.max(0, at - Date.now()), options);
  }

  /**
   * Waits durably for the event `name` sent to this workflow
   * (`client.signalWorkflow(id, name, payload)` or `handle.signal`):
   * resolves with its payload, decoded with the client's codec, or with
   * `null` when `options.timeout` passed before an event came. (With the
   * JSON codec, an event sent without a payload resolves with `undefined`;
   * send something other than `null` when the code must tell an event
   * from a timeout.)
   *
   * Events sent before the wait wait in the workflow's durable inbox, and
   * the events of a name are taken first in, first out, each by one wait.
   * Which of the event and the timeout comes first is decided by the
   * cluster's log, the same on the owner, on every replica and in every
   * replay; an event sent after a wait timed out stays in the inbox for the
   * next wait of its name. The wait survives the death of its worker, of
   * the owner and of the Raft leader, like a sleep.
   *
   * Takes a position as a step does, when it is called (before the promise
   * is returned), so `Promise.all([ctx.waitEvent("a"), ctx.waitEvent("b")])`
   * waits for both, with positions in call order. On replay a step, a
   * sleep or a wait for another name at that position is non-determinism.
   * A wait can be raced with {@link WorkflowContext.first} (against a
   * sleep, a step, another wait): a losing wait is cancelled, and an
   * event it took meanwhile goes back to the workflow for the next wait
   * of its name.
   *
   * Throws at the call, before any position is taken:
   * {@link InvalidArgument} for an empty name, a `timeout` it cannot read,
   * a negative one or one beyond 366 days (sleep in several steps and wait
   * again for longer), or a call after the workflow finished;
   * `NonDeterminism` as above. The promise rejects with {@link Cancelled}
   * when the workflow's cancellation is delivered there (a cancel request
   * while it waits ends the wait; the steps after it run as usual, see
   * {@link WorkflowContext.checkpoint}).
   *
   * @example
   * ```ts
   * // An order waits a day for a person's approval.
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   await ctx.checkpoint("ask", () => askForApproval(id));
   *   const answer = await ctx.waitEvent<{ approved: boolean }>("approval", { timeout: "24h" });
   *   if (answer === null) {
   *     return ctx.checkpoint("expire", () => expire(id)); // nobody answered within 24 h
   *   }
   *   return answer.approved ? ctx.checkpoint("ship", () => ship(id)) : "rejected";
   * });
   *
   * // Or raced with a sleep: remind after a day, then wait on.
   * const approval = ctx.waitEvent<{ approved: boolean }>("approval");
   * const won = await ctx.first(approval, ctx.sleep("24h", { name: "reminder" }));
   * if (won.index === 1) {
   *   await ctx.checkpoint("remind", () => remind(id));
   *   await ctx.waitEvent<{ approved: boolean }>("approval"); // takes an approval sent since
   * }
   *
   * // Elsewhere, when the person clicks "approve":
   * await client.signalWorkflow("order-42", "approval", { approved: true });
   * ```
   */
  waitEvent<T = unknown>(name: string, options?: WaitEventOptions): Promise<T | null> {
    const timeoutMs = this.#eventTimeout(name, options?.timeout, "waitEvent");
    const codec = this.#codec;
    // A slot without a value is a timeout (null); with one, the payload.
    const event = this.#event(name, timeoutMs, "waitEvent");
    // The same operation for `first`: its position is the wait's.
    return this.#sameAs(
      event,
      event.then((slot) => (slot.value == null ? null : (codec.decode(slot.value) as T))),
    );
  }

  /**
   * The events named `name` as an async iterable, first in, first out:
   * `for await (const item of ctx.events<T>(name)) { ... }`. Each item is
   * one durable wait, a {@link WorkflowContext.waitEvent} for `name` with
   * `options.timeout`, taken when the code asks for the next item (never
   * ahead of time), so the history is exactly that of the same waits one
   * after another, and the events it does not take stay in the inbox.
   * Events sent before the iteration starts are its first items.
   *
   * With `options.timeout` (for each wait, from its commit), the iteration
   * ends at the first wait that times out; an event sent after that stays
   * in the inbox for the next wait of its name. Without one it never ends
   * by itself: `break` out of the loop (or stop calling `next()`) when the
   * code has what it needs; nothing more is waited for.
   *
   * The iteration tells a timeout from an event as
   * {@link WorkflowContext.waitEvent} does, by what the cluster
   * committed (an event or a timeout), never by the decoded payload: an
   * event whose payload is `null` is an item `null`, and one sent without
   * a payload an item `undefined` (with the JSON codec), neither ends it.
   *
   * `events()` itself takes no position, and throws at the call
   * {@link InvalidArgument} for an empty name, a `timeout` it cannot read,
   * a negative one or one beyond 366 days, or a call after the workflow
   * finished. An error of a wait (`NonDeterminism`, {@link Cancelled}
   * where the workflow's cancellation is delivered, {@link InvalidArgument}
   * for a name the core reserves) is thrown by that item, and ends the
   * iteration. Items are waits, one at a time: a `next()` called before
   * the last item came takes its wait once that item came, and an item's
   * promise cannot be raced with {@link WorkflowContext.first} (give a
   * `timeout`, or race a {@link WorkflowContext.waitEvent} instead).
   *
   * @example
   * ```ts
   * // A cart takes items until an hour passes without one.
   * const cart = workflow("cart", { version: 1 }, async (ctx, items: string[]) => {
   *   for await (const item of ctx.events<string>("add", { timeout: "1h" })) {
   *     items.push(item);
   *   }
   *   return ctx.checkpoint("checkout", () => checkout(items));
   * });
   *
   * // The first three votes, however long they take.
   * const votes: boolean[] = [];
   * for await (const vote of ctx.events<boolean>("vote")) {
   *   votes.push(vote);
   *   if (votes.length === 3) break;
   * }
   * ```
   */
  events<T = unknown>(name: string, options?: EventsOptions): AsyncIterableIterator<T> {
    const timeoutMs = this.#eventTimeout(name, options?.timeout, "events");
    // Checked here, at the call, as waitEvent's addon checks it: the first
    // wait is only taken by the first next().
    if (timeoutMs !== undefined && Math.ceil(timeoutMs) > MAX_WAIT_MS) {
      throw new InvalidArgument(
        `the wait for event '${name}' of workflow '${this.workflowId}' has a timeout over 366 days; wait in several steps for longer`,
      );
    }
    const items = this.#eventItems<T>(name, timeoutMs);
    const pending = this.#items;
    return {
      next(): Promise<IteratorResult<T>> {
        const item = items.next();
        pending.add(item);
        return item;
      },
      return(): Promise<IteratorResult<T>> {
        return items.return();
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** The items of {@link WorkflowContext.events}: each a wait taken when it is asked for. */
  async *#eventItems<T>(name: string, timeoutMs: number | undefined): AsyncGenerator<T, void, undefined> {
    for (;;) {
      const slot = await this.#event(name, timeoutMs, "events");
      if (slot.value == null) {
        return; // timed out
      }
      yield this.#codec.decode(slot.value) as T;
    }
  }

  /**
   * The timeout of a wait for `name` in milliseconds (none: `undefined`);
   * throws {@link InvalidArgument} for a bad name or timeout, or after the
   * workflow finished.
   */
  #eventTimeout(name: string, timeout: Duration | undefined, what: string): number | undefined {
    if (typeof name !== "string" || name === "") {
      throw new InvalidArgument("the name of an event wait must be a non-empty string");
    }
    this.#refuseAfterEnd(`${what}('${name}')`);
    if (timeout === undefined) {
      return undefined;
    }
    try {
      return parseDuration(timeout);
    } catch (e) {
      throw new InvalidArgument(
        `the wait for event '${name}' of workflow '${this.workflowId}': bad timeout: ${(e as Error).message}`,
      );
    }
  }

  /**
   * A wait for the event `name`, its position taken now (before any
   * await, as a step's is); its slot handed out in its turn like a step's
   * value: with the event's payload, or without a value when it timed out.
   * Throws when no position is taken (the addon refuses a timeout beyond
   * 366 days, a call after the workflow finished, non-determinism).
   */
  #event(name: string, timeoutMs: number | undefined, what: string): Promise<NativeSlot> {
    this.#refuseAfterEnd(`${what}('${name}')`);
    const seq = callSync(() => this.#run.requestEvent(name, timeoutMs));
    return this.#durable(
      seq,
      this.#wait((key) => this.#run.event(seq, key)),
    );
  }

  /**
   * Sets this workflow's readable status `key` to `value`: a small summary
   * for the outside (a stage, a progress count, the last error), read
   * with `client.getStatus(id)` from any node, also while this workflow's
   * owner is down and after the workflow ended. The value is encoded with
   * the client's codec, as a step's value is, and stored as it comes out
   * (with the JSON codec, an `undefined` value reads back as `undefined`);
   * at most 64 KiB encoded: data belongs in a step's value.
   * Setting a key again replaces what readers get; the history keeps every
   * value (`STATUS_SET` entries).
   *
   * Takes a position as a step does, when it is called (before the promise
   * is returned), and resolves once the value is committed; a replay (or a
   * replica) resolves at once without setting it again. On replay a step,
   * a sleep, a wait or another key at that position is non-determinism.
   * Not for racing with {@link WorkflowContext.first}.
   *
   * Rejects, before any position is taken, with {@link InvalidArgument}
   * for an empty key, a value the codec cannot encode, a value over 64 KiB
   * encoded (the message says `over the 65536-byte
   * limit`), or a call after the workflow finished; with `NonDeterminism`
   * as above; with {@link Cancelled} where the workflow's cancellation is
   * delivered, as a step does.
   *
   * @example
   * ```ts
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   await ctx.setStatus("stage", "charging");
   *   await ctx.checkpoint("charge", () => charge(id));
   *   await ctx.setStatus("stage", "shipping");
   *   await ctx.checkpoint("ship", () => ship(id));
   *   await ctx.setStatus("stage", "done");
   * });
   *
   * // Elsewhere, at any time:
   * const { stage } = await client.getStatus("order-42");
   * ```
   */
  setStatus(key: string, value: unknown): Promise<void> {
    if (typeof key !== "string" || key === "") {
      return Promise.reject(new InvalidArgument("the key of a status value must be a non-empty string"));
    }
    if (!this.#active) {
      return Promise.reject(
        new InvalidArgument(
          `setStatus('${key}') called after workflow '${this.workflowId}' finished; it belongs inside the workflow function`,
        ),
      );
    }
    let data: Uint8Array;
    try {
      data = this.#codec.encode(value);
    } catch (e) {
      return Promise.reject(
        new InvalidArgument(
          `status '${key}' of workflow '${this.workflowId}': cannot encode its value: ${(e as Error).message}; set a JSON-compatible value`,
        ),
      );
    }
    // The position is taken now, before any await, as a step's is; the
    // addon refuses a value over 64 KiB (nothing is taken then).
    let seq: number;
    try {
      seq = callSync(() => this.#run.requestStatus(key, Buffer.from(data)));
    } catch (e) {
      return Promise.reject(e);
    }
    // The commit, handed out in its turn like a step's value.
    return this.#wait((k) => this.#run.status(seq, k)).then(() => undefined);
  }

  /**
   * Creates an awakeable: a durable promise that the outside completes
   * once, by id, through any node: a webhook's callback, a person's
   * answer, another system's reply. Returns `{ id, promise }`
   * ({@link Awakeable}): hand `id` out (in a step that calls the other
   * system, or with {@link WorkflowContext.setStatus}), and await
   * `promise`, which resolves with the value given to
   * `client.resolveAwakeable(id, value)` (decoded with the client's
   * codec), or rejects with `StepFailed` when it is rejected with
   * `client.rejectAwakeable(id, message, type)` (`type` and `error` are
   * the rejection's; catch it as a step's failure). A completion that
   * comes before the code awaits `promise` is kept until it does; the
   * second completion of an id is refused (`AlreadyCompleted`).
   *
   * Takes a position as a step does, when it is called (the id says which:
   * `awk/SEQ/WORKFLOW_ID`), so the id is the same on every replica and in
   * every replay, and the wait survives the death of its worker, of the
   * owner and of the Raft leader, like {@link WorkflowContext.waitEvent}.
   * The wait starts at the call: `promise` never rejects unhandled, and an
   * awakeable never awaited is simply left. It has no timeout of its own:
   * when the code needs a deadline, race `promise` with a sleep with
   * {@link WorkflowContext.first} (a losing awakeable is cancelled: nothing
   * waits for a completion that comes later; see the example), or have the
   * side that completes it reject it once its deadline passes.
   * The history shows it as an event wait for the reserved name
   * `raftoral.awakeable.SEQ`.
   *
   * Throws at the call, before any position is taken:
   * {@link InvalidArgument} for a call after the workflow finished;
   * `NonDeterminism` when the history has another operation at this
   * position. `promise` rejects with {@link Cancelled} when the workflow's
   * cancellation is delivered there, as a wait does.
   *
   * @example
   * ```ts
   * // An order waits for the payment provider's webhook.
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   const paid = ctx.awakeable<{ receipt: string }>();
   *   await ctx.checkpoint("start payment", () => startPayment(id, { callbackId: paid.id }));
   *   try {
   *     const { receipt } = await paid.promise;
   *     return ctx.checkpoint("ship", () => ship(id, receipt));
   *   } catch (e) {
   *     if (!(e instanceof StepFailed)) throw e;
   *     return `payment failed: ${e.type}: ${e.error}`;
   *   }
   * });
   *
   * // In the webhook's handler, on any app connected to any node:
   * await client.resolveAwakeable(callbackId, { receipt: "r-9" });
   * // or: await client.rejectAwakeable(callbackId, "card declined", "Declined");
   *
   * // A deadline: the payment, or 24 h, whichever the history resolved first.
   * const paid = ctx.awakeable<{ receipt: string }>();
   * await ctx.checkpoint("start payment", () => startPayment(id, { callbackId: paid.id }));
   * const won = await ctx.first(paid.promise, ctx.sleep("24h", { name: "payment-deadline" }));
   * if (won.index === 1) return "payment timed out";
   * ```
   */
  awakeable<T = unknown>(): Awakeable<T> {
    this.#refuseAfterEnd("awakeable()");
    // The position is taken now, before any await, as a step's is.
    const { seq, id } = callSync(() => this.#run.requestAwakeable());
    const codec = this.#codec;
    // The wait starts now (its resolution is handed out in its turn like
    // a step's value); a rejection before the code awaits it is not an
    // unhandled one.
    // `first` races it at its position.
    const promise = this.#durable(
      seq,
      this.#wait((key) => this.#run.event(seq, key)).then(
        (slot) => codec.decode(slot.value ?? Buffer.alloc(0)) as T,
      ),
    );
    promise.catch(ignore);
    return Object.freeze({ id, promise });
  }

  /**
   * Starts the child workflow `workflow` (a {@link Workflow}, or a
   * workflow type's name, run by any app connected to the cluster) with
   * `input` (encoded with the client's codec), and resolves once its start
   * is committed, in the same entry as this workflow's record of it:
   * `{ id, result }` ({@link ChildHandle}). `result` resolves with the
   * child's result, or rejects with `StepFailed` when the child fails
   * (`type` and `error` are the child's failure type and message:
   * `raftoral.ChildCancelled` for a cancelled child), as a step's failure
   * does. A replay starts nothing: the child of this position exists.
   *
   * Takes a position as a step does, when it is called (before the promise
   * is returned), so children started side by side get positions in call
   * order. The child's id is `options.id`, else `PARENT_ID/SEQ` (its
   * position here), the same in every replay. Start several and await their
   * results together to fan out: `Promise.all(children.map((c) =>
   * c.result))`. `result` can be raced with {@link WorkflowContext.first}
   * (a losing child runs on; only its result is dropped), and never
   * rejects unhandled: a result nobody awaits is simply left.
   *
   * When this workflow ends while the child runs, the child meets
   * `options.parentClose`: `"cancel"` (the default), `"abandon"` or
   * `"terminate"` ({@link ParentClose}). A cancel request of this workflow
   * is delivered at the child's result as at a wait ({@link Cancelled});
   * the child is then left to its policy when this workflow ends.
   *
   * Rejects, before any position is taken, with {@link InvalidArgument}
   * for an input it cannot encode, an empty name or id, this workflow's own
   * id, a bad version or policy, or a call after the workflow finished;
   * with `NonDeterminism` when the history has another operation, or a
   * child of another type, at this position.
   *
   * @example
   * ```ts
   * // Fan out: one child per parcel, then every tracking number.
   * const order = workflow("order", { version: 1 }, async (ctx, parcels: string[]) => {
   *   const shipments = [];
   *   for (const parcel of parcels) {
   *     shipments.push(await ctx.startChild<string>(ship, parcel));
   *   }
   *   return Promise.all(shipments.map((s) => s.result));
   * });
   *
   * // A child raced with a deadline.
   * const report = await ctx.startChild<string>("report", month);
   * const won = await ctx.first(report.result, ctx.sleep("1h", { name: "report-deadline" }));
   * ```
   */
  startChild<I, O>(
    workflow: Workflow<I, O>,
    input: I,
    options?: ChildOptions,
  ): Promise<ChildHandle<Awaited<O>>>;
  startChild<T = unknown>(
    workflow: string | WorkflowRef,
    input?: unknown,
    options?: ChildOptions,
  ): Promise<ChildHandle<T>>;
  async startChild<T>(
    workflow: string | WorkflowRef,
    input?: unknown,
    options?: ChildOptions,
  ): Promise<ChildHandle<T>> {
    // The position is taken now, before any await (an async function runs
    // up to its first await at the call).
    const { id, result, started } = this.#child<T>(workflow, input, options, true);
    await started;
    return Object.freeze({ id, result });
  }

  /**
   * Starts the child workflow `workflow` with `input`, as
   * {@link WorkflowContext.startChild} does, and resolves with its result
   * (decoded with the client's codec). Rejects with `StepFailed` when the
   * child fails: `type` and `error` are the child's failure type and
   * message (`raftoral.ChildCancelled` for a cancelled child); catch it as
   * a step's failure. Can be raced with {@link WorkflowContext.first}.
   * Otherwise rejects as {@link WorkflowContext.startChild} does.
   *
   * @example
   * ```ts
   * const receipt = await ctx.callChild<string>("charge", { order, amount });
   * try {
   *   await ctx.callChild(refund, { order });
   * } catch (e) {
   *   if (!(e instanceof StepFailed)) throw e;
   *   ctx.log.warn(`refund failed: ${e.type}: ${e.error}`);
   * }
   * ```
   */
  callChild<I, O>(workflow: Workflow<I, O>, input: I, options?: ChildOptions): Promise<Awaited<O>>;
  callChild<T = unknown>(workflow: string | WorkflowRef, input?: unknown, options?: ChildOptions): Promise<T>;
  callChild<T>(workflow: string | WorkflowRef, input?: unknown, options?: ChildOptions): Promise<T> {
    try {
      return this.#child<T>(workflow, input, options, false).result;
    } catch (e) {
      return this.#refuse(e);
    }
  }

  /**
   * Sends the event `name` with `payload` (encoded with the client's
   * codec) to the workflow `target`, durably and once: a step named
   * `signal:${target}:${name}` whose value is `true` when the target had
   * the event already (a duplicate). The send carries the idempotency key
   * `${workflowId}/${position}` (this step's position), so a new owner
   * that sends again after a failover (the send went out, its commit did
   * not) delivers nothing twice; a replay sends nothing.
   *
   * Rejects with `StepFailed` (the step fails for good) of type
   * `raftoral.WorkflowNotFound` when `target` does not exist,
   * `raftoral.WorkflowEnded` when it has ended, `raftoral.SignalRefused`
   * for an event the cluster refuses (a bad name, a payload over the value
   * limit, a full inbox); an unreachable cluster is retried (default retry
   * policy; type `raftoral.Unavailable` once the attempts are spent).
   * Rejects with `InvalidArgument` for a payload the codec cannot encode
   * (no step is taken then). Can be raced with {@link WorkflowContext.first}.
   *
   * @example
   * ```ts
   * const shipping = workflow("shipping", { version: 1 }, async (ctx, order: string) => {
   *   const tracking = await ctx.checkpoint("ship", () => ship(order));
   *   await ctx.signalWorkflow(`order-${order}`, "shipped", { tracking });
   * });
   *
   * try {
   *   await ctx.signalWorkflow("order-42", "cancel", { reason: "out of stock" });
   * } catch (e) {
   *   if (!(e instanceof StepFailed && e.type === "raftoral.WorkflowEnded")) throw e;
   * }
   * ```
   */
  signalWorkflow(target: string, name: string, payload?: unknown): Promise<boolean> {
    if (typeof target !== "string" || typeof name !== "string") {
      return this.#refuse(
        new InvalidArgument("signalWorkflow(target, name, payload): target and name must be strings"),
      );
    }
    let data: Uint8Array;
    try {
      data = this.#codec.encode(payload);
    } catch (e) {
      return this.#refuse(
        new InvalidArgument(
          `event '${name}' for workflow '${target}' from workflow '${this.workflowId}': cannot encode its payload: ${(e as Error).message}`,
        ),
      );
    }
    const workflowId = this.workflowId;
    return this.#outbound(`signal:${target}:${name}`, jsonCodec, (seq) => async () => {
      const client = this.#outboundClient();
      try {
        const sent = await call(
          client.native.signalWorkflow(target, name, Buffer.from(data), `${workflowId}/${seq}`),
        );
        return sent.duplicate;
      } catch (e) {
        throw outboundFailure(e);
      }
    });
  }

  /**
   * Waits for the workflow `target` to end, durably: a step named
   * `result:${target}` whose value is the target's result (decoded with
   * the client's codec). A replay reads the committed result; a new owner
   * after a failover waits again.
   *
   * Rejects with `StepFailed` (the step fails for good) carrying the
   * target's own failure (its `type`, message as `error`, and `details`)
   * when the target failed (`raftoral.WorkflowFailed` when it failed
   * without a structured failure), of type `raftoral.WorkflowCancelled`
   * when it was cancelled, `raftoral.WorkflowNotFound` when it does not
   * exist; an unreachable cluster is retried (default retry policy). Can
   * be raced with {@link WorkflowContext.first} (e.g. against a sleep).
   *
   * @example
   * ```ts
   * const invoice = await ctx.workflowResult<{ total: number }>("billing-42");
   *
   * try {
   *   await ctx.workflowResult("fraud-check-42");
   * } catch (e) {
   *   if (e instanceof StepFailed && e.type === "raftoral.WorkflowCancelled") return "skipped";
   *   throw e;
   * }
   * ```
   */
  workflowResult<T = unknown>(target: string): Promise<T> {
    if (typeof target !== "string") {
      return this.#refuse(
        new InvalidArgument("workflowResult(target): target must be a workflow id (a string)"),
      );
    }
    // The target's result is committed as it is (its bytes), and decoded
    // with the client's codec.
    const codec = this.#codec;
    const raw: Codec = {
      encode: (value) => value as Uint8Array,
      decode: (data) => codec.decode(data),
    };
    return this.#outbound<T>(`result:${target}`, raw, () => async () => {
      const client = this.#outboundClient();
      try {
        return (await call(client.native.result(target))) as T;
      } catch (e) {
        if (e instanceof WorkflowFailed) {
          // The target's own failure, type and details kept.
          const f = e.failure;
          throw f === undefined
            ? new NonRetryableError(e.error, { type: "raftoral.WorkflowFailed" })
            : new NonRetryableError(f.message, { type: f.type, details: f.details });
        }
        if (e instanceof Cancelled) {
          throw new NonRetryableError(`workflow '${target}' was cancelled: ${e.reason}`, {
            type: "raftoral.WorkflowCancelled",
          });
        }
        throw outboundFailure(e);
      }
    });
  }

  /**
   * A step named `name` calling another workflow: its function (made with
   * the step's position) runs under the default retry policy, its value is
   * encoded with `codec`.
   */
  #outbound<T>(name: string, codec: Codec, make: (seq: number) => StepFn<T>): Promise<T> {
    if (!this.#active) {
      return this.#refuse(
        new InvalidArgument(
          `step '${name}' called after workflow '${this.workflowId}' finished; it belongs inside the workflow function`,
        ),
      );
    }
    let seq: number;
    try {
      seq = callSync(() => this.#run.request(name));
    } catch (e) {
      return this.#refuse(e);
    }
    return this.#durable(seq, this.#step(seq, name, make(seq), OUTBOUND_POLICY, codec));
  }

  /** The worker's client, for the calls to other workflows. */
  #outboundClient(): Client {
    if (this.#client === undefined) {
      throw new NonRetryableError(`workflow '${this.workflowId}' runs without a client`, {
        type: "raftoral.NoClient",
      });
    }
    return this.#client;
  }

  /**
   * Takes the position of a child workflow and starts its wait (and, with
   * `withStarted`, the wait for the commit of its start). Throws what
   * refuses it, before any position is taken.
   */
  #child<T>(
    workflow: string | WorkflowRef,
    input: unknown,
    options: ChildOptions | undefined,
    withStarted: boolean,
  ): { id: string; result: Promise<T>; started: Promise<unknown> } {
    const name = typeof workflow === "string" ? workflow : workflow?.name;
    if (typeof name !== "string" || name === "") {
      throw new InvalidArgument("a child workflow needs a workflow (or a non-empty workflow name)");
    }
    this.#refuseAfterEnd(`child workflow '${name}'`);
    const version = options?.version ?? (typeof workflow === "string" ? 1 : workflow.version);
    if (!Number.isInteger(version) || version < 0 || version > 0xffff_ffff) {
      throw new InvalidArgument(`child workflow '${name}': version must be a non-negative integer`);
    }
    const id = options?.id;
    if (id !== undefined && typeof id !== "string") {
      throw new InvalidArgument(`child workflow '${name}': id must be a string`);
    }
    const parentClose = options?.parentClose;
    if (parentClose !== undefined && typeof parentClose !== "string") {
      throw new InvalidArgument(
        `child workflow '${name}': parentClose must be "cancel", "abandon" or "terminate"`,
      );
    }
    let data: Uint8Array;
    try {
      data = this.#codec.encode(input);
    } catch (e) {
      throw new InvalidArgument(
        `child workflow '${name}' of workflow '${this.workflowId}': cannot encode its input: ${(e as Error).message}; pass a JSON-compatible value`,
      );
    }
    // The position is taken now, before any await, as a step's is; the
    // addon refuses an empty or own id and an unknown policy first.
    const child = callSync(() => this.#run.requestChild(name, version, Buffer.from(data), id, parentClose));
    const seq = child.seq;
    const outcomes: ((outcome: Outcome) => void)[] = [];
    const ended = new Promise<NativeSlot>((resolve, reject) =>
      outcomes.push((outcome) => this.#handOut(outcome, resolve, reject)),
    );
    let started: Promise<unknown> = Promise.resolve();
    if (withStarted) {
      started = new Promise<NativeSlot>((resolve, reject) =>
        outcomes.push((outcome) => this.#handOut(outcome, resolve, reject)),
      );
    }
    // The child's end (and the commit of its start), each handed out in
    // its turn like a step's value.
    this.#deliveries.wait(
      (key, startedKey) => callSync(() => this.#run.child(seq, key, startedKey)),
      ...outcomes,
    );
    const codec = this.#codec;
    // `first` races it at its position.
    const result = this.#durable(
      seq,
      ended.then((slot) => codec.decode(slot.value ?? Buffer.alloc(0)) as T),
    );
    if (withStarted) {
      // A result nobody awaits never rejects unhandled.
      result.catch(ignore);
    }
    return { id: child.id, result, started };
  }

  /**
   * A float in `[0, 1)`, the same on every replica and in every replay:
   * drawn from a generator seeded per workflow (SplitMix64), in call order.
   * Nothing is committed, so it costs no step. Not for secrets.
   *
   * @example
   * ```ts
   * const shard = Math.floor(ctx.random() * 16);
   * ```
   */
  random(): number {
    this.#refuseAfterEnd("random()");
    return callSync(() => this.#run.random());
  }

  /**
   * A version 4 UUID (lowercase, `8-4-4-4-12`) from the same generator as
   * {@link WorkflowContext.random}: stable across replays, so it can serve as the
   * idempotency key of a call a step makes. Costs no step. Not for secrets.
   *
   * @example
   * ```ts
   * const key = ctx.uuid();
   * await ctx.checkpoint("charge", () => pay(order, { idempotencyKey: key }));
   * ```
   */
  uuid(): string {
    this.#refuseAfterEnd("uuid()");
    return callSync(() => this.#run.uuid());
  }

  /**
   * True while the code repeats what already happened: a replay of the
   * committed history, or a replica that does not own the workflow.
   *
   * @example
   * ```ts
   * if (!ctx.isReplaying) metrics.increment("orders.resumed");
   * ```
   */
  get isReplaying(): boolean {
    return this.#run.isReplaying;
  }

  /**
   * A logger that writes each line once: nothing while replaying, and
   * otherwise `console.debug/info/warn/error` (or the worker's `logSink`)
   * with the prefix `[workflow ID step N] `, `N` the position of the next
   * step.
   *
   * @example
   * ```ts
   * ctx.log.info("charging the card", { amount });
   * const receipt = await ctx.checkpoint("charge", () => charge(amount));
   * ```
   */
  get log(): WorkflowLogger {
    this.#log ??= workflowLogger(this, () => this.#run.nextPosition, this.#sink);
    return this.#log;
  }

  #refuseAfterEnd(what: string): void {
    if (!this.#active) {
      throw new InvalidArgument(
        `${what} called after workflow '${this.workflowId}' finished; it belongs inside the workflow function`,
      );
    }
  }

  #checkpoint<T>(
    name: string,
    fn: StepFn<T>,
    options: CheckpointOptions | undefined,
    codec: Codec,
  ): Promise<T> {
    if (!this.#active) {
      return this.#refuse(
        new InvalidArgument(
          `checkpoint '${name}' called after workflow '${this.workflowId}' finished; checkpoints belong inside the workflow function`,
        ),
      );
    }
    let policy = this.#retry;
    if (options?.retry !== undefined) {
      try {
        policy = checkRetryPolicy(options.retry, `step '${name}' of workflow '${this.workflowId}'`);
      } catch (e) {
        return this.#refuse(e);
      }
    }
    // The position is taken now, before any await: steps started side by
    // side (Promise.all) get positions in call order.
    let seq: number;
    try {
      seq = callSync(() => this.#run.request(name));
    } catch (e) {
      return this.#refuse(e);
    }
    return this.#durable(seq, this.#step(seq, name, fn, policy, codec));
  }

  #sleep(ms: number, options: SleepOptions | undefined): Promise<void> {
    const name = options?.name ?? SLEEP;
    if (typeof name !== "string" || name === "") {
      return this.#refuse(new InvalidArgument("the name of a sleep must be a non-empty string"));
    }
    if (!this.#active) {
      return this.#refuse(
        new InvalidArgument(
          `sleep '${name}' called after workflow '${this.workflowId}' finished; sleeps belong inside the workflow function`,
        ),
      );
    }
    // The position is taken now, before any await, as a step's is.
    let seq: number;
    try {
      seq = callSync(() => this.#run.requestTimer(name, ms));
    } catch (e) {
      return this.#refuse(e);
    }
    // The firing, handed out in its turn like a step's value.
    return this.#durable(
      seq,
      this.#wait((key) => this.#run.timer(seq, key)).then(() => undefined),
    );
  }

  /** `op`, the promise of the durable operation at `seq`: `first` can race it. */
  #durable<T>(seq: number, op: Promise<T>): Promise<T> {
    this.#positions.set(op, seq);
    return op;
  }

  /** An operation refused before it took a position, rejected with `e`. */
  #refuse(e: unknown): Promise<never> {
    const op = Promise.reject(e);
    this.#refused.add(op);
    return op;
  }

  /** `derived` (made from `op`) stands for the same operation as `op` in `first`. */
  #sameAs<T>(op: Promise<unknown>, derived: Promise<T>): Promise<T> {
    const seq = this.#positions.get(op);
    if (seq !== undefined) {
      this.#positions.set(derived, seq);
    } else if (this.#refused.has(op)) {
      this.#refused.add(derived);
    }
    return derived;
  }

  async #step<T>(
    seq: number,
    name: string,
    fn: StepFn<T>,
    policy: NativeRetryPolicy,
    codec: Codec,
  ): Promise<T> {
    let slot = await this.#slot(seq);
    let value: T;
    for (;;) {
      if (slot.value != null) {
        // A committed value; a committed failure rejected with StepFailed,
        // a cancellation delivered here with Cancelled.
        return codec.decode(slot.value) as T;
      }
      const of = {
        workflowId: this.workflowId,
        step: name,
        seq,
        attempt: slot.attempt ?? 1,
        interrupts: slot.interrupts ?? 0,
      };
      try {
        value = await this.#attempts.run(fn, of, policy);
        break;
      } catch (e) {
        if (e === INTERRUPTED) {
          // Stopped by the workflow's cancellation: nothing is committed for
          // this attempt, and the core says what the step gets now: Cancelled
          // where the cancellation was delivered, a value committed
          // meanwhile, or the attempt to run again.
          slot = await this.#wait((key) => this.#run.slot(seq, key));
          continue;
        }
        // The core commits the failure (a timeout's is the core's own) and
        // answers with the next attempt (after its delay), or rejects with
        // StepFailed.
        const failure = failureOf(e);
        slot = await this.#wait((key) => this.#run.failStep(seq, failure, policy, key));
      }
    }
    let data: Uint8Array;
    try {
      data = codec.encode(value);
    } catch (e) {
      throw new InvalidArgument(
        `checkpoint '${name}' (seq ${seq}) of workflow '${this.workflowId}': cannot encode its value: ${(e as Error).message}; return a JSON-compatible value or pass a codec that handles it`,
      );
    }
    const committed = await this.#wait((key) => this.#run.commit(seq, Buffer.from(data), key));
    return codec.decode(committed.value ?? Buffer.alloc(0)) as T;
  }

  /**
   * The slot of step `seq`: an attempt to compute at once; a value (or an
   * error) decided now or waited for, handed out in its turn.
   */
  #slot(seq: number): NativeSlot | Promise<NativeSlot> {
    let now: NativeSlot | null;
    try {
      now = this.#run.slotNow(seq);
    } catch (e) {
      // A committed failure (StepFailed) is handed out in its turn too.
      return this.#inTurn({ error: fromNative(e) });
    }
    if (now === null) {
      // A replica ahead of the owner's commits, a resolution whose turn has
      // not come, a backoff: the core delivers the slot when it is decided.
      return this.#wait((key) => this.#run.slot(seq, key));
    }
    // The owner's attempt to compute: no resolution, nothing to order.
    return now.value == null ? now : this.#inTurn({ slot: now });
  }

  /** A native wait (started by `start` with its key); its outcome in its turn. */
  #wait(start: (key: number) => void): Promise<NativeSlot> {
    return new Promise<NativeSlot>((resolve, reject) => {
      this.#deliveries.wait(
        (key) => callSync(() => start(key)),
        (outcome) => this.#handOut(outcome, resolve, reject),
      );
    });
  }

  /** `outcome`, decided now, handed out in its turn. */
  #inTurn(outcome: Outcome): Promise<NativeSlot> {
    return new Promise<NativeSlot>((resolve, reject) => this.#handOut(outcome, resolve, reject));
  }

  /**
   * Hands `outcome` to the code waiting for it, after the outcomes before it
   * and in a turn of the event loop of its own (setImmediate): the branch
   * that gets it runs on, through any number of awaits of resolved promises,
   * until it waits for a step again (having taken that step's position)
   * before the next branch gets its outcome. Live and in a replay the
   * outcomes come in the same order (the core's release rule), so the
   * branches take the same positions, whatever the depth of their code.
   */
  #handOut(outcome: Outcome, resolve: (slot: NativeSlot) => void, reject: (e: unknown) => void): void {
    this.#ready.push("slot" in outcome ? () => resolve(outcome.slot) : () => reject(outcome.error));
    if (!this.#handing) {
      this.#handing = true;
      setImmediate(this.#handNext);
    }
  }

  #handNext = (): void => {
    this.#ready.shift()?.();
    if (this.#ready.length > 0) {
      setImmediate(this.#handNext);
    } else {
      this.#handing = false;
    }
  };

  /** @internal Runs `f` with this context as the current one. */
  runAs<R>(f: () => R): R {
    return current.run(this, f);
  }

  /** @internal The run is over: later checkpoints are refused. */
  end(): void {
    this.#active = false;
  }

  /** @internal */
  get active(): boolean {
    return this.#active;
  }
}

/**
 * The retry policy of the calls to other workflows: the core's defaults,
 * as the Rust SDK's `RetryPolicy::default()` (not the workflow's).
 */
const OUTBOUND_POLICY: NativeRetryPolicy = {};

/** Failure type of a call to a workflow that does not exist. */
const WORKFLOW_NOT_FOUND = "raftoral.WorkflowNotFound";
/** Failure type of an event sent to a workflow that has ended. */
const WORKFLOW_ENDED = "raftoral.WorkflowEnded";

/**
 * A client error of a call to another workflow as its step's failure:
 * refusals that cannot change are non-retryable, the rest retried by the
 * step's policy (as the Rust SDK's `outbound.rs`).
 */
function outboundFailure(e: unknown): ApplicationError {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof NotFound) {
    return new NonRetryableError(message, { type: WORKFLOW_NOT_FOUND });
  }
  if (e instanceof NotRunning) {
    return new NonRetryableError(message, { type: WORKFLOW_ENDED });
  }
  if (e instanceof InvalidArgument || e instanceof ResourceExhausted) {
    return new NonRetryableError(message, { type: "raftoral.SignalRefused" });
  }
  return new ApplicationError(message, { type: "raftoral.Unavailable" });
}

/** Ignores what a promise rejects with (a loser of `first`). */
function ignore(): void {}

/**
 * The context of the workflow running in this async call chain. Throws
 * {@link InvalidArgument} outside a workflow.
 */
export function currentContext(): WorkflowContext {
  const ctx = current.getStore();
  if (ctx === undefined || !ctx.active) {
    throw new InvalidArgument(
      "no workflow is running here: call checkpoints inside a workflow function run by a Worker",
    );
  }
  return ctx;
}

/**
 * {@link WorkflowContext.checkpoint} on the workflow running in this async
 * call chain; rejects with {@link InvalidArgument} outside a workflow.
 */
export function checkpoint<T>(name: string, fn: StepFn<T>, options?: CheckpointOptions): Promise<T> {
  try {
    return currentContext().checkpoint(name, fn, options);
  } catch (e) {
    return Promise.reject(e);
  }
}
