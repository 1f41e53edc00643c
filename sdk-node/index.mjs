// ESM entry point: re-exports the CommonJS build, so `import` and `require`
// share one module instance (one set of error classes for `instanceof`).
import sdk from "./dist/index.js";

export const {
  ApplicationError,
  Cancelled,
  Client,
  InvalidArgument,
  LocalNode,
  NonDeterminism,
  NonRetryableError,
  NotFound,
  NotRunning,
  RaftoralError,
  Rejected,
  ShuttingDown,
  StepFailed,
  Timeout,
  Unavailable,
  Worker,
  WorkflowContext,
  WorkflowFailed,
  WorkflowHandle,
  checkpoint,
  currentContext,
  jsonCodec,
  workflow,
} = sdk;
export default sdk;
