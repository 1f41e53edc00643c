/** {@link LocalNode}: a Raftoral node inside this process, for tests and single-process apps. */
import { Client } from "./client";
import { type Codec, jsonCodec } from "./codec";
import { call, callSync } from "./errors";
import native from "./native";

/**
 * An in-process, in-memory single-node cluster (the engine is linked into
 * the addon): no sidecar to start, nothing survives the process.
 *
 * @example
 * ```ts
 * const node = await LocalNode.start();
 * const client = node.client();
 * const worker = await Worker.create(client, { workflows: [pingPong] });
 * console.log(await (await client.startWorkflow(pingPong, "ping")).result());
 * await worker.shutdown();
 * await node.shutdown();
 * ```
 */
export class LocalNode {
  readonly #native: native.NativeLocalNode;

  private constructor(n: native.NativeLocalNode) {
    this.#native = n;
  }

  /** Starts the node. */
  static async start(): Promise<LocalNode> {
    return new LocalNode(await call(native.NativeLocalNode.start()));
  }

  /** A client connected in-process; `codec` defaults to {@link jsonCodec}. */
  client(options: { codec?: Codec } = {}): Client {
    return new Client(
      callSync(() => this.#native.client()),
      options.codec ?? jsonCodec,
    );
  }

  /** Stops the node; safe to call twice. Stop its workers first. */
  async shutdown(): Promise<void> {
    await call(this.#native.shutdown());
  }
}
