/**
 * Tools on remote MCP servers the manifest grants (`spec.capabilities.mcp`).
 *
 * The host is the MCP client: it connects only where the manifest allows,
 * adds the server's credentials, shows only the granted tools and keeps each
 * server within its budgets. An agent loop: {@link list} the tools, offer them
 * to the model with {@link modelTools}, answer each tool call with {@link answer}:
 *
 * ```ts
 * const granted = tools.list();
 * const messages = [llm.user('Is checkout healthy?')];
 * for (;;) {
 *   const reply = llm.complete(messages, tools.modelTools(granted));
 *   messages.push(reply.message);
 *   if (reply.toolCalls.length === 0) break;
 *   for (const call of reply.toolCalls) messages.push(tools.answer(granted, call));
 * }
 * ```
 */

import * as wit from 'agent-host:agent/tools@0.1.0';
import type { Message, Tool as ModelTool, ToolCall } from 'agent-host:agent/llm@0.1.0';
import { toolResult } from './llm.js';
import { AgentError, SdkError } from './task.js';
import { witCall } from './wit-error.js';

export type { Tool, ToolResult } from 'agent-host:agent/tools@0.1.0';

/** The cases of {@link ToolsError}, those of WIT `tools.error`. */
export type ToolsErrorKind = wit.Error['tag'];

const PREFIX: Record<ToolsErrorKind, string> = {
  denied: 'MCP tool denied by the host',
  'invalid-arguments': 'invalid tool arguments',
  'tool-error': 'the tool failed',
  upstream: 'MCP server failed',
  'budget-exceeded': 'MCP call refused, over budget',
};

/** Longest tool name model APIs accept. */
export const MAX_MODEL_NAME_CHARS = 64;

export class ToolsError extends SdkError {
  constructor(
    readonly kind: ToolsErrorKind,
    detail: string,
  ) {
    super(`${PREFIX[kind]}: ${detail}`);
    this.name = 'ToolsError';
  }

  /**
   * Policy refusals (`denied`, `budget-exceeded`) are `capability-denied`;
   * arguments the agent built wrong, `internal`; the server's and the tool's
   * failures, `upstream`.
   */
  toAgentError(): AgentError {
    switch (this.kind) {
      case 'denied':
      case 'budget-exceeded':
        return AgentError.capabilityDenied(this.message);
      case 'invalid-arguments':
        return AgentError.internal(this.message);
      case 'tool-error':
      case 'upstream':
        return AgentError.upstream(this.message);
    }
  }
}

function unwrap<T>(f: () => T): T {
  const r = witCall<T, wit.Error>(f);
  if ('err' in r) throw new ToolsError(r.err.tag, r.err.val);
  return r.ok;
}

/** The granted tools of every granted server, with their input schemas. */
export function list(): wit.Tool[] {
  return unwrap(() => wit.listTools());
}

/** Calls tool `name` of `server` with `args` (a JSON object). */
export function call(server: string, name: string, args: object): wit.ToolResult {
  return unwrap(() => wit.callTool(server, name, JSON.stringify(args)));
}

/** The structured result parsed as JSON, when the tool gave one. */
export function structuredJson<T = unknown>(result: wit.ToolResult): T | undefined {
  return result.structured === undefined ? undefined : (JSON.parse(result.structured) as T);
}

/**
 * The name the model sees: `server__tool`, every character but ASCII
 * letters, digits and `-` replaced by `_`, cut to 64 (what model APIs accept).
 */
export function modelName(tool: wit.Tool): string {
  return Array.from(`${tool.server}__${tool.name}`, (c) => (/^[A-Za-z0-9-]$/.test(c) ? c : '_'))
    .slice(0, MAX_MODEL_NAME_CHARS)
    .join('');
}

/** `tools` as model tool definitions (see {@link modelName}). */
export function modelTools(tools: readonly wit.Tool[]): ModelTool[] {
  return tools.map((t) => ({ name: modelName(t), description: t.description, parameters: t.inputSchema }));
}

/**
 * Runs the model's tool `call` on its MCP server and returns the text for the
 * model. Throws only what the model cannot fix (a tool outside `tools`, a
 * denial, a spent budget, a failed server); the tool's own error and invalid
 * arguments come back as text `error: ...`.
 */
export function runModelCall(tools: readonly wit.Tool[], call: ToolCall): string {
  const tool = tools.find((t) => modelName(t) === call.name);
  if (tool === undefined) {
    throw new ToolsError('denied', `the model called \`${call.name}\`, which is not one of the listed tools`);
  }
  const r = witCall<wit.ToolResult, wit.Error>(() => wit.callTool(tool.server, tool.name, call.arguments));
  if ('ok' in r) return r.ok.structured ?? r.ok.text;
  const e = new ToolsError(r.err.tag, r.err.val);
  if (e.kind === 'tool-error' || e.kind === 'invalid-arguments') return `error: ${e.message}`;
  throw e;
}

/** {@link runModelCall} as the `tool` message that answers `call`. */
export function answer(tools: readonly wit.Tool[], call: ToolCall): Message {
  return toolResult(call.id, runModelCall(tools, call));
}
