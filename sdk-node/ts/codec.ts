/**
 * Value encoding: JSON by default. Pass any {@link Codec} as
 * `Client.connect(url, { codec })` to use another encoding.
 */

/** Turns values into bytes and back. */
export interface Codec {
  /** Encodes `value`; throws when it cannot (nothing is committed then). */
  encode(value: unknown): Uint8Array;
  /** Decodes `data`. */
  decode(data: Uint8Array): unknown;
}

/**
 * The default codec: UTF-8 JSON. `undefined` (a step that returns nothing)
 * is stored as empty bytes and comes back as `undefined`; a BigInt, a cycle,
 * a function or a symbol cannot be encoded.
 *
 * @example
 * ```ts
 * jsonCodec.decode(jsonCodec.encode({ n: 1 })); // { n: 1 }
 * ```
 */
export const jsonCodec: Codec = {
  encode(value: unknown): Uint8Array {
    if (value === undefined) {
      return new Uint8Array(0);
    }
    if (typeof value === "function" || typeof value === "symbol") {
      throw new TypeError(`a ${typeof value} is not JSON-serialisable`);
    }
    return Buffer.from(JSON.stringify(value), "utf8");
  },
  decode(data: Uint8Array): unknown {
    if (data.length === 0) {
      return undefined;
    }
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString("utf8"));
  },
};
