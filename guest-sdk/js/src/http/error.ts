/** Why an HTTP request failed, and how that maps to an agent error. */

import { AgentError, SdkError } from '../task.js';

/**
 * The cases of {@link HttpError}:
 * - `denied`: the host refused the request (`HTTP-request-denied` or
 *   `destination-IP-prohibited`): the URL or method is not in `spec.capabilities.http`.
 * - `status`: a non-2xx answer (only from `getJson`/`postJson`; `request` returns every status).
 * - `transport`: the request failed on the way (connection refused, DNS, timeout, a header
 *   the host forbids, the per-invocation request budget spent...).
 * - `invalid-url`: the URL could not be split into scheme, authority and path.
 * - `decode`: a JSON body could not be encoded, or a response is not the expected JSON.
 */
export type HttpErrorKind = 'denied' | 'status' | 'transport' | 'invalid-url' | 'decode';

/** Longest prefix of a non-2xx response body kept in a `status` error. */
export const MAX_ERROR_BODY_CHARS = 1024;

export class HttpError extends SdkError {
  constructor(
    readonly kind: HttpErrorKind,
    message: string,
    /** The HTTP status, for `status` errors. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  /** `denied` is `capability-denied` (fix the manifest); the rest `upstream` (retry later). */
  toAgentError(): AgentError {
    return this.kind === 'denied'
      ? AgentError.capabilityDenied(this.message)
      : AgentError.upstream(this.message);
  }
}
