// {{name}}: greets `input.name`. Start here: read the task input, reach what
// the manifest grants through the SDK (`http`, `kv`, `llm`, `tools`, `env`,
// `fs`, `log`), return JSON.

import { exportAgent, log, Output, type Task } from '@agent-host/guest';

export const run = exportAgent((task: Task) => {
  const name = task.inputJson<{ name?: string }>().name ?? 'world';
  log.record('info', `greeting ${name}`);
  return Output.json({ greeting: `hello, ${name}` });
});
