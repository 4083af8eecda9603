/**
 * Registering the agent: the component's `run` export calls it once per
 * (fresh) instance and maps what it throws to WIT `agent-error`.
 */

import type * as wit from 'agent-host:agent/types@0.1.0';
import { AgentError, Output, SdkError, Task } from './task.js';

/** The one thing an agent implements: handle one task. */
export interface Agent {
  run(task: Task): Output;
}

/** An {@link Agent}, or just its `run` function. */
export type AgentLike = Agent | ((task: Task) => Output);

/** Longest stack trace kept in the `internal` error of an uncaught exception. */
const MAX_STACK_CHARS = 2048;

let registered = false;

/**
 * Makes `agent` the component's `run` export. Call it exactly once, in the
 * entry module, and export the result as `run`:
 *
 * ```ts
 * import { exportAgent, Output, type Task } from '@agent-host/guest';
 * export const run = exportAgent((task: Task) => Output.json({ echo: task.inputJson() }));
 * ```
 *
 * The module's top level (this call included) runs at build time and is
 * snapshotted into the component: reach the host (clock, env, files, HTTP)
 * only inside `run`.
 *
 * What `run` throws becomes the invocation's `agent-error`: an
 * {@link AgentError} as it is, an SDK module's error (`http.HttpError`,
 * `kv.KvError`, ...) as its case, anything else as `internal` with its
 * message and stack (the agent's own bug).
 */
export function exportAgent(agent: AgentLike): (task: wit.Task) => wit.Output {
  if (registered) {
    // Two agents in one component would leave which one runs to import order.
    throw new Error('exportAgent was called twice: a component exports exactly one agent');
  }
  registered = true;
  const handle = typeof agent === 'function' ? agent : agent.run.bind(agent);
  return (task: wit.Task): wit.Output => {
    let output: unknown;
    try {
      output = handle(new Task(task.id, task.input, task.metadata));
    } catch (e) {
      throw { payload: toAgentError(e).toWit() };
    }
    if (!(output instanceof Output)) {
      const got = output instanceof Promise ? 'a Promise (run must be synchronous)' : typeof output;
      const e = AgentError.internal(`run returned ${got}, not an Output (use Output.json, Output.text or Output.raw)`);
      throw { payload: e.toWit() };
    }
    return { data: output.data };
  };
}

/** The one mapping from a thrown value to the agent error the host reports. */
export function toAgentError(e: unknown): AgentError {
  if (e instanceof AgentError) return e;
  if (e instanceof SdkError) return e.toAgentError();
  if (e instanceof Error) {
    const stack = agentFrames(e.stack ?? '').slice(0, MAX_STACK_CHARS);
    return AgentError.internal(`uncaught ${e.name}: ${e.message}${stack ? `\n${stack}` : ''}`);
  }
  return AgentError.internal(`uncaught exception: ${String(e)}`);
}

/**
 * The frames of `stack` inside the agent: those from this wrapper outwards
 * are the same for every agent (and name the build's temporary files).
 */
function agentFrames(stack: string): string {
  const lines = stack.split('\n');
  const wrapper = lines.findIndex((l) => l.startsWith('exportAgent'));
  return (wrapper < 0 ? lines : lines.slice(0, wrapper)).join('\n').trim();
}
