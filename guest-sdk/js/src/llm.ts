/**
 * Chat completions from the model the manifest grants (`spec.capabilities.llm`).
 *
 * The host calls the provider on the agent's behalf: the agent names no
 * endpoint and holds no API key, and the manifest's budgets are checked before
 * anything is sent. The provider and model are the manifest's choice.
 *
 * ```ts
 * const answer = llm.complete(
 *   [llm.system('You triage alerts. Page for outages.'), llm.user('db-1 is down')],
 *   [llm.tool('page_oncall', 'Pages the on-call engineer', { type: 'object', properties: { reason: { type: 'string' } } })],
 *   { maxTokens: 256 },
 * );
 * for (const call of answer.toolCalls) {
 *   const { reason } = llm.argumentsJson<{ reason: string }>(call);
 * }
 * ```
 */

import * as wit from 'agent-host:agent/llm@0.1.0';
import { AgentError, SdkError } from './task.js';
import { witCall } from './wit-error.js';

export type { FinishReason, Message, Role, Tool, ToolCall, Usage } from 'agent-host:agent/llm@0.1.0';

/** Sampling options; every one absent leaves it to the provider (and the manifest's cap). */
export interface Options {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop?: string[];
}

/**
 * The cases of {@link LlmError}: the WIT `llm.error` cases (`denied`,
 * `budget-exceeded`, `invalid-request`, `upstream`) and `tool-arguments`,
 * the model's arguments for a tool that are not JSON.
 */
export type LlmErrorKind = wit.Error['tag'] | 'tool-arguments';

const PREFIX: Record<LlmErrorKind, string> = {
  denied: 'model call denied by the host',
  'budget-exceeded': 'model call refused, over budget',
  'invalid-request': 'invalid model request',
  upstream: 'model provider failed',
  'tool-arguments': 'the model called a tool with arguments that do not fit',
};

export class LlmError extends SdkError {
  constructor(
    readonly kind: LlmErrorKind,
    detail: string,
  ) {
    super(`${PREFIX[kind]}: ${detail}`);
    this.name = 'LlmError';
  }

  /**
   * `denied` and `budget-exceeded` are `capability-denied` (the host refused by
   * policy); a request the host found malformed is the agent's bug,
   * `internal`; provider failures and unusable tool arguments are `upstream`.
   */
  toAgentError(): AgentError {
    switch (this.kind) {
      case 'denied':
      case 'budget-exceeded':
        return AgentError.capabilityDenied(this.message);
      case 'invalid-request':
        return AgentError.internal(this.message);
      case 'upstream':
      case 'tool-arguments':
        return AgentError.upstream(this.message);
    }
  }
}

function text(role: wit.Role, content: string): wit.Message {
  return { role, content, toolCalls: [] };
}

/** Instructions for the model. */
export function system(content: string): wit.Message {
  return text('system', content);
}

/** The user's (or the task's) words. */
export function user(content: string): wit.Message {
  return text('user', content);
}

/** An earlier answer of the model, as text. */
export function assistant(content: string): wit.Message {
  return text('assistant', content);
}

/** The result of the tool call `callId` (a `ToolCall.id`). */
export function toolResult(callId: string, content: string): wit.Message {
  return { ...text('tool', content), toolCallId: callId };
}

/** A tool named `name` whose arguments object follows the JSON Schema `parameters`. */
export function tool(name: string, description: string, parameters: object): wit.Tool {
  return { name, description, parameters: JSON.stringify(parameters) };
}

/** The call's arguments parsed as JSON; an {@link LlmError} `tool-arguments` naming the tool otherwise. */
export function argumentsJson<T = unknown>(call: wit.ToolCall): T {
  try {
    return JSON.parse(call.arguments) as T;
  } catch (e) {
    throw new LlmError('tool-arguments', `tool \`${call.name}\`: ${(e as Error).message}`);
  }
}

/** The model's answer. */
export class Response {
  constructor(
    /** The `assistant` message, with any tool calls; push it onto the conversation. */
    readonly message: wit.Message,
    readonly finishReason: wit.FinishReason,
    readonly usage: wit.Usage,
  ) {}

  /** The tool calls the model asked for, in its order (empty if none). */
  get toolCalls(): wit.ToolCall[] {
    return this.message.toolCalls;
  }

  /** The answer's text (may be empty when it only carries tool calls). */
  get text(): string {
    return this.message.content;
  }
}

/**
 * Sends `messages` (with the `tools` the model may call) to the granted model.
 * Throws an {@link LlmError}: `denied` without the grant, `budget-exceeded`
 * past a budget of the manifest (nothing sent), `upstream` when the provider
 * failed after the host's retries.
 */
export function complete(messages: wit.Message[], tools: wit.Tool[] = [], options: Options = {}): Response {
  const request: wit.Request = {
    messages,
    tools,
    options: {
      maxTokens: options.maxTokens,
      temperature: options.temperature,
      topP: options.topP,
      stop: options.stop ?? [],
    },
  };
  const r = witCall<wit.Response, wit.Error>(() => wit.complete(request));
  if ('err' in r) throw new LlmError(r.err.tag, r.err.val);
  return new Response(r.ok.message, r.ok.finishReason, r.ok.usage);
}
