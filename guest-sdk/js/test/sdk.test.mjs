// The SDK's logic without a host: WIT imports are fakes (test/wit-fakes.mjs).
// What needs the real host (HTTP transport, the component build) is checked
// by running tests/conformance/ts and examples/hello-ts through agent-host.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentError, env, exportAgent, fs, http, kv, llm, log, Output, Task, tools } from '../dist/index.js';

const task = (input, metadata = []) => ({ id: 'inv-1', input, metadata });

test('outputs are JSON documents, and what is not JSON is an internal error', () => {
  assert.equal(Output.json({ a: [1, 'é'] }).data, '{"a":[1,"é"]}');
  assert.equal(Output.text('say "hi"\n').data, '"say \\"hi\\"\\n"');
  assert.equal(Output.raw('{"x":1}').data, '{"x":1}');
  const cyclic = {};
  cyclic.self = cyclic;
  for (const bad of [cyclic, undefined, 1n]) {
    assert.throws(() => Output.json(bad), (e) => e instanceof AgentError && e.kind === 'internal');
  }
});

test('task input that is not JSON is invalid-input naming the task input', () => {
  const t = new Task('inv-1', '{"a":', [['trace', 't-1']]);
  assert.throws(() => t.inputJson(), (e) => e.kind === 'invalid-input' && e.message.startsWith('task input: '));
  assert.equal(t.metadataValue('trace'), 't-1');
  assert.equal(t.metadataValue('absent'), undefined);
});

// exportAgent registers once per module instance, so one test covers the wrapper.
test('the exported run maps outputs and every thrown value to the WIT agent-error', () => {
  const modes = {
    ok: (t) => Output.json({ echo: t.inputJson(), id: t.id }),
    invalid: () => {
      throw AgentError.invalidInput('bad field');
    },
    sdk: () => kv.Store.open('secrets'),
    bug: () => null.x,
    thrownString: () => {
      throw 'boom';
    },
    notOutput: () => ({ data: '{}' }),
  };
  fake('wasi:keyvalue/store@0.2.0-draft', { open: () => { throw witError({ tag: 'access-denied' }); } });
  const run = exportAgent((t) => modes[t.inputJson().mode](t));
  assert.throws(() => exportAgent(() => Output.raw('{}')), /called twice/);

  assert.deepEqual(run(task('{"mode":"ok"}')), { data: '{"echo":{"mode":"ok"},"id":"inv-1"}' });
  const payload = (input) => {
    try {
      run(task(input));
    } catch (e) {
      assert.ok(Object.prototype.hasOwnProperty.call(e, 'payload'), 'the bindings read an own `payload`');
      return e.payload;
    }
    assert.fail('run did not throw');
  };
  assert.deepEqual(payload('{"mode":"invalid"}'), { tag: 'invalid-input', val: 'bad field' });
  const denied = payload('{"mode":"sdk"}');
  assert.equal(denied.tag, 'capability-denied');
  assert.match(denied.val, /bucket `secrets` denied by the host/);
  const bug = payload('{"mode":"bug"}');
  assert.equal(bug.tag, 'internal');
  assert.match(bug.val, /^uncaught TypeError: /);
  assert.deepEqual(payload('{"mode":"thrownString"}'), { tag: 'internal', val: 'uncaught exception: boom' });
  assert.match(payload('{"mode":"notOutput"}').val, /not an Output/);
  assert.equal(payload('not json').tag, 'invalid-input');
});

test('model names are what model APIs accept', () => {
  const tool = (server, name) => ({ server, name, description: '', inputSchema: '{}' });
  assert.equal(tools.modelName(tool('tickets', 'search')), 'tickets__search');
  assert.equal(tools.modelName(tool('docs', 'fs.read/v2')), 'docs__fs_read_v2');
  assert.equal(tools.modelName(tool('s', 'x'.repeat(100))).length, 64);
  assert.deepEqual(tools.modelTools([tool('a', 'b')]), [{ name: 'a__b', description: '', parameters: '{}' }]);
});

test('a tool failure goes back to the model as text, a policy refusal is thrown', () => {
  const granted = [{ server: 'tickets', name: 'search', description: '', inputSchema: '{}' }];
  const call = { id: 'c1', name: 'tickets__search', arguments: '{"q":"db"}' };
  let answerWith;
  fake('agent-host:agent/tools@0.1.0', { callTool: (...args) => answerWith(...args) });

  answerWith = (server, name, args) => {
    assert.deepEqual([server, name, args], ['tickets', 'search', '{"q":"db"}']);
    return { text: 'plain', content: '[]', structured: '{"n":1}' };
  };
  assert.deepEqual(tools.answer(granted, call), { role: 'tool', content: '{"n":1}', toolCalls: [], toolCallId: 'c1' });

  answerWith = () => { throw witError({ tag: 'tool-error', val: 'no such ticket' }); };
  assert.equal(tools.runModelCall(granted, call), 'error: the tool failed: no such ticket');
  answerWith = () => { throw witError({ tag: 'invalid-arguments', val: 'q: expected string' }); };
  assert.equal(tools.runModelCall(granted, call), 'error: invalid tool arguments: q: expected string');
  answerWith = () => { throw witError({ tag: 'budget-exceeded', val: 'maxCalls' }); };
  assert.throws(() => tools.runModelCall(granted, call), (e) => e.kind === 'budget-exceeded' && e.toAgentError().kind === 'capability-denied');
  assert.throws(() => tools.runModelCall(granted, { ...call, name: 'other__tool' }), (e) => e.kind === 'denied' && /not one of the listed tools/.test(e.message));
});

test('tool and model errors keep policy refusals apart from failures', () => {
  const cases = [
    ['agent-host:agent/tools@0.1.0', () => tools.list(), 'listTools', { tag: 'denied', val: 'tool `x`' }, 'capability-denied'],
    ['agent-host:agent/tools@0.1.0', () => tools.list(), 'listTools', { tag: 'tool-error', val: 'x' }, 'upstream'],
    ['agent-host:agent/tools@0.1.0', () => tools.list(), 'listTools', { tag: 'invalid-arguments', val: 'x' }, 'internal'],
    ['agent-host:agent/llm@0.1.0', () => llm.complete([llm.user('hi')]), 'complete', { tag: 'budget-exceeded', val: 'maxTokensPerInvocation' }, 'capability-denied'],
    ['agent-host:agent/llm@0.1.0', () => llm.complete([llm.user('hi')]), 'complete', { tag: 'upstream', val: '503' }, 'upstream'],
    ['agent-host:agent/llm@0.1.0', () => llm.complete([llm.user('hi')]), 'complete', { tag: 'invalid-request', val: 'bad schema' }, 'internal'],
  ];
  for (const [iface, f, name, payload, agentKind] of cases) {
    fake(iface, { [name]: () => { throw witError(payload); } });
    assert.throws(f, (e) => e.kind === payload.tag && e.message.includes(payload.val) && e.toAgentError().kind === agentKind, `${payload.tag}`);
  }
});

test('a completion request carries the defaults the WIT record needs', () => {
  let sent;
  fake('agent-host:agent/llm@0.1.0', {
    complete: (request) => {
      sent = request;
      return { message: { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'page', arguments: '{"team": 7' }] }, finishReason: 'tool-calls', usage: { promptTokens: 3, completionTokens: 2 } };
    },
  });
  const answer = llm.complete([llm.system('s')], [llm.tool('page', 'Pages', { type: 'object' })], { maxTokens: 9 });
  assert.deepEqual(sent.options, { maxTokens: 9, temperature: undefined, topP: undefined, stop: [] });
  assert.deepEqual(sent.tools, [{ name: 'page', description: 'Pages', parameters: '{"type":"object"}' }]);
  assert.equal(answer.toolCalls.length, 1);
  assert.throws(() => llm.argumentsJson(answer.toolCalls[0]), (e) => e.kind === 'tool-arguments' && /tool `page`/.test(e.message));
});

function fakeBucket(values, pages) {
  return {
    get: (key) => values[key],
    listKeys: (cursor) => pages(cursor),
  };
}

test('counters are read as little-endian u64 and anything else is not a counter', () => {
  const values = { c: new Uint8Array([1, 1, 0, 0, 0, 0, 0, 0]), max: new Uint8Array(8).fill(255), text: new Uint8Array([1, 2, 3]) };
  fake('wasi:keyvalue/store@0.2.0-draft', { open: () => fakeBucket(values) });
  const store = kv.Store.open('state');
  assert.equal(store.counter('c'), 257n);
  assert.equal(store.counter('max'), (1n << 64n) - 1n);
  assert.equal(store.counter('absent'), 0n);
  assert.throws(() => store.counter('text'), (e) => e.kind === 'not-a-counter' && /holds 3 bytes/.test(e.message) && e.toAgentError().kind === 'internal');
  assert.throws(() => store.increment('c', -1), RangeError);
});

test('keys follow every page of the host, and a cursor that does not advance is an error', () => {
  const asked = [];
  const pages = { undefined: { keys: ['a', 'b'], cursor: 2n }, 2: { keys: ['c'], cursor: 3n }, 3: { keys: ['d'] } };
  assert.deepEqual(kv.allPages('state', (c) => (asked.push(c), pages[String(c)])), ['a', 'b', 'c', 'd']);
  assert.deepEqual(asked, [undefined, 2n, 3n]);
  let calls = 0;
  assert.throws(
    () => kv.allPages('state', () => {
      calls += 1;
      if (calls > 10) throw new Error('asked forever');
      return { keys: ['a'], cursor: 1n };
    }),
    (e) => e.kind === 'host' && /does not advance/.test(e.message),
  );
  assert.equal(calls, 2);
});

test('host refusals of key-value state keep the host message and the bucket', () => {
  fake('wasi:keyvalue/store@0.2.0-draft', { open: () => { throw witError({ tag: 'other', val: 'quota: maxBytes is 10' }); } });
  assert.throws(() => kv.Store.open('state'), (e) => e.kind === 'host' && e.bucket === 'state' && /quota: maxBytes is 10/.test(e.message) && e.toAgentError().kind === 'upstream');
  fake('wasi:keyvalue/store@0.2.0-draft', { open: () => { throw witError({ tag: 'access-denied' }); } });
  assert.throws(() => kv.Store.open('secrets'), (e) => e.kind === 'denied' && /`secrets`.*spec\.capabilities\.keyValue/.test(e.message));
});

test('URLs are checked before anything reaches the host', () => {
  fake('wasi:http/types@0.2.12', {});
  for (const [url, why] of [['nourl', /missing scheme/], ['http://user@host/', /user info/], ['http://a b/', /whitespace/], ['http:///x', /missing host/]]) {
    assert.throws(() => http.request('GET', url), (e) => e.kind === 'invalid-url' && why.test(e.message) && e.toAgentError().kind === 'upstream', url);
  }
  assert.equal(http.encodeComponent('up{job="api"}'), 'up%7Bjob%3D%22api%22%7D');
  assert.equal(http.encodeComponent('é ~'), '%C3%A9%20~');
});

test('a non-2xx status is an error only when asked for, with the body cut', () => {
  const r = new http.Response(503, [['content-type', new TextEncoder().encode('text/plain')]], new TextEncoder().encode('x'.repeat(5000)));
  assert.equal(r.header('Content-Type'), 'text/plain');
  assert.throws(() => r.errorForStatus(), (e) => e.kind === 'status' && e.status === 503 && e.message.length === 'HTTP status 503: '.length + 1024);
});

test('env shows only what the host passed, and a missing variable names the manifest field', () => {
  fake('wasi:cli/environment@0.2.12', { getEnvironment: () => [['REGION', 'eu-west']] });
  assert.equal(env.get('REGION'), 'eu-west');
  assert.equal(env.get('HOME'), undefined);
  assert.throws(() => env.require('HOME'), (e) => e.kind === 'capability-denied' && /`HOME`.*spec\.capabilities\.env/.test(e.message));
});

test('log fields are sent as pairs, from an object or pairs', () => {
  const seen = [];
  fake('agent-host:agent/log@0.1.0', { log: (...args) => seen.push(args) });
  log.record('warn', 'retrying', { attempt: '2' });
  log.record('info', 'dup', [['k', '1'], ['k', '2']]);
  log.error('failed');
  assert.deepEqual(seen, [
    ['warn', 'retrying', [['attempt', '2']]],
    ['info', 'dup', [['k', '1'], ['k', '2']]],
    ['error', 'failed', []],
  ]);
});

test('a file is opened in the deepest granted directory containing it, and nothing else is tried', () => {
  const opened = [];
  let disposed = 0;
  const dir = (name) => ({
    openAt: (_flags, rel) => {
      opened.push([name, rel]);
      let done = false;
      return { read: () => (done ? [new Uint8Array(0), true] : ((done = true), [new TextEncoder().encode(`${name}:${rel}`), false])), [Symbol.dispose]: () => disposed++ };
    },
    [Symbol.dispose]: () => disposed++,
  });
  fake('wasi:filesystem/preopens@0.2.12', { getDirectories: () => [[dir('data'), '/data'], [dir('sub'), '/data/sub/']] });
  assert.equal(fs.readText('/data/runbook.md'), 'data:runbook.md');
  assert.equal(fs.readText('/data/sub/x/y'), 'sub:x/y');
  assert.equal(fs.readText('/data/../outside.txt'), 'data:../outside.txt', 'the host, not the SDK, refuses `..`');
  for (const path of ['/database/x', '/etc/passwd', 'data/runbook.md', '../outside.txt']) {
    assert.throws(() => fs.readText(path), (e) => e.code === 'not-granted' && e.toAgentError().kind === 'capability-denied', path);
  }
  assert.deepEqual(opened, [['data', 'runbook.md'], ['sub', 'x/y'], ['data', '../outside.txt']]);
  assert.equal(disposed, 3 * 3 + 4 * 2, 'every preopen and file handle is released');
});
