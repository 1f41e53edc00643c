/** The {@link Worker}: runs registered workflows as the sidecar hands them over. */
import type { Client } from "./client";
import { Deliveries } from "./deliveries";
import {
  ApplicationError,
  Cancelled,
  call,
  cancelledError,
  detailsJson,
  failureOf,
  NotRunning,
  RaftoralError,
  ShuttingDown,
  StepFailed,
} from "./errors";
import type { LogSink } from "./log";
import native from "./native";
import { checkRetryPolicy, type RetryPolicy } from "./retry";
import { type Workflow, WorkflowContext } from "./workflow";

/** Options of {@link Worker.create}. */
export interface WorkerOptions {
  // biome-ignore lint/suspicious/noExplicitAny: definitions of any input and output types
  workflows: readonly Workflow<any, any>[];
  /** On shutdown, how long workflow functions may take to unwind (default 10 s). */
  shutdownGraceMs?: number;
  /**
   * Retry policy of the steps whose step and workflow give none (default:
   * 1 s, ×2, at most 60 s, 10 attempts, jitter 0.2). A bad one makes
   * `create` reject with `InvalidArgument`.
   */
  retry?: RetryPolicy;
  /**
   * Where the workflows' `ctx.log` lines go (default: `console`, with the
   * prefix `[workflow ID step N] `). It gets only the lines to write, never
   * those of a replay.
   */
  logSink?: LogSink;
}

/**
 * Runs `workflows` for `client`'s sidecar. One worker per client.
 *
 * Workflows still running at shutdown stay running in the cluster and resume
 * (by replay) when a worker connects again.
 *
 * @example
 * ```ts
 * const worker = await Worker.create(client, { workflows: [pingPong], retry: { maximumAttempts: 3 } });
 * // ...
 * await worker.shutdown();
 * ```
 */
export class Worker {
  readonly #client: Client;
  readonly #native: native.NativeWorker;
  /** Outcomes of the runs' native waits, in the order the core hands them out. */
  readonly #deliveries: Deliveries;
  // biome-ignore lint/suspicious/noExplicitAny: definitions of any input and output types
  readonly #workflows = new Map<string, Workflow<any, any>>();
  readonly #grace: number;
  /** Retry policy of each workflow's steps without one, by `name@version`. */
  readonly #retries = new Map<string, native.NativeRetryPolicy>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #logSink: LogSink | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;

  private constructor(client: Client, options: WorkerOptions) {
    // Checked before anything is created: a bad policy leaves nothing behind.
    const retry = options.retry === undefined ? {} : checkRetryPolicy(options.retry, "the Worker");
    for (const wf of options.workflows) {
      const key = `${wf.name}@${wf.version}`;
      this.#retries.set(
        key,
        wf.retry === undefined ? retry : checkRetryPolicy(wf.retry, `workflow '${wf.name}'`),
      );
    }
    this.#client = client;
    this.#native = new native.NativeWorker(client.native);
    this.#deliveries = new Deliveries(this.#native);
    this.#grace = options.shutdownGraceMs ?? 10_000;
    this.#logSink = options.logSink;
    for (const wf of options.workflows) {
      this.#workflows.set(`${wf.name}@${wf.version}`, wf);
    }
  }

  /**
   * Registers every workflow, waits until the cluster has recorded them, and
   * starts taking executions.
   */
  static async create(client: Client, options: WorkerOptions): Promise<Worker> {
    const worker = new Worker(client, options);
    for (const wf of worker.#workflows.values()) {
      await call(worker.#native.register(wf.name, wf.version));
    }
    await call(worker.#native.start());
    worker.#loop = worker.#takeRuns();
    return worker;
  }

  /** Workflow runs in progress on this worker. */
  get running(): number {
    return this.#native.running;
  }

  /**
   * Stops the worker. Workflow functions get `ShuttingDown` at their next
   * checkpoint; those still running after the grace period are left behind
   * (their workflows resume elsewhere). Nothing of the worker keeps the
   * process alive afterwards.
   */
  async shutdown(): Promise<void> {
    if (this.#stopped) {
      return;
    }
    this.#stopped = true;
    await call(this.#native.shutdown(this.#grace));
    await this.#loop;
    if (this.#tasks.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#grace);
      });
      await Promise.race([Promise.allSettled([...this.#tasks]), grace]);
      clearTimeout(timer);
    }
  }

  async #takeRuns(): Promise<void> {
    for (;;) {
      const runs = await this.#native.nextRuns();
      if (runs.length === 0) {
        return;
      }
      for (const run of runs) {
        const task = this.#execute(run);
        this.#tasks.add(task);
        void task.finally(() => this.#tasks.delete(task));
      }
    }
  }

  async #execute(run: native.NativeRun): Promise<void> {
    const wf = this.#workflows.get(`${run.workflowName}@${run.version}`);
    if (wf === undefined) {
      run.fail(`this worker has no workflow '${run.workflowName}' version ${run.version}`);
      return;
    }
    const codec = this.#client.codec;
    // ctx.signal: aborted once the workflow's cancel is requested (or it is
    // cancelled for good). Where the code gets Cancelled is the core's to
    // decide (steps and sleeps reject with it where it is delivered).
    const controller = new AbortController();
    // Resolves null when the run ends first, so it never outlives the run.
    void run.cancelled().then(
      (reason) => {
        if (reason !== null) {
          controller.abort(cancelledError(run.workflowId, reason));
        }
      },
      () => undefined,
    );
    const ctx = new WorkflowContext(
      run,
      codec,
      controller.signal,
      this.#deliveries,
      this.#retries.get(`${run.workflowName}@${run.version}`),
      this.#logSink,
      this.#client,
    );
    let data: Uint8Array;
    try {
      const input = codec.decode(run.input);
      const value = await ctx.runAs(() => wf.fn(ctx, input));
      data = codec.encode(value);
    } catch (e) {
      if (e instanceof Cancelled) {
        // The function ended with the cancellation (after any compensation):
        // while a cancel request's cleanup runs, the core reports the
        // workflow CANCELLED with this reason; otherwise nothing (it was
        // cancelled for good already).
        run.abandon(e.reason);
      } else if (e instanceof ShuttingDown || e instanceof NotRunning) {
        run.abandon(null);
      } else if (e instanceof StepFailed) {
        // An uncaught step failure: the workflow fails with it, structured.
        run.failWithStep({
          seq: e.seq,
          step: e.step,
          attempts: e.attempts,
          failure: {
            type: e.type,
            message: e.error,
            detailsJson: detailsJson(e.details),
            nonRetryable: e.nonRetryable,
          },
        });
      } else if (e instanceof ApplicationError) {
        // The workflow's own structured error: clients read its type,
        // message and details (WorkflowInfo.failure, WorkflowFailed.failure).
        run.failWithApplicationError(failureOf(e));
      } else if (e instanceof RaftoralError) {
        run.fail(e.message);
      } else if (e instanceof Error) {
        run.fail(`${e.name}: ${e.message}`);
      } else {
        run.fail(String(e));
      }
      return;
    } finally {
      ctx.end();
    }
    run.complete(Buffer.from(data));
  }
}
