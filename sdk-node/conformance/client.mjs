// The Node SDK's conformance client: one client API call, given as a JSON
// command line, through the SDK's Client; prints one JSON line and exits.
// Every SDK has one like it (conformance/WORKERS.md, "Client mode"), so a
// scenario can make any language signal or resolve the workflows any other
// language runs.
//
// Usage: `node client.mjs '<json>'` with RAFTORAL_SIDECAR_URL set.
// {"op":"signal","workflow_id":W,"name":N,"payload":P,"key":K?} prints
// {"ok":true,"duplicate":D}; {"op":"resolve","id":A,"payload":P} and
// {"op":"reject","id":A,"message":M,"type":T} print {"ok":true}. A refusal
// prints {"ok":false,"error":MESSAGE,"code":CODE} (exit 0), CODE the gRPC
// code's name (the SDK's stable code, with NOT_RUNNING and ALREADY_COMPLETED
// given as FAILED_PRECONDITION and ALREADY_EXISTS); a bad command line exits
// with status 2.
import { Client, RaftoralError } from "@raftoral/client";

/** The SDK's stable codes that name a gRPC code differently. */
const GRPC = { NOT_RUNNING: "FAILED_PRECONDITION", ALREADY_COMPLETED: "ALREADY_EXISTS" };

const NEEDED = { signal: ["workflow_id", "name"], resolve: ["id"], reject: ["id", "message"] };

/** The command of the command line; exits with status 2 when it is wrong. */
function parse(argv) {
  const usage = (why) => {
    console.error(`client.mjs: ${why}`);
    process.exit(2);
  };
  if (argv.length !== 1) usage("usage: client.mjs '<json command>'");
  let command;
  try {
    command = JSON.parse(argv[0]);
  } catch (e) {
    usage(`bad command ${JSON.stringify(argv[0])}: ${e.message}`);
  }
  if (command === null || typeof command !== "object" || Array.isArray(command)) {
    usage(`bad command ${JSON.stringify(argv[0])}: not an object`);
  }
  const needed = Object.hasOwn(NEEDED, command.op) ? NEEDED[command.op] : undefined;
  if (needed === undefined) usage(`unknown op ${JSON.stringify(command.op)}; known: signal, resolve, reject`);
  for (const field of needed) {
    if (typeof command[field] !== "string") usage(`op '${command.op}' needs the string field '${field}'`);
  }
  if (!process.env.RAFTORAL_SIDECAR_URL) usage("RAFTORAL_SIDECAR_URL is not set");
  return command;
}

async function run(command) {
  const client = await Client.connect(process.env.RAFTORAL_SIDECAR_URL);
  if (command.op === "signal") {
    const key = command.key ?? undefined;
    const sent = await client.signalWorkflow(command.workflow_id, command.name, command.payload ?? null, {
      idempotencyKey: key,
    });
    return { ok: true, duplicate: sent.duplicate };
  }
  if (command.op === "resolve") {
    await client.resolveAwakeable(command.id, command.payload ?? null);
  } else {
    await client.rejectAwakeable(command.id, command.message, command.type ?? "Rejected");
  }
  return { ok: true };
}

const command = parse(process.argv.slice(2));
let out;
try {
  out = await run(command);
} catch (e) {
  if (!(e instanceof RaftoralError)) throw e;
  out = { ok: false, error: e.message, code: GRPC[e.code] ?? e.code };
}
console.log(JSON.stringify(out));
process.exit(0);
