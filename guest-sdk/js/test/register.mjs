import { register } from 'node:module';

register('./wit-fakes.mjs', import.meta.url);

/** Sets the handlers of one WIT interface for the next calls. */
globalThis.fake = (iface, handlers) => {
  globalThis.witFakes ??= {};
  globalThis.witFakes[iface] = handlers;
};

/** What a WIT import throws for an error result: a ComponentError with the variant as payload. */
globalThis.witError = (payload) => Object.assign(new Error('component error'), { payload });
