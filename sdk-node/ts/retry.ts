/** {@link RetryPolicy}: how often and how soon a failing step runs again. */
import { callSync, InvalidArgument } from "./errors";
import native from "./native";

/**
 * How a step whose function throws is retried. Every field is optional; an
 * absent one takes the default: 1 s before the second attempt, ×2 after
 * each attempt, at most 60 s between two, 10 attempts in all, jitter 0.2,
 * no attempt timeout.
 *
 * The delay before attempt `n + 1` is
 * `min(maximumIntervalMs, initialIntervalMs × backoffCoefficient^(n−1))`,
 * shortened at random by up to `jitter` of itself (never lengthened). Each
 * failed attempt is committed with its delay, so a new owner after a
 * failover goes on with the count and the wait.
 *
 * An error thrown as a `NonRetryableError` (or an `ApplicationError`
 * with `nonRetryable: true`), or whose type is in `nonRetryableErrorTypes`,
 * fails the step at once.
 *
 * A policy applies whole: the step's (`ctx.checkpoint(name, fn, { retry })`)
 * if it has one, else the workflow's (`workflow(name, { retry }, fn)`), else
 * the worker's (`Worker.create(client, { retry })`), else the defaults.
 *
 * @example
 * ```ts
 * const retry: RetryPolicy = {
 *   initialIntervalMs: 200,
 *   maximumAttempts: 5,
 *   nonRetryableErrorTypes: ["CardDeclined"],
 *   attemptTimeoutMs: 10_000,
 * };
 * await ctx.checkpoint("charge", ({ signal }) => charge(order, { signal }), { retry });
 * ```
 */
export interface RetryPolicy {
  /** Delay before the second attempt, in ms (default 1000). */
  initialIntervalMs?: number;
  /** Factor applied to the delay after each attempt, at least 1 (default 2). */
  backoffCoefficient?: number;
  /** Longest delay between two attempts, in ms, at most 7 days (default 60000). */
  maximumIntervalMs?: number;
  /** Attempts in all, the first included; 1: no retry; `Infinity`: no limit (default 10). */
  maximumAttempts?: number;
  /** Share of each delay removed at random, in `[0, 1]` (default 0.2). */
  jitter?: number;
  /** Error types (see `ApplicationError`) that fail the step at once. */
  nonRetryableErrorTypes?: readonly string[];
  /**
   * Longest one attempt may run, in ms, more than 0; `Infinity`: no limit
   * (the default). On the owner, an attempt that outlasts it has its
   * `AbortSignal` (`StepInfo.signal`) aborted with an `AttemptTimeout`, is
   * no longer waited for, and fails as a retryable error of type
   * `AttemptTimeout`, message `attempt N timed out after T ms` (list
   * `"AttemptTimeout"` in `nonRetryableErrorTypes` to stop at the first).
   * Timed on the owner running the attempt: one cut short by a failover
   * starts again with the whole timeout.
   */
  attemptTimeoutMs?: number;
}

const NUMBERS = [
  "initialIntervalMs",
  "backoffCoefficient",
  "maximumIntervalMs",
  "maximumAttempts",
  "jitter",
  "attemptTimeoutMs",
] as const;
const OPTIONS: readonly string[] = [...NUMBERS, "nonRetryableErrorTypes"];

/**
 * @internal `policy` checked (types here, values by the core, which refuses
 * the same policies in every SDK) and copied for the native layer. Throws
 * {@link InvalidArgument} with a message starting `retry policy: ` and
 * naming `where` (e.g. `workflow 'order'`).
 */
export function checkRetryPolicy(policy: unknown, where: string): native.NativeRetryPolicy {
  const refuse = (what: string): InvalidArgument =>
    new InvalidArgument(`retry policy: ${what} (the retry option of ${where})`);
  if (typeof policy !== "object" || policy === null || Array.isArray(policy)) {
    throw refuse(`expected an object such as { maximumAttempts: 3 }, got ${describe(policy)}`);
  }
  const given = policy as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!OPTIONS.includes(key)) {
      throw refuse(`unknown option '${key}'; the options are ${OPTIONS.join(", ")}`);
    }
  }
  const out: native.NativeRetryPolicy = {};
  for (const key of NUMBERS) {
    const v = given[key];
    if (v === undefined) continue;
    if (typeof v !== "number") {
      throw refuse(`${key} must be a number, got ${describe(v)}`);
    }
    out[key] = v;
  }
  const types = given.nonRetryableErrorTypes;
  if (types !== undefined) {
    if (!Array.isArray(types) || types.some((t) => typeof t !== "string")) {
      throw refuse(`nonRetryableErrorTypes must be an array of type names, got ${describe(types)}`);
    }
    out.nonRetryableErrorTypes = [...(types as string[])];
  }
  try {
    callSync(() => native.validateRetryPolicy(out));
  } catch (e) {
    if (e instanceof InvalidArgument) {
      throw new InvalidArgument(`${e.message} (the retry option of ${where})`);
    }
    throw e;
  }
  return Object.freeze(out);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `a string ("${v}")` : typeof v;
}
