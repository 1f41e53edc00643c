/**
 * @internal The outcomes of a worker's native waits (`slot`, `commit`,
 * `failStep` of any run), taken from the addon's FIFO in the order the core
 * handed them out (see `src/steps.rs` for why not one promise per wait).
 */
import { fromNative } from "./errors";
import type { NativeSlot, NativeWorker } from "./native";

/** A wait's outcome: a slot, or the SDK error to throw. */
export type Outcome = { slot: NativeSlot } | { error: unknown };

/** @internal One per worker. */
export class Deliveries {
  readonly #native: NativeWorker;
  /** What to do with the outcome of each wait in flight, by key. */
  readonly #waiting = new Map<number, (outcome: Outcome) => void>();
  #lastKey = 0;
  #pulling = false;

  constructor(native: NativeWorker) {
    this.#native = native;
  }

  /**
   * Starts a native wait with a fresh key per outcome it delivers (`start`
   * passes them to the native call; what it throws is thrown here, and
   * nothing waits then); `thens[i]` gets the outcome delivered with the
   * `i`th key, in the order the core handed the outcomes out.
   */
  wait(start: (...keys: number[]) => void, ...thens: ((outcome: Outcome) => void)[]): void {
    const keys = thens.map(() => {
      this.#lastKey = (this.#lastKey + 1) >>> 0;
      return this.#lastKey;
    });
    start(...keys);
    for (const [i, key] of keys.entries()) {
      this.#waiting.set(key, thens[i]);
    }
    if (!this.#pulling) {
      void this.#pull();
    }
  }

  /**
   * Takes batches while waits are in flight, and only then: an idle worker
   * has no native promise pending, so it keeps no process alive.
   */
  async #pull(): Promise<void> {
    this.#pulling = true;
    try {
      while (this.#waiting.size > 0) {
        await this.#native.waitDeliveries();
        for (const d of this.#native.takeDeliveries()) {
          const then = this.#waiting.get(d.key);
          if (then === undefined) {
            continue;
          }
          this.#waiting.delete(d.key);
          then(d.slot != null ? { slot: d.slot } : { error: fromNative(new Error(d.error ?? "")) });
        }
      }
    } finally {
      this.#pulling = false;
    }
  }
}
