/**
 * The errors of the Raftoral SDK: one hierarchy under {@link RaftoralError},
 * each class with a stable `code`.
 *
 * The native core reports every failure (a gRPC status, a stream error code,
 * a workflow outcome) with its details; {@link fromNative} turns it into one
 * of these classes with the core's message, which says what to do.
 */

import type { WorkflowFailure } from "./types";

/** The stable codes of {@link RaftoralError}. */
export type ErrorCode =
  | "WORKFLOW_FAILED"
  | "CANCELLED"
  | "NON_DETERMINISM"
  | "NOT_FOUND"
  | "UNAVAILABLE"
  | "INVALID_ARGUMENT"
  | "TIMEOUT"
  | "SHUTTING_DOWN"
  | "REJECTED"
  | "NOT_RUNNING"
  | "STEP_FAILED"
  | "ATTEMPT_TIMEOUT"
  | "APPLICATION_ERROR"
  | "ALREADY_EXISTS"
  | "ALREADY_COMPLETED"
  | "FAILED_PRECONDITION"
  | "RESOURCE_EXHAUSTED"
  | "UNAUTHENTICATED"
  | "INTERNAL";

/** Base class of every error the SDK throws. */
export class RaftoralError extends Error {
  /** Stable code; switch on it rather than on the class or the message. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The workflow failed; `error` is its error text. When it failed with a
 * structured failure (an {@link ApplicationError} its function threw, or a
 * step's failure it did not catch), `failure` has it: type, message,
 * details, in any language the workflow ran in.
 *
 * @example
 * ```ts
 * try {
 *   await handle.result();
 * } catch (e) {
 *   if (e instanceof WorkflowFailed && e.failure?.type === "OrderFailed") {
 *     console.log(e.failure.message, e.failure.details);
 *   } else throw e;
 * }
 * ```
 */
export class WorkflowFailed extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    /** The workflow's error text (`Type: message` for a structured failure). */
    readonly error = message,
    /** The structured failure's type (e.g. `"CardDeclined"`); empty without one. */
    readonly type = "",
    /** The structured failure's details (decoded JSON), or `undefined`. */
    readonly details: unknown = undefined,
    /** The structured failure, or `undefined` (the workflow threw another error). */
    readonly failure: WorkflowFailure | undefined = undefined,
  ) {
    super("WORKFLOW_FAILED", message);
  }
}

/**
 * The workflow was cancelled. `handle.result()` rejects with it once the
 * workflow is CANCELLED.
 *
 * Inside the workflow function, a cancel request (`client.cancelWorkflow`)
 * rejects with it the step or sleep the function awaits then (a running
 * step's attempt is stopped: its `signal` aborts), or the next one it
 * takes; the same step on every replica and in every replay. Steps taken
 * after that run as usual: catch it to compensate within the cancel's
 * cleanup window, then throw it again so that the workflow ends CANCELLED
 * (returning a value ends it COMPLETED, another error FAILED). Once the
 * window has run out (or for a cancel without cleanup), every step and
 * sleep rejects with it and nothing more is committed.
 *
 * @example
 * ```ts
 * try {
 *   await ctx.checkpoint("charge", ({ signal }) => pay(order, { signal }));
 * } catch (e) {
 *   if (e instanceof Cancelled) {
 *     await ctx.checkpoint("refund", () => refund(order));
 *   }
 *   throw e;
 * }
 * ```
 */
export class Cancelled extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    /** The reason given to the cancel. */
    readonly reason = "",
  ) {
    super("CANCELLED", message);
  }
}

/** @internal A {@link Cancelled} for a cancelled run, with the core's message. */
export function cancelledError(workflowId: string, reason: string): Cancelled {
  return new Cancelled(`workflow '${workflowId}' was cancelled: ${reason}`, workflowId, reason);
}

/**
 * Replay found another checkpoint than the history recorded: `seq` is the
 * 0-based position, `expected` the committed name, `got` the name the code
 * asked for. Keep checkpoint names and order stable, or register a new
 * workflow version.
 */
export class NonDeterminism extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId: string,
    readonly seq: number,
    readonly expected: string,
    readonly got: string,
  ) {
    super("NON_DETERMINISM", message);
  }
}

/** No workflow has this id (gRPC NOT_FOUND). */
export class NotFound extends RaftoralError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}

/**
 * The sidecar or the cluster cannot serve the call now (gRPC UNAVAILABLE), or
 * nothing listens at `address`.
 */
export class Unavailable extends RaftoralError {
  constructor(
    message: string,
    readonly address = "",
  ) {
    super("UNAVAILABLE", message);
  }
}

/**
 * The call or a value was wrong: a value the codec cannot encode, a
 * checkpoint outside a workflow, a bad filter (gRPC INVALID_ARGUMENT).
 */
export class InvalidArgument extends RaftoralError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

/** A wait ran out of time; the workflow is still running. */
export class Timeout extends RaftoralError {
  constructor(message: string) {
    super("TIMEOUT", message);
  }
}

/**
 * The worker is stopping; the workflow stays running in the cluster and
 * resumes (by replay) when a worker connects again.
 */
export class ShuttingDown extends RaftoralError {
  constructor(message: string) {
    super("SHUTTING_DOWN", message);
  }
}

/**
 * The workflow is not running any more. Inside a workflow run: it stopped
 * running in the cluster while this run was in it (finished or cancelled
 * elsewhere); not a failure of this run. From `client.signalWorkflow`
 * (and `signalWithStart`, `resolveAwakeable`, `rejectAwakeable`): the
 * workflow has ended (COMPLETED, FAILED or CANCELLED), so it takes no more
 * events (the sidecar's `FAILED_PRECONDITION`).
 */
export class NotRunning extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
  ) {
    super("NOT_RUNNING", message);
  }
}

/**
 * The awakeable was completed before: `client.resolveAwakeable` or
 * `client.rejectAwakeable` of an id that was already resolved or rejected
 * (the sidecar's `ALREADY_EXISTS`). An awakeable is completed once, so the
 * first completion stands; a retry of a completion whose answer was lost
 * gets this error when the first one went through.
 *
 * @example
 * ```ts
 * try {
 *   await client.resolveAwakeable(id, receipt);
 * } catch (e) {
 *   if (!(e instanceof AlreadyCompleted)) throw e; // completed before: nothing to do
 * }
 * ```
 */
export class AlreadyCompleted extends RaftoralError {
  constructor(
    message: string,
    /** The awakeable's id. */
    readonly awakeableId = "",
  ) {
    super("ALREADY_COMPLETED", message);
  }
}

/**
 * A limit of the cluster is reached (gRPC RESOURCE_EXHAUSTED): from
 * `client.signalWorkflow`, the workflow's inbox is full (the message says
 * how many events and bytes it holds, and the limits); the workflow must
 * consume events before more can be sent.
 *
 * @example
 * ```ts
 * try {
 *   await client.signalWorkflow(id, "item", item);
 * } catch (e) {
 *   if (e instanceof ResourceExhausted) await backOff();
 *   else throw e;
 * }
 * ```
 */
export class ResourceExhausted extends RaftoralError {
  constructor(message: string) {
    super("RESOURCE_EXHAUSTED", message);
  }
}

/**
 * The sidecar refused a message on the app stream; `streamCode` is its
 * stable `ErrorCode` name (e.g. `ERROR_CODE_MESSAGE_TOO_LARGE`).
 */
export class Rejected extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    readonly streamCode = "",
  ) {
    super("REJECTED", message);
  }
}

/**
 * A step failed for good: its code threw a non-retryable error, or every
 * attempt failed. The failure is committed, so the same error is thrown at
 * the same step on every replica and in every replay, whichever language
 * threw it first. An awakeable's promise rejects with it too when the
 * awakeable is rejected (`client.rejectAwakeable`): `type` and `error` are
 * the rejection's type and message, `step` the awakeable's id. Catch it to
 * compensate:
 *
 * ```ts
 * try {
 *   await ctx.checkpoint("charge", charge);
 * } catch (e) {
 *   if (e instanceof StepFailed && e.type === "CardDeclined") {
 *     await ctx.checkpoint("refund", refund);
 *   } else throw e;
 * }
 * ```
 */
export class StepFailed extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    readonly seq = 0,
    readonly step = "",
    readonly attempts = 1,
    /** The error's type name, as the step's code gave it. */
    readonly type = "",
    /** The error's own message. */
    readonly error = "",
    /** The error's details (decoded JSON), or `undefined`. */
    readonly details: unknown = undefined,
    readonly nonRetryable = false,
  ) {
    super("STEP_FAILED", message);
  }
}

/**
 * An attempt of a step outlasted its retry policy's `attemptTimeoutMs`. The
 * attempt's `AbortSignal` (`StepInfo.signal`) is aborted with it, the SDK
 * stops waiting for the attempt, and the attempt fails with it: committed
 * as type `AttemptTimeout` (`type`) and this message
 * (`attempt N timed out after T ms`), the same in every SDK, and retried
 * per the policy. When no attempt is left the step fails with it
 * (`StepFailed` of type `AttemptTimeout`).
 */
export class AttemptTimeout extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId: string,
    /** The step's name. */
    readonly step: string,
    /** The step's position. */
    readonly seq: number,
    /** The attempt that timed out (1-based). */
    readonly attempt: number,
    /** The policy's `attemptTimeoutMs`. */
    readonly timeoutMs: number,
    /** The failure's type as it is committed: `"AttemptTimeout"`. */
    readonly type = "AttemptTimeout",
  ) {
    super("ATTEMPT_TIMEOUT", message);
  }
}

/**
 * Options of {@link ApplicationError}.
 *
 * @example
 * ```ts
 * const options: ApplicationErrorOptions = { type: "OutOfStock", details: { sku: "a-1" }, nonRetryable: true };
 * throw new ApplicationError("no stock left", options);
 * ```
 */
export interface ApplicationErrorOptions {
  /**
   * The error's type name, as it is committed and as `StepFailed.type`
   * gives it back (default: the class name, e.g. `ApplicationError` or that
   * of your subclass). Name it for `RetryPolicy.nonRetryableErrorTypes`.
   */
  type?: string;
  /** Structured details, committed as JSON (`StepFailed.details`). */
  details?: unknown;
  /** True: the step fails at once, whatever its retry policy. */
  nonRetryable?: boolean;
}

/**
 * An error a step throws on purpose, with a type, details and whether it
 * may be retried. Any error a step throws fails that attempt; this one says
 * how it is recorded: its `type` (instead of the class name) and `details`
 * (as JSON) reach `StepFailed` on every replica and in every replay, in any
 * language.
 *
 * Thrown by the workflow function itself (outside any step), it fails the
 * workflow with that structured failure: clients get it as
 * `WorkflowFailed.failure` from `handle.result()`, and as
 * `WorkflowInfo.failure` from `client.getWorkflow(id)`.
 *
 * @example
 * ```ts
 * await ctx.checkpoint("reserve", async () => {
 *   const r = await fetch(`https://stock.example/reserve/${sku}`, { method: "POST" });
 *   if (r.status === 503) {
 *     throw new ApplicationError("stock service busy", { type: "StockBusy", details: { sku } });
 *   }
 *   return (await r.json()) as { reservation: string };
 * });
 * ```
 */
export class ApplicationError extends RaftoralError {
  /** The error's type name (default: the class name). */
  readonly type: string;
  /** Structured details (committed as JSON), or `undefined`. */
  readonly details: unknown;
  /** True: not retried, the step fails at once. */
  readonly nonRetryable: boolean;

  constructor(message: string, options: ApplicationErrorOptions = {}) {
    super("APPLICATION_ERROR", message);
    this.type = options.type || new.target.name;
    this.details = options.details;
    this.nonRetryable = options.nonRetryable ?? false;
  }
}

/**
 * An {@link ApplicationError} that must not be retried: the step fails at
 * once with it, whatever its retry policy. Throw it for business outcomes
 * that another attempt cannot change (a declined card, an unknown
 * customer), and catch the resulting `StepFailed` in the workflow to
 * compensate.
 *
 * @example
 * ```ts
 * await ctx.checkpoint("charge", async () => {
 *   const r = await pay(order);
 *   if (r.declined) {
 *     throw new NonRetryableError("card declined", { type: "CardDeclined", details: { code: r.code } });
 *   }
 *   return r.receipt;
 * });
 * ```
 */
export class NonRetryableError extends ApplicationError {
  constructor(message: string, options: Omit<ApplicationErrorOptions, "nonRetryable"> = {}) {
    super(message, { ...options, nonRetryable: true });
  }
}

/** @internal A step's error as it is committed (the native `NativeFailure`). */
export interface FailureRecord {
  type: string;
  message: string;
  detailsJson: string;
  nonRetryable: boolean;
  stack: string;
}

/**
 * @internal What a step threw, as it is committed: the type is `type` for
 * an {@link ApplicationError}, else the class name (or `name`) of an
 * `Error`, else `Error`; details (JSON) of an `ApplicationError` only.
 */
export function failureOf(e: unknown): FailureRecord {
  if (!(e instanceof Error)) {
    return { type: "Error", message: String(e), detailsJson: "", nonRetryable: false, stack: "" };
  }
  if (e instanceof AttemptTimeout) {
    // The core's failure, as every SDK commits it (no stack).
    return { type: e.type, message: e.message, detailsJson: "", nonRetryable: false, stack: "" };
  }
  const app = e instanceof ApplicationError;
  const type = app ? e.type : e.constructor?.name || e.name || "Error";
  return {
    type,
    message: e.message,
    detailsJson: app ? detailsJson(e.details) : "",
    nonRetryable: app && e.nonRetryable,
    stack: e.stack ?? "",
  };
}

/** @internal `details` as compact JSON; empty when there are none or JSON cannot encode them. */
export function detailsJson(details: unknown): string {
  if (details === undefined) return "";
  try {
    return JSON.stringify(details) ?? "";
  } catch {
    // A BigInt or a cycle: the failure still counts, without its details.
    return "";
  }
}

/**
 * @internal Details committed as JSON text, decoded: `undefined` for none;
 * the text itself if it is not JSON (another SDK's mistake, kept readable).
 */
export function decodeDetails(json: string | undefined | null): unknown {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return json;
  }
}

/** @internal A structured failure as the native layer gives it. */
export interface NativeFailureRecord {
  type: string;
  message: string;
  detailsJson?: string | null;
  nonRetryable?: boolean | null;
}

/** @internal {@link WorkflowFailure} of a native failure record. */
export function workflowFailure(f: NativeFailureRecord): WorkflowFailure {
  return {
    type: f.type,
    message: f.message,
    details: decodeDetails(f.detailsJson),
    nonRetryable: f.nonRetryable ?? false,
  };
}

const PREFIX = "RAFTORAL_ERROR ";

interface Details {
  code: ErrorCode;
  message: string;
  workflowId?: string;
  reason?: string;
  error?: string;
  seq?: number;
  expected?: string;
  got?: string;
  address?: string;
  streamCode?: string;
  step?: string;
  attempts?: number;
  type?: string;
  detailsJson?: string;
  nonRetryable?: boolean;
  failure?: NativeFailureRecord | null;
  awakeableId?: string;
}

/** The SDK error for what a native call threw; other errors pass through. */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error) || !e.message.startsWith(PREFIX)) {
    return e;
  }
  const d = JSON.parse(e.message.slice(PREFIX.length)) as Details;
  const m = d.message;
  switch (d.code) {
    case "WORKFLOW_FAILED": {
      const failure = d.failure ? workflowFailure(d.failure) : undefined;
      return new WorkflowFailed(m, d.workflowId, d.error, failure?.type, failure?.details, failure);
    }
    case "CANCELLED":
      return new Cancelled(m, d.workflowId, d.reason);
    case "NON_DETERMINISM":
      return new NonDeterminism(m, d.workflowId ?? "", d.seq ?? 0, d.expected ?? "", d.got ?? "");
    case "NOT_FOUND":
      return new NotFound(m);
    case "UNAVAILABLE":
      return new Unavailable(m, d.address);
    case "INVALID_ARGUMENT":
      return new InvalidArgument(m);
    case "TIMEOUT":
      return new Timeout(m);
    case "SHUTTING_DOWN":
      return new ShuttingDown(m);
    case "NOT_RUNNING":
      return new NotRunning(m, d.workflowId);
    case "REJECTED":
      return new Rejected(m, d.workflowId, d.streamCode);
    case "RESOURCE_EXHAUSTED":
      return new ResourceExhausted(m);
    case "ALREADY_COMPLETED":
      return new AlreadyCompleted(m, d.awakeableId);
    case "STEP_FAILED":
      return new StepFailed(
        m,
        d.workflowId,
        d.seq,
        d.step,
        d.attempts,
        d.type,
        d.error,
        decodeDetails(d.detailsJson),
        d.nonRetryable,
      );
    default:
      return new RaftoralError(d.code, m);
  }
}

/** Awaits a native call, turning its failure into the SDK's error. */
export async function call<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw fromNative(e);
  }
}

/** Runs a synchronous native call, turning its failure into the SDK's error. */
export function callSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}
