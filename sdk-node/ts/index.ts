/**
 * Raftoral SDK for Node.js: durable workflows replicated by Raft.
 *
 * @example
 * ```ts
 * import { Client, Worker, workflow } from "@raftoral/client";
 *
 * const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text: string) =>
 *   ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")));
 *
 * const client = await Client.connect("http://127.0.0.1:9001");
 * const worker = await Worker.create(client, { workflows: [pingPong] });
 * const handle = await client.startWorkflow(pingPong, "ping", { id: "order-42" });
 * console.log(await handle.result()); // "pong"
 * await worker.shutdown();
 * ```
 *
 * @packageDocumentation
 */
export type { StepFn, StepInfo } from "./attempt";
export {
  type CancelOptions,
  Client,
  type ConnectOptions,
  type ExecuteOptions,
  type ResultOptions,
  type SignalOptions,
  type SignalWithStartOptions,
  type StartOptions,
  type WorkflowFilter,
  WorkflowHandle,
} from "./client";
export { type Codec, jsonCodec } from "./codec";
export { type Duration, parseDuration } from "./duration";
export {
  AlreadyCompleted,
  ApplicationError,
  type ApplicationErrorOptions,
  AttemptTimeout,
  Cancelled,
  type ErrorCode,
  InvalidArgument,
  NonDeterminism,
  NonRetryableError,
  NotFound,
  NotRunning,
  RaftoralError,
  Rejected,
  ResourceExhausted,
  ShuttingDown,
  StepFailed,
  Timeout,
  Unavailable,
  WorkflowFailed,
} from "./errors";
export { LocalNode, type LocalNodeOptions } from "./local";
export { consoleSink, type LogLevel, type LogRecord, type LogSink, type WorkflowLogger } from "./log";
export type { RetryPolicy } from "./retry";
export type {
  EventWait,
  HistoryEntry,
  HistoryEntryKind,
  ListOptions,
  PendingTimer,
  SignalResult,
  SignalWithStartResult,
  WorkflowFailure,
  WorkflowInfo,
  WorkflowPage,
  WorkflowStatus,
} from "./types";
export { Worker, type WorkerOptions } from "./worker";
export {
  type Awakeable,
  type CheckpointOptions,
  type ChildHandle,
  type ChildOptions,
  checkpoint,
  currentContext,
  type EventsOptions,
  type FirstResult,
  NOW_STEP,
  type ParentClose,
  type SleepOptions,
  type WaitEventOptions,
  type Workflow,
  WorkflowContext,
  type WorkflowFn,
  type WorkflowOptions,
  type WorkflowRef,
  workflow,
} from "./workflow";
