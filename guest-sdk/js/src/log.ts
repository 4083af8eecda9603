/**
 * Structured, levelled log records sent to the host's log stream (WIT `log`).
 *
 * The host tags every record with the agent's name and the invocation id and
 * bounds the records per invocation (past the bound they are dropped and
 * counted). `console.log` output is captured too, without levels or fields.
 */

import { log as witLog, type Level } from 'agent-host:agent/log@0.1.0';

export type { Level };

/** Structured fields: an object, or pairs when a key repeats. */
export type Fields = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>;

/**
 * Emits one record at `level` with structured key/value `fields`.
 *
 * ```ts
 * log.record('warn', 'retrying', { attempt: '2', service: 'checkout' });
 * ```
 */
export function record(level: Level, message: string, fields: Fields = {}): void {
  const pairs: Array<[string, string]> = Array.isArray(fields)
    ? fields.map(([k, v]) => [k, v])
    : Object.entries(fields);
  witLog(level, message, pairs);
}

/** Emits a `debug` record without fields. */
export function debug(message: string): void {
  record('debug', message);
}

/** Emits an `info` record without fields. */
export function info(message: string): void {
  record('info', message);
}

/** Emits a `warn` record without fields. */
export function warn(message: string): void {
  record('warn', message);
}

/** Emits an `error` record without fields. */
export function error(message: string): void {
  record('error', message);
}
