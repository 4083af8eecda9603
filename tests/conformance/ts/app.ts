// The conformance agent in TypeScript: the behaviours of
// tests/conformance/PROTOCOL.md, which every guest language implements alike
// and tests/e2e/conformance.rs runs through the host.

import { AgentError, env, exportAgent, fs, http, kv, log, Output, type Task } from '@agent-host/guest';

type Input = Record<string, unknown>;

/** `ok(f())`, or `{ ok: false, error }` with the message of what `f` threw. */
function outcome<T>(f: () => T, ok: (value: T) => object): object {
  let value: T;
  try {
    value = f();
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  return ok(value);
}

function text(input: Input, field: string): string {
  const value = input[field];
  return typeof value === 'string' ? value : '';
}

function handle(input: Input): object {
  const op = text(input, 'op');
  switch (op) {
    case 'echo':
      return { echo: input.value ?? null };
    case 'env': {
      const names = Array.isArray(input.names) ? input.names : [];
      const vars: Record<string, string | null> = {};
      for (const name of names) {
        if (typeof name === 'string') vars[name] = env.get(name) ?? null;
      }
      return { env: vars };
    }
    case 'read':
      return outcome(() => fs.readText(text(input, 'path')), (t) => ({ ok: true, text: t }));
    case 'write':
      return outcome(() => fs.writeFile(text(input, 'path'), text(input, 'text')), () => ({ ok: true }));
    case 'http':
      return outcome(
        () => http.request('GET', text(input, 'url')),
        (r) => ({ ok: true, status: r.status, body: r.text() }),
      );
    case 'log':
      log.record('info', text(input, 'message'), { op: 'log' });
      return { logged: true };
    case 'spin': {
      let n = 0;
      for (;;) n = (n + 1) | 0;
    }
    case 'alloc': {
      const kept: Uint8Array[] = [];
      for (;;) kept.push(new Uint8Array(1 << 20).fill(1));
    }
    case 'output': {
      const bytes = typeof input.bytes === 'number' ? input.bytes : 0;
      return { data: 'x'.repeat(bytes) };
    }
    case 'kv': {
      const store = kv.Store.open('conformance');
      const count = store.increment(text(input, 'key'), 1n);
      if (input.fail === true) throw AgentError.internal('rolled back');
      return { count: Number(count) };
    }
    default:
      throw AgentError.invalidInput(`unknown op ${JSON.stringify(op)}`);
  }
}

export const run = exportAgent((task: Task) => {
  const input = task.inputJson();
  // As the Rust agent reads fields of any JSON value: a non-object has none.
  const fields = input !== null && typeof input === 'object' && !Array.isArray(input) ? (input as Input) : {};
  return Output.json(handle(fields));
});
