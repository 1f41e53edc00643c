/** {@link LocalNode}: a Raftoral node inside this process, for tests and single-process apps. */
import { Client } from "./client";
import { type Codec, jsonCodec } from "./codec";
import { call, callSync, InvalidArgument } from "./errors";
import native from "./native";

/**
 * Options of {@link LocalNode.start}.
 *
 * @example
 * ```ts
 * const node = await LocalNode.start({ storagePath: "./raftoral-data" });
 * ```
 */
export interface LocalNodeOptions {
  /**
   * Directory of the node's Raft log and snapshots (created if missing;
   * writes are fsynced): a node started again on the same directory, in
   * this process or a later one, has every workflow it had, and resumes
   * the running ones by replay once a worker connects. One node at a time
   * per directory. Absent or empty: in memory, nothing survives the node.
   */
  storagePath?: string;
}

/**
 * An in-process single-node cluster (the engine is linked into the addon):
 * no sidecar to start. In memory by default (nothing survives the node);
 * with `storagePath`, kept on disk, and a node started again on that
 * directory resumes every workflow.
 *
 * @example
 * ```ts
 * const node = await LocalNode.start();
 * const client = node.client();
 * const worker = await Worker.create(client, { workflows: [pingPong] });
 * console.log(await (await client.startWorkflow(pingPong, "ping")).result());
 * await worker.shutdown();
 * await node.shutdown();
 *
 * // On disk: a later start on the same directory finds "order-42" again.
 * const durable = await LocalNode.start({ storagePath: "./raftoral-data" });
 * await durable.client().startWorkflow(pingPong, "ping", { id: "order-42" });
 * await durable.shutdown();
 * ```
 */
export class LocalNode {
  readonly #native: native.NativeLocalNode;

  private constructor(n: native.NativeLocalNode) {
    this.#native = n;
  }

  /**
   * Starts the node, in memory or, with `options.storagePath`, on disk
   * (see {@link LocalNodeOptions}). Rejects when the node cannot start
   * (e.g. a directory it cannot write, or one another node holds).
   */
  static async start(options: LocalNodeOptions = {}): Promise<LocalNode> {
    const path = options.storagePath;
    if (path !== undefined && typeof path !== "string") {
      throw new InvalidArgument(`storagePath must be a directory path (a string), not a ${typeof path}`);
    }
    return new LocalNode(await call(native.NativeLocalNode.start(path || null)));
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
