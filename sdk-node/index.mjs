// ESM entry point: re-exports the CommonJS build, so `import` and `require`
// share one module instance (one set of error classes for `instanceof`).
import sdk from "./dist/index.js";

export const {
  AlreadyCompleted,
  ApplicationError,
  AttemptTimeout,
  Cancelled,
  Client,
  InvalidArgument,
  LocalNode,
  NOW_STEP,
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
  Worker,
  WorkflowContext,
  WorkflowFailed,
  WorkflowHandle,
  checkpoint,
  consoleSink,
  currentContext,
  jsonCodec,
  parseDuration,
  workflow,
} = sdk;
export default sdk;
