/**
 * Outgoing HTTP over `wasi:http/outgoing-handler`, in blocking style.
 *
 * The host lets a request through only if its URL and method match an entry
 * of the manifest's `spec.capabilities.http`; otherwise it fails with an
 * {@link HttpError} of kind `denied`, reported as `capability-denied` when
 * thrown out of `run` (a manifest problem, not an outage).
 *
 * ```ts
 * const health = http.getJson<{ ok: boolean }>('http://127.0.0.1:8080/health');
 * const created = http.postJson('http://127.0.0.1:8080/api/issues', { title: 'db down' });
 * const issue = created.json<{ id: number }>();
 * ```
 */

import { HttpError, MAX_ERROR_BODY_CHARS } from './http/error.js';
import { method, send } from './http/transport.js';
import { parseUrl } from './http/url.js';

export { HttpError, MAX_ERROR_BODY_CHARS, type HttpErrorKind } from './http/error.js';
export { encodeComponent } from './http/url.js';

/** Request headers: an object, or pairs when a name repeats. */
export type Headers = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>;

/** A complete HTTP response: status, headers and the whole body. */
export class Response {
  constructor(
    /** The HTTP status code. */
    readonly status: number,
    /** Response headers in the order received (names lower-case). */
    readonly headers: ReadonlyArray<readonly [string, Uint8Array]>,
    /** The whole response body. */
    readonly body: Uint8Array,
  ) {}

  /** Whether the status is 2xx. */
  isSuccess(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /** The first value of header `name` (case-insensitive) as text, if present. */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k === lower);
    return found && new TextDecoder().decode(found[1]);
  }

  /** The body decoded as UTF-8 (invalid bytes replaced). */
  text(): string {
    return new TextDecoder().decode(this.body);
  }

  /** The body parsed as JSON; an `HttpError` of kind `decode` if it is not JSON. */
  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (e) {
      throw new HttpError('decode', `HTTP body: response is not the expected JSON: ${(e as Error).message}`);
    }
  }

  /** `this` if the status is 2xx, otherwise an `HttpError` of kind `status`. */
  errorForStatus(): Response {
    if (this.isSuccess()) return this;
    const body = Array.from(this.text()).slice(0, MAX_ERROR_BODY_CHARS).join('');
    throw new HttpError('status', `HTTP status ${this.status}: ${body}`, this.status);
  }
}

/**
 * Sends one request and waits for the complete response.
 *
 * `method` is an HTTP method name (`"GET"`, `"POST"`...). `headers` are sent
 * as given; a `content-length` header is added when there is a `body`
 * (a string is sent as UTF-8). Every status is returned as a
 * {@link Response}; only failures to get one throw.
 */
export function request(
  methodName: string,
  url: string,
  headers: Headers = [],
  body?: Uint8Array | string,
): Response {
  const target = parseUrl(url);
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const raw = send(method(methodName), target, pairs, bytes);
  return new Response(raw.status, raw.headers, raw.body);
}

/** GETs `url` and parses a 2xx JSON response. Non-2xx statuses throw kind `status`. */
export function getJson<T = unknown>(url: string): T {
  return request('GET', url, { accept: 'application/json' }).errorForStatus().json<T>();
}

/** POSTs `body` serialised as JSON to `url` and returns the 2xx response. */
export function postJson(url: string, body: unknown): Response {
  let encoded: string | undefined;
  try {
    encoded = JSON.stringify(body);
  } catch (e) {
    throw new HttpError('decode', `HTTP body: cannot encode request body: ${(e as Error).message}`);
  }
  if (encoded === undefined) throw new HttpError('decode', `HTTP body: ${typeof body} is not JSON`);
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  return request('POST', url, headers, encoded).errorForStatus();
}
