/** Workflow definitions ({@link workflow}) and {@link WorkflowContext}. */
import { AsyncLocalStorage } from "node:async_hooks";

import { Attempts, type StepFn } from "./attempt";
import { type Codec, jsonCodec } from "./codec";
import type { Deliveries, Outcome } from "./deliveries";
import { Cancelled, callSync, failureOf, fromNative, InvalidArgument } from "./errors";
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
 * Code between steps runs again in every replay and on every replica, so it
 * must decide the same each time: take the time from
 * {@link WorkflowContext.now}, random numbers and ids from
 * {@link WorkflowContext.random} and {@link WorkflowContext.uuid}, and log
 * through {@link WorkflowContext.log}, which writes each line once.
 */
export class WorkflowContext {
  /** Aborted when the workflow is cancelled; pass it to `fetch` and the like. */
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
  /** Runs the attempts of this run's steps (cancellation, attempt timeouts). */
  #attempts: Attempts;
  #sink: LogSink;
  #log: WorkflowLogger | undefined;

  /** @internal Created by the worker. */
  constructor(
    run: NativeRun,
    codec: Codec,
    signal: AbortSignal,
    deliveries: Deliveries,
    retry: NativeRetryPolicy = {},
    sink: LogSink = consoleSink,
  ) {
    this.#run = run;
    this.#codec = codec;
    this.signal = signal;
    this.#attempts = new Attempts(signal);
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
   * Also rejects with {@link Cancelled} when the workflow is cancelled (also
   * while `fn` runs: `ctx.signal` fires), with `NonDeterminism` when the
   * history has another name at this position, with {@link InvalidArgument}
   * when the value cannot be encoded (nothing is committed then) or the
   * retry policy is wrong.
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
  async now(): Promise<Date> {
    const ms = await this.#checkpoint(NOW_STEP, () => Date.now(), undefined, jsonCodec);
    return new Date(ms);
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
      return Promise.reject(
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
        return Promise.reject(e);
      }
    }
    // The position is taken now, before any await: steps started side by
    // side (Promise.all) get positions in call order.
    let seq: number;
    try {
      seq = callSync(() => this.#run.request(name));
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#step(seq, name, fn, policy, codec);
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
        // A committed value; a committed failure rejected with StepFailed.
        return codec.decode(slot.value) as T;
      }
      // A cancellation seen between the slot and here: do not start the step.
      this.signal.throwIfAborted();
      const of = { workflowId: this.workflowId, step: name, seq, attempt: slot.attempt ?? 1 };
      try {
        value = await this.#attempts.run(fn, of, policy);
        break;
      } catch (e) {
        // Cancelled meanwhile: nothing is committed, the cancellation ends the run.
        this.signal.throwIfAborted();
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

/** @internal A {@link Cancelled} for a cancelled run. */
export function cancelledError(workflowId: string, reason: string): Cancelled {
  return new Cancelled(`workflow '${workflowId}' was cancelled: ${reason}`, workflowId, reason);
}
