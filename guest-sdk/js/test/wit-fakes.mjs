// Node loader hooks standing in for the component's WIT imports, so the SDK's
// own logic (error mapping, naming, paging, paths) runs under `node --test`.
// Each import calls the handler a test put in globalThis.witFakes[interface][function];
// one without a handler throws, naming it.

const EXPORTS = {
  'agent-host:agent/log@0.1.0': ['log'],
  'agent-host:agent/llm@0.1.0': ['complete'],
  'agent-host:agent/tools@0.1.0': ['listTools', 'callTool'],
  'wasi:cli/environment@0.2.12': ['getEnvironment', 'getArguments', 'initialCwd'],
  'wasi:filesystem/preopens@0.2.12': ['getDirectories'],
  'wasi:keyvalue/store@0.2.0-draft': ['open'],
  'wasi:keyvalue/atomics@0.2.0-draft': ['increment'],
  'wasi:http/outgoing-handler@0.2.12': ['handle'],
  'wasi:http/types@0.2.12': ['Fields', 'IncomingBody', 'OutgoingBody', 'OutgoingRequest', 'httpErrorCode'],
};

const PREFIX = 'wit-fake:';

export async function resolve(specifier, context, next) {
  if (specifier in EXPORTS) return { url: PREFIX + specifier, shortCircuit: true };
  if (/^(wasi|agent-host):/.test(specifier)) {
    throw new Error(`test/wit-fakes.mjs: no fake for ${specifier}; add it to EXPORTS`);
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith(PREFIX)) return next(url, context);
  const iface = url.slice(PREFIX.length);
  const body = EXPORTS[iface]
    .map((name) => `export const ${name} = (...args) => call(${JSON.stringify(iface)}, ${JSON.stringify(name)}, args);`)
    .join('\n');
  const source = `
    function call(iface, name, args) {
      const f = globalThis.witFakes?.[iface]?.[name];
      if (typeof f !== 'function') throw new Error('no fake handler for ' + iface + '#' + name);
      return f(...args);
    }
    ${body}`;
  return { format: 'module', source, shortCircuit: true };
}
