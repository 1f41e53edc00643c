/** Workflow definitions ({@link workflow}) and {@link WorkflowContext}. */
import { AsyncLocalStorage } from "node:async_hooks";

import type { Codec } from "./codec";
import { Cancelled, call, callSync, InvalidArgument } from "./errors";
import type { NativeRun } from "./native";

/** Options of {@link workflow}. */
export interface WorkflowOptions {
  /** Version registered with the cluster (default 1). */
  version?: number;
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
}

/**
 * Declares a workflow.
 *
 * @example
 * ```ts
 * const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text: string) =>
 *   ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")));
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
  return Object.freeze({ name, version, fn });
}

const current = new AsyncLocalStorage<WorkflowContext>();

/**
 * The context of one workflow run, passed as the first argument.
 *
 * Every checkpoint is committed through Raft before the function goes on.
 * On the owner, the step's function runs once per successful commit; on
 * replicas and on replay the committed value is returned without running it.
 */
export class WorkflowContext {
  /** Aborted when the workflow is cancelled; pass it to `fetch` and the like. */
  readonly signal: AbortSignal;
  #run: NativeRun;
  #codec: Codec;
  #active = true;
  /** Checkpoints of a run are taken in call order, one at a time. */
  #tail: Promise<unknown> = Promise.resolve();

  /** @internal Created by the worker. */
  constructor(run: NativeRun, codec: Codec, signal: AbortSignal) {
    this.#run = run;
    this.#codec = codec;
    this.signal = signal;
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
   * Rejects with {@link Cancelled} when the workflow is cancelled (also while
   * `fn` runs: `ctx.signal` fires), with `NonDeterminism` when the history has
   * another name at this position, with {@link InvalidArgument} when the value
   * cannot be encoded (nothing is committed then).
   *
   * @example
   * ```ts
   * const total = await ctx.checkpoint("total", async () => (await fetchPrices()).sum);
   * ```
   */
  checkpoint<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    if (!this.#active) {
      return Promise.reject(
        new InvalidArgument(
          `checkpoint '${name}' called after workflow '${this.workflowId}' finished; checkpoints belong inside the workflow function`,
        ),
      );
    }
    const step = (): Promise<T> => this.#step(name, fn);
    const result = this.#tail.then(step, step);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async #step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    // Decided at once for the owner and on replay; a replica ahead of the
    // owner's commits waits.
    const slot = callSync(() => this.#run.slotNow(name)) ?? (await call(this.#run.slot(name)));
    if (slot.value != null) {
      return this.#codec.decode(slot.value) as T;
    }
    // A cancellation seen between the slot and here: do not start the step.
    this.signal.throwIfAborted();
    const value = await this.#abortable(Promise.resolve().then(fn));
    let data: Uint8Array;
    try {
      data = this.#codec.encode(value);
    } catch (e) {
      throw new InvalidArgument(
        `checkpoint '${name}' (seq ${slot.seq}) of workflow '${this.workflowId}': cannot encode its value: ${(e as Error).message}; return a JSON-compatible value or pass a codec that handles it`,
      );
    }
    const committed = await call(this.#run.commit(Buffer.from(data)));
    return this.#codec.decode(committed) as T;
  }

  /** `p`, or a {@link Cancelled} rejection as soon as the signal fires. */
  #abortable<T>(p: Promise<T>): Promise<T> {
    const signal = this.signal;
    if (signal.aborted) {
      p.catch(() => undefined);
      return Promise.reject(signal.reason);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

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
export function checkpoint<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return currentContext().checkpoint(name, fn);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** @internal A {@link Cancelled} for a cancelled run. */
export function cancelledError(workflowId: string, reason: string): Cancelled {
  return new Cancelled(`workflow '${workflowId}' was cancelled: ${reason}`, workflowId, reason);
}
