/**
 * The errors of the Raftoral SDK: one hierarchy under {@link RaftoralError},
 * each class with a stable `code`.
 *
 * The native core reports every failure (a gRPC status, a stream error code,
 * a workflow outcome) with its details; {@link fromNative} turns it into one
 * of these classes with the core's message, which says what to do.
 */

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
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
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

/** The workflow function threw; `error` is its message. */
export class WorkflowFailed extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    readonly error = message,
  ) {
    super("WORKFLOW_FAILED", message);
  }
}

/**
 * The workflow was cancelled. Thrown inside the workflow function by its
 * pending or next checkpoint (let it propagate: nothing more is committed),
 * and by `handle.result()`.
 */
export class Cancelled extends RaftoralError {
  constructor(
    message: string,
    readonly workflowId = "",
    readonly reason = "",
  ) {
    super("CANCELLED", message);
  }
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
 * The workflow stopped running in the cluster while this run was in it
 * (finished or cancelled elsewhere); not a failure of this run.
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
}

/** The SDK error for what a native call threw; other errors pass through. */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error) || !e.message.startsWith(PREFIX)) {
    return e;
  }
  const d = JSON.parse(e.message.slice(PREFIX.length)) as Details;
  const m = d.message;
  switch (d.code) {
    case "WORKFLOW_FAILED":
      return new WorkflowFailed(m, d.workflowId, d.error);
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
