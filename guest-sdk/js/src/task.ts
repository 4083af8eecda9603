/**
 * The values exchanged with the host on every invocation (WIT `types`), with
 * helpers for JSON input and output.
 */

import type * as wit from 'agent-host:agent/types@0.1.0';

/** The cases of WIT `types.agent-error`. */
export type AgentErrorKind = wit.AgentError['tag'];

/**
 * Why the agent could not complete its task (WIT `types.agent-error`). Throw
 * it from `run`: the host reports its kind and message verbatim.
 *
 * - `invalid-input`: the task input was not acceptable; the caller should not retry it.
 * - `capability-denied`: the host refused a capability; fix the manifest.
 * - `upstream`: a system the agent depends on failed; retrying later may succeed.
 * - `internal`: the agent hit a bug of its own.
 */
export class AgentError extends Error {
  constructor(
    readonly kind: AgentErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'AgentError';
  }

  static invalidInput(message: string): AgentError {
    return new AgentError('invalid-input', message);
  }

  static capabilityDenied(message: string): AgentError {
    return new AgentError('capability-denied', message);
  }

  static upstream(message: string): AgentError {
    return new AgentError('upstream', message);
  }

  static internal(message: string): AgentError {
    return new AgentError('internal', message);
  }

  /** The WIT value the host receives. */
  toWit(): wit.AgentError {
    return { tag: this.kind, val: this.message };
  }
}

/**
 * An error of one of the SDK's modules (`http`, `kv`, `llm`, `tools`, `fs`)
 * that knows which {@link AgentError} case it is. Thrown out of `run`, it is
 * reported as that case: the TypeScript form of the Rust SDK's `?`.
 */
export abstract class SdkError extends Error {
  abstract toAgentError(): AgentError;
}

/** One unit of work handed to the agent (WIT `types.task`). */
export class Task {
  constructor(
    /** Invocation id assigned by the host, present in every log line and audit record. */
    readonly id: string,
    /** The task input: a JSON document as text, as the caller sent it. */
    readonly input: string,
    /** Caller-supplied key/value pairs, never interpreted by the host. */
    readonly metadata: ReadonlyArray<readonly [string, string]>,
  ) {}

  /**
   * The input parsed as JSON. `T` is the shape the agent expects; it is not
   * checked at run time, so validate fields the agent relies on.
   *
   * @throws {AgentError} `invalid-input` with the parser's message when the
   * input is not JSON.
   */
  inputJson<T = unknown>(): T {
    try {
      return JSON.parse(this.input) as T;
    } catch (e) {
      throw AgentError.invalidInput(`task input: ${messageOf(e)}`);
    }
  }

  /** The value of the first metadata entry named `key`, if the caller sent one. */
  metadataValue(key: string): string | undefined {
    return this.metadata.find(([k]) => k === key)?.[1];
  }
}

/** What a successful run returns (WIT `types.output`): a JSON document as text. */
export class Output {
  private constructor(readonly data: string) {}

  /**
   * An output holding `value` serialised as JSON.
   *
   * @throws {AgentError} `internal` if `value` cannot be serialised (a
   * `bigint`, a cycle, `undefined` or a function at the top).
   */
  static json(value: unknown): Output {
    let data: string | undefined;
    try {
      data = JSON.stringify(value);
    } catch (e) {
      throw AgentError.internal(`cannot serialise output: ${messageOf(e)}`);
    }
    if (data === undefined) {
      throw AgentError.internal(`cannot serialise output: ${typeof value} is not JSON`);
    }
    return new Output(data);
  }

  /** An output holding `text` as a JSON string (quoted and escaped). */
  static text(text: string): Output {
    return new Output(JSON.stringify(text));
  }

  /**
   * An output whose data is `data` verbatim. The host expects a JSON
   * document; use this when the agent already holds serialised JSON.
   */
  static raw(data: string): Output {
    return new Output(data);
  }
}

/** The message of a thrown value, whatever was thrown. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
