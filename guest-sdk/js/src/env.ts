/**
 * Environment variables granted by the manifest (`spec.capabilities.env`):
 * only those exist inside the agent; the host's environment is invisible.
 */

import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { AgentError } from './task.js';

/**
 * The value of `name`, or `undefined` if the manifest does not declare it.
 * Read from the host at every call (not from a snapshot taken at build time).
 */
export function get(name: string): string | undefined {
  return getEnvironment().find(([k]) => k === name)?.[1];
}

/**
 * The value of `name`.
 *
 * @throws {AgentError} `capability-denied` naming the variable when the
 * manifest does not declare it.
 */
export function require(name: string): string {
  const value = get(name);
  if (value === undefined) {
    throw AgentError.capabilityDenied(
      `environment variable \`${name}\` is not set: declare it in spec.capabilities.env`,
    );
  }
  return value;
}
