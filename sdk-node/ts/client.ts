/** {@link Client} and {@link WorkflowHandle}. */
import { type Codec, jsonCodec } from "./codec";
import { type Duration, parseDuration } from "./duration";
import { call, InvalidArgument, Timeout, workflowFailure } from "./errors";
import native from "./native";
import {
  type HistoryEntry,
  type HistoryEntryKind,
  KINDS,
  type ListOptions,
  type SignalResult,
  type SignalWithStartResult,
  STATUSES,
  type WorkflowInfo,
  type WorkflowPage,
} from "./types";
import type { Workflow, WorkflowRef } from "./workflow";

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
 * Options of {@link Client.executeWorkflow}: those of
 * {@link Client.startWorkflow}, the version of a workflow given by name,
 * and how long to wait for its result.
 *
 * @example
 * ```ts
 * const receipt = await client.executeWorkflow<string>("billing", order, { version: 2, id: "bill-42", timeout: "5m" });
 * ```
 */
export interface ExecuteOptions extends StartOptions {
  /**
   * Version of a workflow given by name (default 1); a {@link Workflow}
   * definition brings its own.
   */
  version?: number;
  /**
   * How long to wait for the result, as {@link ResultOptions.timeout}:
   * the call rejects with {@link Timeout} when the workflow has not ended
   * by then (it keeps running). Absent: as long as it takes.
   */
  timeout?: Duration;
}

/**
 * Options of {@link WorkflowHandle.result}.
 *
 * @example
 * ```ts
 * const value = await handle.result({ timeout: "30s" });
 * ```
 */
export interface ResultOptions {
  /**
   * Wait at most this long (milliseconds, or a string such as `"30s"`;
   * see {@link parseDuration}) for the workflow to end: the call rejects
   * with {@link Timeout} when it has not (the workflow keeps running; ask
   * again). Absent: as long as it takes.
   */
  timeout?: Duration;
}

/**
 * The filter of {@link Client.workflows}: as {@link ListOptions} without a
 * page token (the iterator follows the pages); `pageSize` is how many
 * workflows each call fetches.
 */
export type WorkflowFilter = Omit<ListOptions, "pageToken">;

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
 * Options of {@link Client.signalWithStart}: the workflow's id, the event
 * to send, and the options of the start when the workflow does not exist
 * yet ({@link StartOptions}).
 *
 * @example
 * ```ts
 * const options: SignalWithStartOptions = {
 *   id: "cart-7",
 *   event: "add",
 *   payload: { sku: "book" },
 *   key: "add-book-7",
 *   executionTimeout: "1d",
 * };
 * await client.signalWithStart(cart, [], options);
 * ```
 */
export interface SignalWithStartOptions extends StartOptions {
  /**
   * Workflow id: required (not empty), so that the event has a known
   * target and a retry finds the workflow the first call started.
   */
  id: string;
  /** The event's name, as `ctx.waitEvent` waits for it. 1 to 256 bytes. */
  event: string;
  /**
   * The event's payload, encoded with the client's codec. Absent: no
   * payload (a wait gets `undefined` with the JSON codec).
   */
  payload?: unknown;
  /**
   * Idempotency key of the event, as {@link SignalOptions.idempotencyKey}:
   * an event with a key already delivered to this workflow is not
   * delivered again (`duplicate: true`). Empty or absent: none.
   */
  key?: string;
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

  /**
   * Starts a workflow and waits for its result: {@link Client.startWorkflow}
   * then {@link WorkflowHandle.result}. `workflow` is a definition, or a
   * name (with `options.version`, default 1) or `{ name, version }` for a
   * workflow another app runs. With `options.id`, a call retried after a
   * lost answer finds the workflow the first call started and waits for
   * it. Rejects as those two do: `WorkflowFailed`, `Cancelled`, `Timeout`
   * when `options.timeout` passes first (the workflow keeps running).
   *
   * @example
   * ```ts
   * const answer = await client.executeWorkflow(pingPong, "ping"); // "pong"
   * const total = await client.executeWorkflow<number>("sum", [1, 2, 3], { id: "sum-1", timeout: "1m" });
   * ```
   */
  executeWorkflow<I, O>(wf: Workflow<I, O>, input: I, options?: ExecuteOptions): Promise<Awaited<O>>;
  executeWorkflow<T = unknown>(
    wf: string | WorkflowRef,
    input?: unknown,
    options?: ExecuteOptions,
  ): Promise<T>;
  async executeWorkflow<T>(
    wf: string | WorkflowRef,
    input?: unknown,
    options: ExecuteOptions = {},
  ): Promise<T> {
    const name = typeof wf === "string" ? wf : wf?.name;
    if (typeof name !== "string" || name === "") {
      throw new InvalidArgument("executeWorkflow needs a workflow (or a non-empty workflow name)");
    }
    const version = options.version ?? (typeof wf === "string" ? 1 : wf.version);
    // The result's timeout is read before anything starts.
    const timeout = options.timeout === undefined ? undefined : parseDuration(options.timeout);
    const handle = await this.startWorkflowByName<T>(name, version, input, options);
    return handle.result(timeout === undefined ? {} : { timeout });
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
   * One page of workflows, filtered by status and name, with
   * `sleeping: true` to those waiting on a durable timer, and with
   * `parentId` to the children of that workflow.
   *
   * @example
   * ```ts
   * const { workflows } = await client.listWorkflows({ parentId: "order-42" });
   * const running = workflows.filter((w) => w.status === "RUNNING").map((w) => w.workflowId);
   * ```
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
        options.parentId,
      ),
    );
    return {
      workflows: page.workflows.map((w) => this.#info(w)),
      nextPageToken: page.nextPageToken,
    };
  }

  /**
   * Every workflow matching `filter` (status, name, `sleeping`,
   * `parentId`; see {@link ListOptions}), ordered by id: an async
   * iterable that fetches a page of `pageSize` (absent: the server's
   * default) when the previous one is used up, so a loop that stops early
   * fetches no more. Each page is read when it is fetched: a workflow
   * started meanwhile may or may not appear.
   *
   * @example
   * ```ts
   * for await (const w of client.workflows({ status: "RUNNING", workflowName: "order" })) {
   *   console.log(w.workflowId, w.checkpointCount);
   * }
   * const children = [];
   * for await (const c of client.workflows({ parentId: "order-42" })) children.push(c.workflowId);
   * ```
   */
  async *workflows(filter: WorkflowFilter = {}): AsyncGenerator<WorkflowInfo, void, undefined> {
    let pageToken = "";
    for (;;) {
      const page = await this.listWorkflows({ ...filter, pageToken });
      yield* page.workflows;
      if (page.nextPageToken === "" || page.nextPageToken === pageToken) {
        return;
      }
      pageToken = page.nextPageToken;
    }
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

  /**
   * Starts the workflow `options.id` of `wf` with `input` unless a
   * workflow of that id exists, then sends it the event `options.event`
   * with `options.payload` (and `options.key`, an idempotency key), in one
   * committed entry: there is no moment where the workflow started and
   * the event is lost, and concurrent calls for one id start one workflow
   * and deliver every event. The pattern of an entity fed by events (a
   * cart, an account, a chat session): the first event starts it, every
   * later one reaches the running workflow. A workflow that exists keeps
   * its input and start options; the event goes to its inbox, or at once
   * to its open `ctx.waitEvent`, as {@link Client.signalWorkflow} sends it.
   *
   * Resolves with {@link SignalWithStartResult}: `started` is true when
   * this call started the workflow, `duplicate` as
   * {@link Client.signalWorkflow} says it, `workflow` its state after the
   * entry. `options.id` is required; the other start options
   * (`startDelay`, `executionTimeout`) are those of
   * {@link Client.startWorkflow}, used when this call starts it. The input
   * is encoded with the client's codec, as {@link Client.startWorkflow}
   * encodes it.
   *
   * Rejects with `InvalidArgument` for a missing or empty `id`, bad start
   * options (as {@link Client.startWorkflow}), an input or payload the
   * codec cannot encode, a bad event name or key, a payload over the
   * sidecar's value limit; with `NotRunning` (code `NOT_RUNNING`) when the
   * workflow of that id has ended (an id is not reused while its workflow
   * is retained), and with `ResourceExhausted` when its inbox is full. Not
   * retried by the SDK: give a `key` and retry a call whose answer was
   * lost (the workflow is started once, the event delivered once).
   *
   * @example
   * ```ts
   * // A cart lives as long as items come in; the first item starts it.
   * const cart = workflow("cart", { version: 1 }, async (ctx, items: string[]) => {
   *   for (;;) {
   *     const item = await ctx.waitEvent<string>("add", { timeout: "1h" });
   *     if (item === null) return items; // an hour without an item: checkout
   *     items.push(item);
   *     await ctx.setStatus("items", items.length);
   *   }
   * });
   *
   * const { started } = await client.signalWithStart(cart, [], { id: "cart-7", event: "add", payload: "book" });
   * await client.signalWithStart(cart, [], { id: "cart-7", event: "add", payload: "pen", key: "pen-1" });
   * ```
   */
  async signalWithStart<I, O>(
    wf: Workflow<I, O>,
    input: I,
    options: SignalWithStartOptions,
  ): Promise<SignalWithStartResult> {
    return this.signalWithStartByName(wf.name, wf.version, input, options);
  }

  /** {@link Client.signalWithStart} of a workflow by name and version (e.g. one another app runs). */
  async signalWithStartByName(
    name: string,
    version: number,
    input: unknown,
    options: SignalWithStartOptions,
  ): Promise<SignalWithStartResult> {
    const { id, event, key } = options ?? {};
    if (typeof id !== "string" || id === "") {
      throw new InvalidArgument(
        `signalWithStart of '${name}' needs an id (options.id, a non-empty string): the event needs a known target, and a retry must find the workflow it started`,
      );
    }
    if (typeof event !== "string") {
      throw new InvalidArgument(
        `signalWithStart: event must be the event's name (a string), not a ${typeof event}`,
      );
    }
    if (key !== undefined && typeof key !== "string") {
      throw new InvalidArgument(`signalWithStart: key must be a string, not a value of type ${typeof key}`);
    }
    const delay = options.startDelay === undefined ? undefined : parseDuration(options.startDelay);
    const timeout =
      options.executionTimeout === undefined ? undefined : parseDuration(options.executionTimeout);
    let data: Uint8Array;
    try {
      data = this.codec.encode(input);
    } catch (e) {
      throw new InvalidArgument(`workflow '${id}': cannot encode its input: ${(e as Error).message}`);
    }
    let payload: Uint8Array;
    try {
      payload = this.codec.encode(options.payload);
    } catch (e) {
      throw new InvalidArgument(
        `event '${event}' for workflow '${id}': cannot encode its payload: ${(e as Error).message}`,
      );
    }
    const sent = await call(
      this.native.signalWithStart(
        id,
        name,
        version,
        Buffer.from(data),
        event,
        Buffer.from(payload),
        key ?? null,
        delay,
        timeout,
      ),
    );
    return {
      started: sent.started,
      duplicate: sent.duplicate,
      workflow: sent.workflow ? this.#info(sent.workflow) : await this.getWorkflow(id),
    };
  }

  /**
   * Resolves the awakeable `awakeableId` (the `id` of a `ctx.awakeable()`
   * in a workflow's code, handed out by that code) with `value`, encoded
   * with the client's codec (absent: no value, which the code gets as
   * `undefined` with the JSON codec): the awakeable's `promise` resolves
   * with it. Resolves with the workflow's state once the completion is
   * committed, whichever node took the call, also while the workflow's
   * owner is down; a completion that comes before the code awaits the
   * awakeable is kept until it does.
   *
   * An awakeable is completed once: a second `resolveAwakeable` or
   * `rejectAwakeable` of the same id rejects with `AlreadyCompleted`
   * (code `ALREADY_COMPLETED`), and the first completion stands. Also
   * rejects with `InvalidArgument` for an id that is not an awakeable's
   * (not `awk/SEQ/WORKFLOW_ID`) or a value the codec cannot encode or over
   * the sidecar's value limit, with `NotFound` when the workflow of the
   * id is unknown, and with `NotRunning` (code `NOT_RUNNING`) when it has
   * ended. Not retried by the SDK: retry a call whose answer was lost,
   * and take `AlreadyCompleted` as done.
   *
   * @example
   * ```ts
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   const paid = ctx.awakeable<{ receipt: string }>();
   *   await ctx.setStatus("callback", paid.id);
   *   return (await paid.promise).receipt;
   * });
   *
   * // The payment provider's webhook, on any app:
   * const { callback } = await client.getStatus("order-42", ["callback"]);
   * const info = await client.resolveAwakeable(String(callback), { receipt: "r-9" });
   * console.log(info.workflowId, info.status); // its state once the completion is committed
   * ```
   */
  async resolveAwakeable(awakeableId: string, value?: unknown): Promise<WorkflowInfo> {
    if (typeof awakeableId !== "string") {
      throw new InvalidArgument(
        `resolveAwakeable: the awakeable's id must be a string (awk/SEQ/WORKFLOW_ID), not a ${typeof awakeableId}`,
      );
    }
    let data: Uint8Array;
    try {
      data = this.codec.encode(value);
    } catch (e) {
      throw new InvalidArgument(
        `awakeable '${awakeableId}': cannot encode its value: ${(e as Error).message}`,
      );
    }
    return this.#info(await call(this.native.completeAwakeable(awakeableId, Buffer.from(data), null)));
  }

  /**
   * Rejects the awakeable `awakeableId` (see
   * {@link Client.resolveAwakeable}): the awakeable's `promise` in the
   * workflow's code rejects with `StepFailed` whose `type` is `type`
   * (default `"Rejected"`) and whose `error` is `message`, the same on
   * every replica and in every replay; the code catches it as a step's
   * failure, or fails with it. Resolves with the workflow's state once the
   * rejection is committed.
   *
   * Once, as {@link Client.resolveAwakeable}: a second completion rejects
   * with `AlreadyCompleted`. Also rejects with `InvalidArgument` for
   * an id that is not an awakeable's, an empty `type` or one over 256
   * bytes, with `NotFound` for an unknown workflow and `NotRunning` for
   * one that has ended.
   *
   * @example
   * ```ts
   * // In the workflow: a rejection is a step failure.
   * try {
   *   await approval.promise;
   * } catch (e) {
   *   if (e instanceof StepFailed && e.type === "Denied") return "denied";
   *   throw e;
   * }
   *
   * // Elsewhere:
   * await client.rejectAwakeable(approvalId, "the manager said no", "Denied");
   * ```
   */
  async rejectAwakeable(awakeableId: string, message: string, type = "Rejected"): Promise<WorkflowInfo> {
    if (typeof awakeableId !== "string") {
      throw new InvalidArgument(
        `rejectAwakeable: the awakeable's id must be a string (awk/SEQ/WORKFLOW_ID), not a ${typeof awakeableId}`,
      );
    }
    if (typeof message !== "string") {
      throw new InvalidArgument(`rejectAwakeable: message must be a string, not a ${typeof message}`);
    }
    if (typeof type !== "string" || type === "") {
      throw new InvalidArgument("rejectAwakeable: type must be a non-empty string (the failure's type name)");
    }
    const failure = { type, message, detailsJson: "", nonRetryable: false, stack: "" };
    return this.#info(await call(this.native.completeAwakeable(awakeableId, Buffer.alloc(0), failure)));
  }

  /**
   * The status values a workflow's code set with `ctx.setStatus`: the
   * latest value of each key, decoded with the client's codec, by key. A
   * key never set is absent; `keys` (absent or empty: every key) limits
   * the answer to those keys. Read from the replicated history, so any
   * node answers, also while the workflow's owner is down and after the
   * workflow ended (until retention removes it); a value is there once
   * its `setStatus` resolved in the workflow.
   *
   * Rejects with `NotFound` for an unknown workflow, with
   * `InvalidArgument` for a bad key (empty, over 256 bytes).
   *
   * @example
   * ```ts
   * const order = workflow("order", { version: 1 }, async (ctx, id: string) => {
   *   await ctx.setStatus("stage", "charging");
   *   await ctx.checkpoint("charge", () => charge(id));
   *   await ctx.setStatus("stage", "shipping");
   *   return ctx.checkpoint("ship", () => ship(id));
   * });
   *
   * const { stage } = await client.getStatus("order-42", ["stage"]);
   * console.log(stage); // "charging", "shipping", or undefined before the first setStatus
   * ```
   */
  async getStatus(workflowId: string, keys: string[] = []): Promise<Record<string, unknown>> {
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== "string")) {
      throw new InvalidArgument("getStatus: keys must be an array of strings (absent or empty: every key)");
    }
    const found = await call(this.native.getStatus(workflowId, keys));
    // fromEntries defines own properties: a key such as "__proto__" stays a key.
    return Object.fromEntries(found.values.map((v) => [v.key, this.codec.decode(v.value)]));
  }

  /** The committed checkpoints of a workflow, in order. */
  async history(workflowId: string): Promise<HistoryEntry[]> {
    const entries = await call(this.native.history(workflowId));
    return entries.map((e) => {
      const kind = (KINDS as readonly string[]).includes(e.kind) ? (e.kind as HistoryEntryKind) : "UNKNOWN";
      const entry: HistoryEntry = {
        seq: e.seq,
        checkpointName: e.checkpointName,
        // Only a value entry, a received event, a status, a cancelled wait
        // that gave an event back and a child's result hold an encoded
        // value; a child's start holds its id (UTF-8).
        value:
          kind === "CHILD_STARTED"
            ? Buffer.from(e.value).toString("utf8")
            : kind === "VALUE" ||
                kind === "EVENT_RECEIVED" ||
                kind === "STATUS_SET" ||
                kind === "CHILD_COMPLETED" ||
                (kind === "EVENT_WAIT_CANCELLED" && e.value.length > 0)
              ? this.codec.decode(e.value)
              : undefined,
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
      parentId: w.parentId ?? undefined,
      parentSeq: w.parentSeq ?? undefined,
      parentClose: (w.parentClose ?? undefined) as WorkflowInfo["parentClose"],
      openChildren: w.openChildren,
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
   * cancel request waits for its cleanup to end). With `options.timeout`,
   * rejects with {@link Timeout} when the workflow has not ended by then
   * (it keeps running: ask again); `TypeError` or `InvalidArgument` for a
   * timeout it cannot read, as {@link parseDuration}.
   *
   * @example
   * ```ts
   * try {
   *   console.log(await handle.result({ timeout: "30s" }));
   * } catch (e) {
   *   if (e instanceof Timeout) console.log("still running; ask again later");
   *   else throw e;
   * }
   * ```
   */
  async result(options: ResultOptions = {}): Promise<O> {
    const nc = this.#client.native;
    if (options?.timeout !== undefined) {
      const ms = parseDuration(options.timeout);
      try {
        // Bounded on the server: nothing is left waiting after a timeout.
        await call(nc.waitWorkflow(this.workflowId, ms));
      } catch (e) {
        if (e instanceof Timeout) {
          throw new Timeout(`workflow '${this.workflowId}' did not finish within ${ms} ms`);
        }
        throw e;
      }
    }
    // Ended (or no timeout): the outcome, at once in the first case.
    const data = await call(nc.result(this.workflowId));
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

  /**
   * The status values this workflow's code set (`ctx.setStatus`), by key;
   * see {@link Client.getStatus}.
   *
   * @example
   * ```ts
   * const { stage, received } = await handle.getStatus();
   * ```
   */
  getStatus(keys?: string[]): Promise<Record<string, unknown>> {
    return this.#client.getStatus(this.workflowId, keys);
  }

  /** See {@link Client.history}. */
  history(): Promise<HistoryEntry[]> {
    return this.#client.history(this.workflowId);
  }
}
