/**
 * The replay-aware logger of a workflow ({@link WorkflowContext.log}) and
 * where its lines go ({@link LogSink}).
 */
import type { WorkflowContext } from "./workflow";

/** Levels of a {@link WorkflowLogger}: the `console` methods it writes through. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** One line of a workflow's logger, as a {@link LogSink} receives it. */
export interface LogRecord {
  readonly level: LogLevel;
  /** The workflow that wrote it. */
  readonly workflowId: string;
  /** Its workflow type. */
  readonly workflowName: string;
  /** The position (0-based) of the step the line is written before. */
  readonly step: number;
  /** The message, without the prefix. */
  readonly message: string;
  /** The further arguments, as given. */
  readonly args: readonly unknown[];
}

/**
 * Where a workflow's log lines go (the `logSink` option of `Worker.create`);
 * it gets only the lines to write (none while replaying). The default,
 * {@link consoleSink}, writes through `console`.
 *
 * @example
 * ```ts
 * const worker = await Worker.create(client, {
 *   workflows: [order],
 *   logSink: ({ level, workflowId, step, message }) => pino[level]({ workflowId, step }, message),
 * });
 * ```
 */
export type LogSink = (record: LogRecord) => void;

/**
 * The default {@link LogSink}: `console.debug/info/warn/error` with the
 * prefix `[workflow ID step N] `, then the further arguments.
 */
export const consoleSink: LogSink = ({ level, workflowId, step, message, args }) => {
  console[level](`[workflow ${workflowId} step ${step}] ${message}`, ...args);
};

/**
 * A logger that writes each line once: on the owner of the workflow, and only
 * once its code is past the history it replays. A line written just before
 * the app dies may be written again by the next owner.
 *
 * @example
 * ```ts
 * ctx.log.info("charging the card", { amount });
 * // [workflow order-42 step 3] charging the card { amount: 42 }
 * ```
 */
export interface WorkflowLogger {
  /** A debug line (`console.debug`). */
  debug(message: string, ...rest: unknown[]): void;
  /** An info line (`console.info`). */
  info(message: string, ...rest: unknown[]): void;
  /** A warning (`console.warn`). */
  warn(message: string, ...rest: unknown[]): void;
  /** An error line (`console.error`). */
  error(message: string, ...rest: unknown[]): void;
}

/**
 * @internal The logger of `ctx`: writes to `sink` unless `ctx` replays;
 * `nextStep` is the position of the step a line is written before.
 */
export function workflowLogger(ctx: WorkflowContext, nextStep: () => number, sink: LogSink): WorkflowLogger {
  const write =
    (level: LogLevel) =>
    (message: string, ...args: unknown[]): void => {
      if (ctx.isReplaying) {
        return;
      }
      sink({
        level,
        workflowId: ctx.workflowId,
        workflowName: ctx.workflowName,
        step: nextStep(),
        message: String(message),
        args,
      });
    };
  return Object.freeze({
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
  });
}
