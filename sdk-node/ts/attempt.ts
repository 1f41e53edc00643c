/**
 * One attempt of a step's function ({@link StepFn}): what it is told
 * ({@link StepInfo}), and how it is run on the owner: stopped by the
 * workflow's cancellation and by its retry policy's attempt timeout.
 */
import { AttemptTimeout, callSync } from "./errors";
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
   * Aborted when this attempt must stop: with `Cancelled` when the workflow
   * is cancelled (as `ctx.signal` is), with {@link AttemptTimeout} when the
   * attempt outlasts its retry policy's `attemptTimeoutMs`. Pass it to
   * `fetch` and the like, so a stopped attempt stops its work too.
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
}

/** Longest delay `setTimeout` takes (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * @internal Runs the attempts of one run's steps on the owner. One listener
 * on the workflow's signal serves every attempt running now (steps side by
 * side would otherwise add one each, past Node's warning threshold).
 */
export class Attempts {
  /** The workflow's: aborted when it is cancelled. */
  readonly #signal: AbortSignal;
  /** Stops each attempt running now, with a reason. */
  readonly #running = new Set<(reason: unknown) => void>();
  #listening = false;

  constructor(signal: AbortSignal) {
    this.#signal = signal;
  }

  /**
   * Runs attempt `of.attempt` of `fn` under `policy`: its value, or what it
   * threw. Without waiting for `fn` any longer, rejects with the
   * cancellation as soon as the workflow is cancelled, and with an
   * {@link AttemptTimeout} (the core's failure) once the policy's
   * `attemptTimeoutMs` has passed; the attempt's signal is aborted with the
   * same reason. `fn` is not called when the workflow is cancelled already.
   */
  run<T>(fn: StepFn<T>, of: AttemptOf, policy: native.NativeRetryPolicy): Promise<T> {
    const workflow = this.#signal;
    if (workflow.aborted) {
      return Promise.reject(workflow.reason);
    }
    this.#listen();
    const limit = policy.attemptTimeoutMs;
    const timed = limit !== undefined && limit !== Number.POSITIVE_INFINITY;
    // Without a timeout the attempt's signal is the workflow's: nothing to make.
    const own = timed ? new AbortController() : undefined;
    const info: StepInfo = Object.freeze({ attempt: of.attempt, signal: own?.signal ?? workflow });
    return new Promise<T>((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const settled = (): void => {
        this.#running.delete(stop);
        cancelTimer?.();
      };
      // The first of: the attempt's outcome, the cancellation, the timeout.
      const stop = (reason: unknown): void => {
        settled();
        reject(reason);
        own?.abort(reason);
      };
      this.#running.add(stop);
      if (timed) {
        cancelTimer = after(limit, () => stop(timedOut(of, policy, limit)));
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

  #listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    const signal = this.#signal;
    signal.addEventListener(
      "abort",
      () => {
        for (const stop of [...this.#running]) stop(signal.reason);
      },
      { once: true },
    );
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
