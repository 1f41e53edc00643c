/** Records the client returns. */

/** Lifecycle of a workflow. */
export type WorkflowStatus = "UNSPECIFIED" | "PENDING" | "RUNNING" | "COMPLETED" | "FAILED" | "CANCELLED";

/** Status names in the protocol's numbering. */
export const STATUSES: readonly WorkflowStatus[] = [
  "UNSPECIFIED",
  "PENDING",
  "RUNNING",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
];

/**
 * The structured failure of a failed workflow: an `ApplicationError` its
 * function threw (outside any step), or a step's failure it did not catch;
 * whichever language the workflow ran in.
 *
 * @example
 * ```ts
 * const info = await client.getWorkflow(id);
 * if (info.status === "FAILED" && info.failure?.type === "OrderFailed") {
 *   refundCustomer(info.failure.details);
 * }
 * ```
 */
export interface WorkflowFailure {
  /** The error's type name (e.g. `"OrderFailed"`, `"CardDeclined"`). */
  type: string;
  /** The error's own message (without the type). */
  message: string;
  /** Its details, decoded from JSON; `undefined` when there are none. */
  details: unknown;
  /** True when it was raised as non-retryable (`NonRetryableError`). */
  nonRetryable: boolean;
}

/** A workflow's state. `input` and `result` are decoded with the client's codec. */
export interface WorkflowInfo {
  workflowId: string;
  workflowName: string;
  version: number;
  status: WorkflowStatus;
  /** Raft node id of the owner (0: none). */
  ownerNodeId: number;
  checkpointCount: number;
  input: unknown;
  /** The result of a completed workflow, else `undefined`. */
  result: unknown;
  /** Failure message or cancellation reason. */
  error: string;
  /**
   * The failure, structured, when the workflow failed with one (an
   * `ApplicationError` thrown by its function, or a step failure it did not
   * catch); else `undefined`.
   */
  failure: WorkflowFailure | undefined;
  /** Why a pending workflow waits. */
  pendingReason: string;
  createdAtMs: number;
  updatedAtMs: number;
  /**
   * Its durable timers started and not fired yet, earliest first (running
   * and pending workflows; empty otherwise).
   */
  pendingTimers: PendingTimer[];
  /**
   * A delayed start not due yet (`startDelay`): when the workflow starts
   * (log time, milliseconds since the Unix epoch); else `undefined`.
   */
  startAtMs: number | undefined;
  /**
   * When the workflow times out, if it was started with an
   * `executionTimeout` (log time, milliseconds since the Unix epoch); else
   * `undefined`.
   */
  timeoutAtMs: number | undefined;
  /**
   * The reason of the cancel request the running workflow is cleaning up
   * after (`client.cancelWorkflow` with a cleanup window); else
   * `undefined`.
   */
  cancelReason: string | undefined;
  /**
   * When that cleanup window ends (log time, milliseconds since the Unix
   * epoch): the workflow is CANCELLED then if its code has not ended; else
   * `undefined`.
   */
  cancelDeadlineMs: number | undefined;
  /**
   * Events sent to the workflow (`client.signalWorkflow`) and not consumed
   * yet: its inbox. An event a wait consumed at once is not counted.
   */
  inboxSize: number;
  /** The event waits (`ctx.waitEvent`) of its running code, earliest first. */
  eventWaits: EventWait[];
  /**
   * The workflow that started this one as a child (`ctx.startChild`,
   * `ctx.callChild`); `undefined` when it is not a child.
   */
  parentId: string | undefined;
  /** A child's position in its parent's history; `undefined` when it is not a child. */
  parentSeq: number | undefined;
  /**
   * What happens to a child if its parent ends first (`"cancel"`,
   * `"abandon"` or `"terminate"`); `undefined` when it is not a child.
   */
  parentClose: "cancel" | "abandon" | "terminate" | undefined;
  /** The children this workflow started that have not ended, as workflow ids. */
  openChildren: string[];
}

/**
 * A position where a workflow's code waits for an event
 * (`WorkflowInfo.eventWaits`).
 *
 * @example
 * ```ts
 * const info = await client.getWorkflow(id);
 * if (info.eventWaits.some((w) => w.name === "approval")) {
 *   await client.signalWorkflow(id, "approval", { approved: true });
 * }
 * ```
 */
export interface EventWait {
  /** The wait's position in the workflow's history. */
  seq: number;
  /** The event name it waits for. */
  name: string;
  /**
   * When the wait times out (log time, milliseconds since the Unix epoch);
   * `undefined`: it has no timeout.
   */
  timeoutAtMs: number | undefined;
}

/**
 * What `client.signalWorkflow` and `handle.signal` resolve with, once the
 * event is committed.
 *
 * @example
 * ```ts
 * const { duplicate } = await handle.signal("approval", { approved: true }, { idempotencyKey: "approval-1" });
 * if (duplicate) console.log("sent before: not delivered again");
 * ```
 */
export interface SignalResult {
  /**
   * True when an event with the same idempotency key was sent to this
   * workflow before: this one was not delivered again.
   */
  duplicate: boolean;
  /** The workflow's state after the event was committed. */
  workflow: WorkflowInfo;
}

/**
 * What `client.signalWithStart` resolves with, once the entry that starts
 * the workflow (when needed) and delivers the event is committed.
 *
 * @example
 * ```ts
 * const { started, duplicate, workflow } = await client.signalWithStart(cart, [], {
 *   id: "cart-7",
 *   event: "add",
 *   payload: { sku: "book" },
 * });
 * console.log(started ? "started it" : "it was running", duplicate, workflow.inboxSize);
 * ```
 */
export interface SignalWithStartResult extends SignalResult {
  /**
   * True when this call started the workflow; false when a workflow of
   * that id existed (it keeps its input and options, and gets the event).
   */
  started: boolean;
}

/**
 * A durable timer a workflow waits on (`WorkflowInfo.pendingTimers`).
 *
 * @example
 * ```ts
 * for (const t of (await client.getWorkflow(id)).pendingTimers) {
 *   console.log(`${t.name} (seq ${t.seq}) fires at ${new Date(t.fireAtMs).toISOString()}`);
 * }
 * ```
 */
export interface PendingTimer {
  /** The timer's position in the workflow's history. */
  seq: number;
  /** The timer's name (`"sleep"` unless the sleep named it). */
  name: string;
  /** When it fires (log time, milliseconds since the Unix epoch). */
  fireAtMs: number;
}

/**
 * What a history entry records: a step's value (`VALUE`), a step's final
 * failure, one failed attempt of a step, a durable timer's start, its
 * firing, or its cancellation (a timer that lost a `ctx.first`): the
 * firing or the cancellation resolves the timer's position. A wait for an
 * event (`ctx.waitEvent`): `EVENT_WAITING` when the wait is committed,
 * then `EVENT_RECEIVED` (the event's payload is the entry's `value`) or
 * `EVENT_TIMED_OUT` resolves its position, or `EVENT_WAIT_CANCELLED` (a
 * wait that lost a `ctx.first`; when the wait had received an event, the
 * entry resolves nothing and gives that event back to the workflow, its
 * payload the entry's `value`). `STATUS_SET`: a status value the code set
 * (`ctx.setStatus`; the key is the entry's `checkpointName`, the value its
 * `value`). `UNKNOWN`: a kind newer than this SDK.
 */
export type HistoryEntryKind =
  | "VALUE"
  | "STEP_FAILED"
  | "STEP_ATTEMPT_FAILED"
  | "TIMER_STARTED"
  | "TIMER_FIRED"
  | "TIMER_CANCELLED"
  | "EVENT_WAITING"
  | "EVENT_RECEIVED"
  | "EVENT_TIMED_OUT"
  | "EVENT_WAIT_CANCELLED"
  | "CHILD_STARTED"
  | "CHILD_COMPLETED"
  | "CHILD_FAILED"
  | "STATUS_SET"
  | "UNKNOWN";

/** The kinds the addon reports. */
export const KINDS: readonly HistoryEntryKind[] = [
  "VALUE",
  "STEP_FAILED",
  "STEP_ATTEMPT_FAILED",
  "TIMER_STARTED",
  "TIMER_FIRED",
  "TIMER_CANCELLED",
  "EVENT_WAITING",
  "EVENT_RECEIVED",
  "EVENT_TIMED_OUT",
  "EVENT_WAIT_CANCELLED",
  "CHILD_STARTED",
  "CHILD_COMPLETED",
  "CHILD_FAILED",
  "STATUS_SET",
];

/**
 * One committed checkpoint; `value` is decoded with the client's codec.
 *
 * @example
 * ```ts
 * // The deadlines of a workflow's timers.
 * const deadlines = (await handle.history())
 *   .filter((e) => e.kind === "TIMER_STARTED")
 *   .map((e) => ({ name: e.checkpointName, at: new Date(e.fireAtMs ?? 0) }));
 * ```
 */
export interface HistoryEntry {
  seq: number;
  checkpointName: string;
  /**
   * The step's value (`kind` `VALUE`), the event's payload
   * (`EVENT_RECEIVED`, or the event an `EVENT_WAIT_CANCELLED` gave back),
   * the status value (`STATUS_SET`), the child's workflow id, a string
   * (`CHILD_STARTED`; `checkpointName` is the child's workflow type) or the
   * child's result (`CHILD_COMPLETED`); `undefined` for the other kinds.
   */
  value: unknown;
  committedAtMs: number;
  /** What the entry records. */
  kind: HistoryEntryKind;
  /**
   * For `TIMER_STARTED`, `TIMER_FIRED` and `TIMER_CANCELLED`: the timer's
   * deadline; for `EVENT_WAITING`, `EVENT_RECEIVED`, `EVENT_TIMED_OUT` and
   * `EVENT_WAIT_CANCELLED`, the wait's timeout when it has one (log time,
   * milliseconds since the Unix epoch); else `undefined`.
   */
  fireAtMs?: number;
}

/** Filter and paging of `client.listWorkflows`. */
export interface ListOptions {
  status?: WorkflowStatus;
  workflowName?: string;
  /** Page size; 0 or absent: the server's default. */
  pageSize?: number;
  /** `nextPageToken` of the previous page. */
  pageToken?: string;
  /**
   * Only workflows waiting on a durable timer (running or pending ones
   * with a timer started and not fired).
   */
  sleeping?: boolean;
  /** Only the children of this workflow (`ctx.startChild`), running or ended. */
  parentId?: string;
}

/** One page of `client.listWorkflows`. */
export interface WorkflowPage {
  workflows: WorkflowInfo[];
  /** Pass back as `pageToken` for the next page; empty on the last page. */
  nextPageToken: string;
}
