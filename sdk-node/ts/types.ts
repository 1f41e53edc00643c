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
}

/** One committed checkpoint; `value` is decoded with the client's codec. */
export interface HistoryEntry {
  seq: number;
  checkpointName: string;
  value: unknown;
  committedAtMs: number;
}

/** Filter and paging of `client.listWorkflows`. */
export interface ListOptions {
  status?: WorkflowStatus;
  workflowName?: string;
  /** Page size; 0 or absent: the server's default. */
  pageSize?: number;
  /** `nextPageToken` of the previous page. */
  pageToken?: string;
}

/** One page of `client.listWorkflows`. */
export interface WorkflowPage {
  workflows: WorkflowInfo[];
  /** Pass back as `pageToken` for the next page; empty on the last page. */
  nextPageToken: string;
}
