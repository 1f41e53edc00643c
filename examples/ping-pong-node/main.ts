/**
 * ping_pong in TypeScript: the same app as examples/ping-pong (Rust).
 *
 * It connects to its sidecar (`RAFTORAL_SIDECAR_URL`), registers the
 * `ping_pong` workflow (version 1) and serves `POST /workflow` over HTTP
 * (`PING_PONG_HTTP_LISTEN`): the body ("ping" or "pong", plain or JSON) is
 * the input, the answer is the workflow's result.
 *
 * ```text
 * curl -d ping http://127.0.0.1:8080/workflow   # → pong
 * ```
 */
import { renameSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { Client, RaftoralError, Timeout, Worker, type WorkflowHandle, workflow } from "@raftoral/client";

/** One durable step that answers ping with pong (and anything else with ping). */
export const pingPong = workflow("ping_pong", { version: 1 }, async (ctx, text: string) =>
  ctx.checkpoint("result", () => (text === "ping" ? "pong" : "ping")),
);

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Accepts `ping` as well as `"ping"`. */
function parseInput(raw: string): string {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v === "string") return v;
  } catch {
    // Not JSON: the plain text is the input.
  }
  return raw.trim();
}

async function trigger(client: Client, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "POST" || req.url !== "/workflow") {
    res.writeHead(404).end("POST /workflow\n");
    return;
  }
  const input = parseInput(await body(req));
  let handle: WorkflowHandle<string>;
  try {
    handle = await client.startWorkflow(pingPong, input);
  } catch (e) {
    res.writeHead(503).end(`${(e as Error).message}\n`);
    return;
  }
  try {
    const info = await handle.wait(30_000);
    if (info.status === "COMPLETED") {
      res.writeHead(200).end(`${String(info.result)}\n`);
    } else {
      res.writeHead(500).end(`workflow ${handle.workflowId} ${info.status}: ${info.error}\n`);
    }
  } catch (e) {
    if (e instanceof Timeout) {
      res.writeHead(504).end(`workflow ${handle.workflowId} did not finish within 30s\n`);
    } else {
      res.writeHead(500).end(`${e instanceof RaftoralError ? e.message : String(e)}\n`);
    }
  }
}

async function main(): Promise<void> {
  const sidecar = process.env.RAFTORAL_SIDECAR_URL ?? "http://127.0.0.1:9001";
  const listen = process.env.PING_PONG_HTTP_LISTEN ?? "127.0.0.1:8080";
  const at = listen.lastIndexOf(":");
  const host = listen.slice(0, at);
  const port = Number(listen.slice(at + 1));

  const client = await Client.connect(sidecar);
  const worker = await Worker.create(client, { workflows: [pingPong] });
  const server = createServer((req, res) => {
    void trigger(client, req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const bound = server.address() as AddressInfo;
  const addrFile = process.env.PING_PONG_ADDR_FILE;
  if (addrFile) {
    writeFileSync(`${addrFile}.tmp`, `${bound.address}:${bound.port}`);
    renameSync(`${addrFile}.tmp`, addrFile);
  }
  console.error(
    `ping-pong app ready on http://${bound.address}:${bound.port}: POST /workflow (sidecar ${sidecar})`,
  );

  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    void worker.shutdown().then(() => console.error("ping-pong app stopped"));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

await main();
