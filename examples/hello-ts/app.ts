// `hello` in TypeScript: the smallest useful agent, as examples/hello does it
// in Rust. Greets `input.name` (default "world"), echoes the input back, and
// exercises structured logging and stdout capture.

import { AgentError, exportAgent, log, Output, type Task } from '@agent-host/guest';

export const run = exportAgent((task: Task) => {
  const { name, output } = greet(task);
  log.record('info', 'greeting', { taskId: task.id, name });
  console.log(`hello agent handled ${task.id}`);
  return output;
});

/** The agent's logic without its host calls: the name greeted and the output. */
function greet(task: Task): { name: string; output: Output } {
  // A task sent without input counts as `{}`.
  const text = task.input.trim() === '' ? '{}' : task.input;
  let echo: unknown;
  try {
    echo = JSON.parse(text);
  } catch (e) {
    throw AgentError.invalidInput(`task input: ${(e as Error).message}`);
  }
  if (echo === null || typeof echo !== 'object' || Array.isArray(echo)) {
    throw AgentError.invalidInput('task input: expected a JSON object');
  }
  const given = (echo as { name?: unknown }).name;
  if (given !== undefined && given !== null && typeof given !== 'string') {
    throw AgentError.invalidInput(`task input: name must be a string, not ${typeof given}`);
  }
  const name = given ?? 'world';
  // Keys in the order serde_json writes them for the Rust hello (sorted), so
  // both agents answer the same document.
  const output = Output.json(sortKeys({ greeting: `hello, ${name}`, echo, taskId: task.id }));
  return { name, output };
}

/** `value` with every object's keys sorted, as serde_json's default map orders them. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortKeys(v)]));
}
