/** Durations of durable timers ({@link parseDuration}). */
import { InvalidArgument } from "./errors";

/**
 * A duration: a number of milliseconds, or a string of one or more parts
 * `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d` (`"250ms"`, `"30s"`,
 * `"1.5h"`, `"1h30m"`, `"1d 12h"`).
 */
export type Duration = number | string;

/** Milliseconds per unit. */
const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** One part of a duration string: a number and its unit. */
const PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)/y;

/**
 * The milliseconds of `duration` (see {@link Duration}): a number as it is,
 * a string summed over its parts (spaces between parts are allowed).
 *
 * Throws `TypeError` for anything else (not a number or a string, NaN, an
 * empty string, a part without a unit or with another unit, other
 * characters), and {@link InvalidArgument} for a negative duration. The
 * limit of a durable timer (366 days) is checked when the sleep starts.
 *
 * @example
 * ```ts
 * parseDuration(250); // 250
 * parseDuration("30s"); // 30_000
 * parseDuration("1h30m"); // 5_400_000
 * parseDuration("1.5d"); // 129_600_000
 * parseDuration("soon"); // throws TypeError
 * parseDuration(-1); // throws InvalidArgument: negative
 * ```
 */
export function parseDuration(duration: Duration): number {
  if (typeof duration === "number") {
    if (Number.isNaN(duration)) {
      throw new TypeError("a duration must be a number of milliseconds or a string like '30s', not NaN");
    }
    if (duration < 0) {
      throw new InvalidArgument(`a duration must not be negative: ${duration} ms`);
    }
    return duration;
  }
  if (typeof duration !== "string") {
    throw new TypeError(
      `a duration must be a number of milliseconds or a string like '30s', not ${describe(duration)}`,
    );
  }
  const text = duration.trim();
  if (text.startsWith("-") && parts(text.slice(1).trimStart()) !== undefined) {
    throw new InvalidArgument(`a duration must not be negative: '${duration}'`);
  }
  const ms = parts(text);
  if (ms === undefined) {
    throw new TypeError(
      `'${duration}' is not a duration: write one or more parts <number><unit>, unit ms, s, m, h or d (e.g. '250ms', '30s', '1h30m', '2d')`,
    );
  }
  return ms;
}

/** The milliseconds of `text` (parts, spaces between them), or undefined when it is not one. */
function parts(text: string): number | undefined {
  if (text === "") {
    return undefined;
  }
  let total = 0;
  let at = 0;
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (m === null) {
      return undefined;
    }
    total += Number(m[1]) * (UNITS[m[2]] ?? Number.NaN);
    at = PART.lastIndex;
    while (text[at] === " ") at++;
  }
  // To the nanosecond: "0.1s" is 100 ms, not 100.00000000000001.
  return Math.round(total * 1e6) / 1e6;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (value instanceof Date) return "a Date (use sleepUntil)";
  return `a value of type ${typeof value}`;
}
