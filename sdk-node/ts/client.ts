/** {@link Client} and {@link WorkflowHandle}. */
import { type Codec, jsonCodec } from "./codec";
import { type Duration, parseDuration } from "./duration";
import { call, InvalidArgument, workflowFailure } from "./errors";
import native from "./native";
import {
  type HistoryEntry,
  type HistoryEntryKind,
  KINDS,
  type ListOptions,
  type SignalResult,
  STATUSES,
  type WorkflowInfo,
  type WorkflowPage,
} from "./types";
import type { Workflow } from "./workflow";

/** Options of {@link Client.connect}. */
export interface ConnectOptions {
  /** Connection attempts before giving up (default 5). */
  attempts?: number;
  /** First pause between attempts, doubled each time (default 100 ms). */
  retryDelayMs?: number;
  /** Value codec (default {@link jsonCodec}). */
  codec?: Codec;
  /**
   * App token sent with every call, for a sidecar started with
   * `RAFTORAL_APP_TOKEN`; without it such a sidecar refuses calls with code
   * `UNAUTHENTICATED`.
   */
  token?: string;
  /** PEM file of the CA that signed the sidecar's certificate, for an `https://` URL. */
  tlsCa?: string;
}

/**
 * Options of {@link Client.startWorkflow}.
 *
 * @example
 * ```ts
 * // Starts in an hour; fails with raftoral.WorkflowTimeout if not done a day later.
 * await client.startWorkflow(reminder, order, { startDelay: "1h", executionTimeout: "1d" });
 * ```
 */
export interface StartOptions {
  /**
   * Workflow id. Starting an existing id returns a handle to that workflow
   * (idempotent). Absent: generated, and the start is retried with it while
   * the cluster is unavailable.
   */
  id?: string;
  /**
   * Start this long after the start is committed (a number of
   * milliseconds or a string such as `"30s"` or `"1h30m"`, as
   * `ctx.sleep` takes; see {@link parseDuration}): the workflow stays
   * `PENDING` (`WorkflowInfo.startAtMs` says until when) and the cluster
   * starts it then, whichever node took the request. Absent or 0: at once.
   * At most 366 days.
   */
  startDelay?: Duration;
  /**
   * Fail the workflow if it has not finished this long after it started
   * (after `startDelay`): its status becomes `FAILED` with the failure type
   * `raftoral.WorkflowTimeout`, and its run stops as for a cancellation
   * (`WorkflowInfo.timeoutAtMs` says when). A duration as `startDelay`
   * takes, more than 0. Absent: no limit. At most 366 days.
   */
  executionTimeout?: Duration;
}

/**
 * Options of {@link Client.cancelWorkflow} and {@link WorkflowHandle.cancel}.
 *
 * @example
 * ```ts
 * // The workflow's code may compensate for up to a minute.
 * await client.cancelWorkflow("order-42", { reason: "customer asked", cleanupMs: 60_000 });
 * // No cleanup: CANCELLED at once.
 * await client.cancelWorkflow("order-43", { reason: "fraud", cleanupMs: 0 });
 * ```
 */
export interface CancelOptions {
  /**
   * Why: the `reason` of the `Cancelled` the workflow's code gets, and the
   * workflow's `error` once it is CANCELLED (empty or absent: the
   * sidecar's `"cancelled"`).
   */
  reason?: string;
  /**
   * How long a running workflow's code may clean up, in milliseconds: a
   * whole number from 0 to 366 days. Absent: the sidecar's default (its
   * `--cancel-cleanup-ms`, 30 s unless set). 0: no cleanup, the workflow
   * is CANCELLED at once and its code's next step or sleep rejects with
   * `Cancelled`. A pending workflow is always cancelled at once.
   */
  cleanupMs?: number;
}

/**
 * Options of {@link Client.signalWorkflow} and {@link WorkflowHandle.signal}.
 *
 * @example
 * ```ts
 * // Sent twice (a retry after a lost answer), delivered once.
 * await client.signalWorkflow("order-42", "approval", { approved: true }, { idempotencyKey: "approval-42" });
 * ```
 */
export interface SignalOptions {
  /**
   * An event with a key already delivered to this workflow is not
   * delivered again: the call resolves with `duplicate: true`. Give one to
   * retry a send safely. Empty or absent: none. At most 256 bytes.
   */
  idempotencyKey?: string;
}

/**
 * A connection to a Raftoral sidecar (`raftoral serve`) or to a `LocalNode`.
 *
 * @example
 * ```ts
 * const client = await Client.connect("http://127.0.0.1:9001");
 * const handle = await client.startWorkflow(pingPong, "ping", { id: "order-42" });
 * console.log(await handle.result());
 * ```
 */
export class Client {
  /** @internal */
  readonly native: native.NativeClient;
  /** The value codec. */
  readonly codec: Codec;

  /** @internal Use {@link Client.connect} or `LocalNode.client()`. */
  constructor(nativeClient: native.NativeClient, codec: Codec) {
    this.native = nativeClient;
    this.codec = codec;
  }

  /**
   * Connects to the sidecar at `url` (e.g. `http://127.0.0.1:9001`). Retries
   * a few times (a sidecar starting beside its app may need a moment), then
   * rejects with `Unavailable` naming the address.
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<Client> {
    const nativeClient = await call(
      native.NativeClient.connect(
        url,
        options.attempts ?? 5,
        options.retryDelayMs ?? 100,
        options.token ?? null,
        options.tlsCa ?? null,
      ),
    );
    return new Client(nativeClient, options.codec ?? jsonCodec);
  }

  /** The sidecar address (or the local node's name). */
  get endpoint(): string {
    return this.native.endpoint;
  }

  /**
   * Starts `wf` with `input`; the handle's result has the workflow's output
   * type. Rejects with `TypeError` for a `startDelay` or `executionTimeout`
   * it cannot read, with `InvalidArgument` for a negative one, one beyond
   * 366 days, or an `executionTimeout` of 0.
   */
  async startWorkflow<I, O>(
    wf: Workflow<I, O>,
    input: I,
    options: StartOptions = {},
  ): Promise<WorkflowHandle<O>> {
    return this.startWorkflowByName<O>(wf.name, wf.version, input, options);
  }

  /** Starts a workflow by name and version (e.g. one another app runs); see {@link Client.startWorkflow}. */
  async startWorkflowByName<O = unknown>(
    name: string,
    version: number,
    input: unknown,
    options: StartOptions = {},
  ): Promise<WorkflowHandle<O>> {
    const delay = options.startDelay === undefined ? undefined : parseDuration(options.startDelay);
    const timeout =
      options.executionTimeout === undefined ? undefined : parseDuration(options.executionTimeout);
    const started = await call(
      this.native.startWorkflow(
        options.id ?? "",
        name,
        version,
        Buffer.from(this.codec.encode(input)),
        delay,
        timeout,
      ),
    );
    return new WorkflowHandle<O>(this, started.workflowId, started.alreadyStarted);
  }

  /** A handle to an existing workflow; `O` is its output type. */
  getHandle<O = unknown>(workflowId: string): WorkflowHandle<O> {
    return new WorkflowHandle<O>(this, workflowId, true);
  }

  /** The workflow's state; rejects with `NotFound` for an unknown id. */
  async getWorkflow(workflowId: string): Promise<WorkflowInfo> {
    return this.#info(await call(this.native.getWorkflow(workflowId)));
  }

  /**
   * Waits up to `timeoutMs` (absent: however long it takes) for a terminal
   * status; rejects with `Timeout` when it is still running.
   */
  async waitWorkflow(workflowId: string, timeoutMs?: number): Promise<WorkflowInfo> {
    return this.#info(await call(this.native.waitWorkflow(workflowId, timeoutMs)));
  }

  /**
   * Cancels a workflow; `options` is the reason (a string) or
   * {@link CancelOptions}. Returns its state after the cancel.
   *
   * A pending workflow, or a cancel with `cleanupMs: 0`, is CANCELLED at
   * once: its code's next step or sleep rejects with `Cancelled`, and
   * nothing more is committed. A running one otherwise gets a request and
   * stays `RUNNING` (the returned state has `cancelReason` and
   * `cancelDeadlineMs`): the step or sleep its code awaits rejects with
   * `Cancelled` (a running attempt's `signal` aborts), and the steps it
   * takes after that run as usual, so it can compensate. The workflow
   * ends `CANCELLED` when its function throws that `Cancelled` again,
   * `COMPLETED` or `FAILED` when it returns a value or throws another
   * error, and `CANCELLED` anyway when the cleanup window runs out (its
   * `error` then says `cleanup window ran out`). Wait for the end with
   * {@link WorkflowHandle.result} or {@link Client.waitWorkflow}.
   *
   * Rejects with `InvalidArgument` for a `cleanupMs` that is not a whole
   * number of milliseconds from 0 to 366 days (nothing is cancelled
   * then), with `NotFound` for an unknown id.
   *
   * @example
   * ```ts
   * // A saga that refunds when it is cancelled.
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   const receipt = await ctx.checkpoint("charge", ({ signal }) => charge(id, { signal }));
   *   try {
   *     await ctx.checkpoint("ship", ({ signal }) => ship(id, { signal }));
   *   } catch (e) {
   *     if (e instanceof Cancelled) {
   *       await ctx.checkpoint("refund", () => refund(receipt));
   *     }
   *     throw e;
   *   }
   * });
   *
   * const handle = await client.startWorkflow(order, "order-42");
   * const info = await client.cancelWorkflow(handle.workflowId, { reason: "customer asked", cleanupMs: 60_000 });
   * console.log(info.status, info.cancelDeadlineMs); // RUNNING, the end of the window
   * await handle.result().catch((e) => console.log(e instanceof Cancelled)); // true, once refunded
   * ```
   */
  async cancelWorkflow(workflowId: string, options: string | CancelOptions = {}): Promise<WorkflowInfo> {
    const { reason, cleanupMs } = typeof options === "string" ? { reason: options } : options;
    if (cleanupMs !== undefined && !(Number.isInteger(cleanupMs) && cleanupMs >= 0)) {
      const what =
        typeof cleanupMs === "number" ? String(cleanupMs) : `${String(cleanupMs)} (a ${typeof cleanupMs})`;
      throw new InvalidArgument(
        `cleanupMs is ${what}; give a whole number of milliseconds, 0 or more (0: cancel at once), or none for the sidecar's default`,
      );
    }
    // The addon checks the upper limit (366 days, the sidecar's).
    return this.#info(await call(this.native.cancelWorkflow(workflowId, reason ?? "", cleanupMs)));
  }

  /**
   * One page of workflows, filtered by status and name, and with
   * `sleeping: true` to those waiting on a durable timer.
   */
  async listWorkflows(options: ListOptions = {}): Promise<WorkflowPage> {
    const status = options.status === undefined ? 0 : STATUSES.indexOf(options.status);
    const page = await call(
      this.native.listWorkflows(
        status,
        options.workflowName ?? "",
        options.pageSize ?? 0,
        options.pageToken ?? "",
        options.sleeping ?? false,
      ),
    );
    return {
      workflows: page.workflows.map((w) => this.#info(w)),
      nextPageToken: page.nextPageToken,
    };
  }

  /**
   * Sends the event `name` with `payload` (encoded with the client's
   * codec; absent: no payload, which a wait gets as `undefined` with the
   * JSON codec) to a workflow. Resolves once the event is committed in the
   * workflow's durable inbox, or consumed at once by the earliest open
   * `ctx.waitEvent` of its name, whichever node took the call and whether
   * or not a worker is connected. Events of a name are consumed first in,
   * first out. A pending workflow (not started yet) keeps them for its
   * waits.
   *
   * Resolves with {@link SignalResult}: `duplicate` is true when an event
   * with the same `options.idempotencyKey` was delivered before (nothing
   * is delivered again), and `workflow` its state after the event.
   *
   * Rejects with `NotFound` for an unknown workflow, with `NotRunning`
   * (code `NOT_RUNNING`) for one that has ended, with `InvalidArgument` for
   * a bad name (empty, over 256 bytes) or key, a payload the codec cannot
   * encode or over the sidecar's value limit (`--max-value-bytes`, 4 MiB
   * by default), and with `ResourceExhausted` (code `RESOURCE_EXHAUSTED`)
   * when the workflow's inbox is full. Not retried by the SDK: give an
   * idempotency key and retry a send whose answer was lost.
   *
   * @example
   * ```ts
   * const approval = workflow("approval", { version: 1 }, async (ctx, order: string) => {
   *   const answer = await ctx.waitEvent<{ approved: boolean }>("approval", { timeout: "24h" });
   *   return answer?.approved ?? false;
   * });
   *
   * const handle = await client.startWorkflow(approval, "order-42");
   * await client.signalWorkflow(handle.workflowId, "approval", { approved: true }, { idempotencyKey: "approval-42" });
   * console.log(await handle.result()); // true
   * ```
   */
  async signalWorkflow(
    workflowId: string,
    name: string,
    payload?: unknown,
    options: SignalOptions = {},
  ): Promise<SignalResult> {
    const key = options.idempotencyKey;
    if (key !== undefined && typeof key !== "string") {
      throw new InvalidArgument(`idempotencyKey must be a string, not a value of type ${typeof key}`);
    }
    let data: Uint8Array;
    try {
      data = this.codec.encode(payload);
    } catch (e) {
      throw new InvalidArgument(
        `event '${name}' for workflow '${workflowId}': cannot encode its payload: ${(e as Error).message}`,
      );
    }
    const sent = await call(this.native.signalWorkflow(workflowId, name, Buffer.from(data), key ?? null));
    return {
      duplicate: sent.duplicate,
      workflow: sent.workflow ? this.#info(sent.workflow) : await this.getWorkflow(workflowId),
    };
  }

  /** The committed checkpoints of a workflow, in order. */
  async history(workflowId: string): Promise<HistoryEntry[]> {
    const entries = await call(this.native.history(workflowId));
    return entries.map((e) => {
      const kind = (KINDS as readonly string[]).includes(e.kind) ? (e.kind as HistoryEntryKind) : "UNKNOWN";
      const entry: HistoryEntry = {
        seq: e.seq,
        checkpointName: e.checkpointName,
        // Only a value entry and a received event hold an encoded value.
        value: kind === "VALUE" || kind === "EVENT_RECEIVED" ? this.codec.decode(e.value) : undefined,
        committedAtMs: e.committedAtMs,
        kind,
      };
      if (e.fireAtMs != null) {
        entry.fireAtMs = e.fireAtMs;
      }
      return entry;
    });
  }

  #info(w: native.NativeWorkflowInfo): WorkflowInfo {
    return {
      workflowId: w.workflowId,
      workflowName: w.workflowName,
      version: w.version,
      status: STATUSES[w.status] ?? "UNSPECIFIED",
      ownerNodeId: w.ownerNodeId,
      checkpointCount: w.checkpointCount,
      input: this.codec.decode(w.input),
      result: this.codec.decode(w.result),
      error: w.error,
      failure: w.failure ? workflowFailure(w.failure) : undefined,
      pendingReason: w.pendingReason,
      createdAtMs: w.createdAtMs,
      updatedAtMs: w.updatedAtMs,
      pendingTimers: w.pendingTimers.map((t) => ({ seq: t.seq, name: t.name, fireAtMs: t.fireAtMs })),
      startAtMs: w.startAtMs ?? undefined,
      timeoutAtMs: w.timeoutAtMs ?? undefined,
      cancelReason: w.cancelReason ?? undefined,
      cancelDeadlineMs: w.cancelDeadlineMs ?? undefined,
      inboxSize: w.inboxSize,
      eventWaits: w.eventWaits.map((e) => ({
        seq: e.seq,
        name: e.name,
        timeoutAtMs: e.timeoutAtMs ?? undefined,
      })),
    };
  }
}

/** A started workflow; `O` is its output type. */
export class WorkflowHandle<O> {
  readonly #client: Client;
  /** The workflow id. */
  readonly workflowId: string;
  /** True when the start found an existing workflow with this id. */
  readonly alreadyStarted: boolean;

  /** @internal */
  constructor(client: Client, workflowId: string, alreadyStarted: boolean) {
    this.#client = client;
    this.workflowId = workflowId;
    this.alreadyStarted = alreadyStarted;
  }

  /**
   * Waits for the outcome: the decoded result, or a rejection with
   * `WorkflowFailed` (its `failure` has the type, message and details of a
   * structured failure) or `Cancelled` (once the workflow is CANCELLED: a
   * cancel request waits for its cleanup to end).
   */
  async result(): Promise<O> {
    const data = await call(this.#client.native.result(this.workflowId));
    return this.#client.codec.decode(data) as O;
  }

  /** See {@link Client.waitWorkflow}. */
  wait(timeoutMs?: number): Promise<WorkflowInfo> {
    return this.#client.waitWorkflow(this.workflowId, timeoutMs);
  }

  /** See {@link Client.getWorkflow}. */
  get(): Promise<WorkflowInfo> {
    return this.#client.getWorkflow(this.workflowId);
  }

  /**
   * Cancels this workflow: the reason, or {@link CancelOptions} (a
   * `cleanupMs` of 0 cancels at once); see {@link Client.cancelWorkflow}.
   *
   * @example
   * ```ts
   * await handle.cancel({ reason: "customer asked", cleanupMs: 10_000 });
   * await handle.result(); // rejects with Cancelled once the code has cleaned up
   * ```
   */
  cancel(options: string | CancelOptions = {}): Promise<WorkflowInfo> {
    return this.#client.cancelWorkflow(this.workflowId, options);
  }

  /**
   * Sends the event `name` with `payload` to this workflow; see
   * {@link Client.signalWorkflow}.
   *
   * @example
   * ```ts
   * const { duplicate } = await handle.signal("approval", { approved: true }, { idempotencyKey: "approval-42" });
   * ```
   */
  signal(name: string, payload?: unknown, options?: SignalOptions): Promise<SignalResult> {
    return this.#client.signalWorkflow(this.workflowId, name, payload, options);
  }

  /** See {@link Client.history}. */
  history(): Promise<HistoryEntry[]> {
    return this.#client.history(this.workflowId);
  }
}
