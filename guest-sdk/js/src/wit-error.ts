/**
 * Import calls whose WIT result is `result<T, E>` return `T` and throw a
 * `ComponentError` whose `payload` is `E`; this unwraps it.
 */

/**
 * Calls `f`; if it throws a WIT error value, returns it as `{ err }` so the
 * caller maps it exhaustively. Anything else thrown (a trap-like bug) is rethrown.
 */
export function witCall<T, E>(f: () => T): { ok: T } | { err: E } {
  try {
    return { ok: f() };
  } catch (e) {
    if (e !== null && typeof e === 'object' && Object.prototype.hasOwnProperty.call(e, 'payload')) {
      return { err: (e as { payload: E }).payload };
    }
    throw e;
  }
}
