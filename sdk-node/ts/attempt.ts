/**
 * One attempt of a step's function ({@link StepFn}): what it is told
 * ({@link StepInfo}), and how it is run on the owner: stopped by the
 * workflow's cancellation (the core's interruptions) and by its retry
 * policy's attempt timeout.
 */
import { AttemptTimeout, callSync, cancelledError } from "./errors";
import native from "./native";

/**
 * What a step's function is told about its run.
 *
 * @example
 * ```ts
 * await ctx.checkpoint("charge", ({ attempt, signal }: StepInfo) =>
 *   pay(order, { idempotencyKey: `${order.id}-${attempt}`, signal }));
 * ```
 */
export interface StepInfo {
  /**
   * 1-based attempt number: more than 1 after failed attempts, counted
   * across owners (a new owner after a failover goes on with the count).
   */
  readonly attempt: number;
  /**
   * This attempt's own signal, aborted when the attempt must stop: with
   * `Cancelled` when the workflow's cancellation stops it (a cancel request
   * delivered while it runs, or a cancel for good), with
   * {@link AttemptTimeout} when it outlasts its retry policy's
   * `attemptTimeoutMs`. Pass it to `fetch` and the like, so a stopped
   * attempt stops its work too. Not the workflow's `ctx.signal`: a step
   * that runs after a cancellation was delivered (compensation) gets a
   * signal that is not aborted.
   */
  readonly signal: AbortSignal;
}

/**
 * The function of a step: sync or async, told its attempt number and given
 * its `AbortSignal`. Its value is committed; what it throws fails the
 * attempt (see `RetryPolicy`).
 *
 * @example
 * ```ts
 * const fetchRate: StepFn<number> = async ({ attempt, signal }) => {
 *   const r = await fetch(`https://rates.example/eur?try=${attempt}`, { signal });
 *   if (!r.ok) throw new ApplicationError(`rates answered ${r.status}`, { type: "RatesDown" });
 *   return ((await r.json()) as { rate: number }).rate;
 * };
 * const rate = await ctx.checkpoint("rate", fetchRate, { retry: { attemptTimeoutMs: 5_000 } });
 * ```
 */
export type StepFn<T> = (step: StepInfo) => T | Promise<T>;

/** @internal Where an attempt runs: its step, for the errors it raises. */
export interface AttemptOf {
  workflowId: string;
  step: string;
  seq: number;
  attempt: number;
  /**
   * The run's interruptions counted before this attempt was handed out
   * (`NativeSlot.interrupts`): an interruption beyond it stops the attempt.
   */
  interrupts: number;
}

/**
 * @internal What {@link Attempts.run} rejects with when an interruption
 * stopped the attempt: its outcome is not wanted; ask the core for the
 * step's slot again (it answers `Cancelled` where the cancellation was
 * delivered, a value committed meanwhile, or the attempt to run again).
 */
export const INTERRUPTED: unique symbol = Symbol("raftoral.interrupted");

/** Longest delay `setTimeout` takes (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * @internal Runs the attempts of one run's steps on the owner. One watcher
 * of the run's interruptions (`NativeRun.interrupted`) serves every attempt
 * of the run, started with its first attempt (replicas and replays never
 * run one) and re-armed after each interruption; it ends with the run.
 */
export class Attempts {
  readonly #run: native.NativeRun;
  /**
   * Stops each attempt running now, by the interruptions counted before
   * it was handed out.
   */
  readonly #running = new Map<(reason: unknown) => void, number>();
  /** The interruptions the watcher has seen; undefined until it starts. */
  #seen: number | undefined;

  constructor(run: native.NativeRun) {
    this.#run = run;
  }

  /**
   * Runs attempt `of.attempt` of `fn` under `policy`: its value, or what it
   * threw. Without waiting for `fn` any longer, rejects with
   * {@link INTERRUPTED} as soon as an interruption counted after the
   * attempt's hand-out stops it (the attempt's signal is aborted with
   * `Cancelled`), and with an {@link AttemptTimeout} (the core's failure)
   * once the policy's `attemptTimeoutMs` has passed (the signal is aborted
   * with it). `fn` is not called when such an interruption was seen
   * already.
   */
  run<T>(fn: StepFn<T>, of: AttemptOf, policy: native.NativeRetryPolicy): Promise<T> {
    if (this.#seen === undefined) {
      void this.#watch(of.interrupts);
    } else if (of.interrupts < this.#seen) {
      return Promise.reject(INTERRUPTED);
    }
    const limit = policy.attemptTimeoutMs;
    const timed = limit !== undefined && limit !== Number.POSITIVE_INFINITY;
    // The attempt's signal: made now for a timed attempt (before its clock
    // starts), else when the step's function asks for it (most never do),
    // aborted then if the attempt was stopped already.
    let own: AbortController | undefined = timed ? new AbortController() : undefined;
    let stopped = false;
    let abortReason: unknown;
    const info: StepInfo = Object.freeze({
      attempt: of.attempt,
      get signal(): AbortSignal {
        if (own === undefined) {
          own = new AbortController();
          if (stopped) own.abort(abortReason);
        }
        return own.signal;
      },
    });
    return new Promise<T>((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const settled = (): void => {
        this.#running.delete(interrupt);
        cancelTimer?.();
      };
      // The first of: the attempt's outcome, an interruption, the timeout.
      const stop = (rejection: unknown, reason: unknown): void => {
        settled();
        reject(rejection);
        stopped = true;
        abortReason = reason;
        own?.abort(reason);
      };
      const interrupt = (reason: unknown): void => stop(INTERRUPTED, reason);
      this.#running.set(interrupt, of.interrupts);
      if (timed) {
        cancelTimer = after(limit, () => {
          const e = timedOut(of, policy, limit);
          stop(e, e);
        });
      }
      Promise.resolve()
        .then(() => fn(info))
        .then(
          (value) => {
            settled();
            resolve(value);
          },
          (e: unknown) => {
            settled();
            reject(e);
          },
        );
    });
  }

  /**
   * The run's watcher: each interruption beyond `after` stops the attempts
   * handed out before it. Ends when the run does (null).
   */
  async #watch(after: number): Promise<void> {
    this.#seen = after;
    for (;;) {
      let next: native.NativeInterruption | null;
      try {
        next = await this.#run.interrupted(this.#seen);
      } catch {
        return;
      }
      if (next === null) {
        return;
      }
      this.#seen = next.count;
      const reason = cancelledError(this.#run.workflowId, next.reason);
      for (const [interrupt, handedAt] of [...this.#running]) {
        if (handedAt < next.count) interrupt(reason);
      }
    }
  }
}

/**
 * The {@link AttemptTimeout} of attempt `of`: its type and message are the
 * core's (`AttemptTimeout`, `attempt N timed out after T ms`), the failure
 * every SDK commits for it.
 */
function timedOut(of: AttemptOf, policy: native.NativeRetryPolicy, limit: number): unknown {
  try {
    const failure = callSync(() => native.attemptTimeoutFailure(policy, of.attempt));
    return new AttemptTimeout(
      failure.message,
      of.workflowId,
      of.step,
      of.seq,
      of.attempt,
      limit,
      failure.type,
    );
  } catch (e) {
    // Not expected (the policy was checked): the attempt fails with this.
    return e;
  }
}

/**
 * Calls `f` once `ms` have passed (on a monotonic clock, however long;
 * never early); returns what cancels it. The timer does not keep the
 * process alive: a worker shut down with a hanging attempt lets it exit.
 */
function after(ms: number, f: () => void): () => void {
  const deadline = performance.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const left = deadline - performance.now();
    if (left <= 0) {
      f();
      return;
    }
    timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}
