/**
 * Guest SDK for agent-host: write an AI agent in TypeScript, built into a
 * WebAssembly component (`wasm32-wasip2`, WIT world `agent` of `wit/`) that
 * the host runs under its `Agent` manifest.
 *
 * An agent is one `run(task)` registered with {@link exportAgent} and exported
 * as `run`. The host creates a fresh instance for every task, calls `run` once
 * and drops it. Everything outside the sandbox goes through a capability the
 * manifest grants: `http`, `env`, `fs`, `kv`, `llm`, `tools`, and `log`.
 *
 * ```ts
 * import { env, exportAgent, http, log, Output, type Task } from '@agent-host/guest';
 *
 * export const run = exportAgent((task: Task) => {
 *   const { service } = task.inputJson<{ service: string }>();
 *   const base = env.require('STATUS_URL'); // undeclared -> capability-denied
 *   log.record('info', 'checking', { service });
 *   const status = http.getJson(`${base}${service}`); // ungranted URL -> capability-denied
 *   return Output.json({ service, status });
 * });
 * ```
 *
 * Build it with `scripts/build-ts-agent.sh APP_DIR OUT.wasm`.
 */

/// <reference path="../types/wit/agent.d.ts" />

export { exportAgent, toAgentError, type Agent, type AgentLike } from './agent.js';
export { AgentError, Output, SdkError, Task, type AgentErrorKind } from './task.js';
export * as env from './env.js';
export * as fs from './fs.js';
export * as http from './http.js';
export * as kv from './kv.js';
export * as llm from './llm.js';
export * as log from './log.js';
export * as tools from './tools.js';
