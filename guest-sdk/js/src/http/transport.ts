/**
 * The `wasi:http` resource dance for one request: build it, hand it to the
 * outgoing handler, stream the body, wait for and read the response.
 *
 * Child resources (streams, pollables) are disposed of before their parents,
 * explicitly: the host traps on a parent dropped first, and the garbage
 * collector keeps no order.
 */

import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingRequest,
  httpErrorCode,
  type ErrorCode,
  type FutureIncomingResponse,
  type IncomingResponse,
  type Method,
} from 'wasi:http/types@0.2.12';
import type { StreamError } from 'wasi:io/streams@0.2.12';
import { witCall } from '../wit-error.js';
import { HttpError } from './error.js';
import type { Target } from './url.js';

/** Largest slice `blocking-write-and-flush` accepts in one call. */
const MAX_WRITE_CHUNK = 4096;

/** How many bytes to ask for per `blocking-read` of a response body. */
const READ_CHUNK = 64n * 1024n;

/** A complete response as the transport read it. */
export interface RawResponse {
  status: number;
  headers: Array<[string, Uint8Array]>;
  body: Uint8Array;
}

const KNOWN_METHODS = ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'] as const;

/** Maps a method name to the WIT `method` (standard names case-insensitively). */
export function method(name: string): Method {
  const lower = name.toLowerCase();
  const known = KNOWN_METHODS.find((m) => m === lower);
  return known ? { tag: known } : { tag: 'other', val: name };
}

/** Sends one request and reads the whole response. */
export function send(
  m: Method,
  target: Target,
  headers: ReadonlyArray<readonly [string, string]>,
  body: Uint8Array | undefined,
): RawResponse {
  const request = buildRequest(m, target, headers, body);
  const outgoingBody = request.body();
  const sent = witCall<FutureIncomingResponse, ErrorCode>(() => handle(request, undefined));
  if ('err' in sent) {
    outgoingBody[Symbol.dispose]();
    throw fromCode(sent.err, target);
  }
  const future = sent.ok;
  try {
    writeBody(outgoingBody, body ?? new Uint8Array(0), target);
  } catch (writeErr) {
    // The host may have refused or failed the request meanwhile; its reason beats "stream closed".
    const outcome = witCall<IncomingResponse, HttpError>(() => wait(future, target));
    throw 'err' in outcome ? outcome.err : writeErr;
  }
  const response = wait(future, target);
  future[Symbol.dispose]();
  return readResponse(response, target);
}

function buildRequest(
  m: Method,
  target: Target,
  headers: ReadonlyArray<readonly [string, string]>,
  body: Uint8Array | undefined,
): OutgoingRequest {
  const fields = new Fields();
  const all = body === undefined ? [...headers] : [...headers, ['content-length', String(body.length)] as const];
  const encoder = new TextEncoder();
  for (const [name, value] of all) {
    const appended = witCall<void, { tag: string }>(() => fields.append(name, encoder.encode(value)));
    if ('err' in appended) {
      throw new HttpError('transport', `header \`${name}\` rejected: ${appended.err.tag}`);
    }
  }
  const request = new OutgoingRequest(fields);
  const set = (part: string, f: () => void) => {
    if ('err' in witCall<void, void>(f)) {
      throw new HttpError('invalid-url', `invalid URL: ${target.original}: ${part} rejected`);
    }
  };
  set('method', () => request.setMethod(m));
  set('scheme', () => request.setScheme(target.scheme));
  set('authority', () => request.setAuthority(target.authority));
  set('path', () => request.setPathWithQuery(target.pathWithQuery));
  return request;
}

function writeBody(outgoing: OutgoingBody, bytes: Uint8Array, target: Target): void {
  const stream = outgoing.write();
  try {
    for (let at = 0; at < bytes.length; at += MAX_WRITE_CHUNK) {
      const chunk = bytes.subarray(at, at + MAX_WRITE_CHUNK);
      const written = witCall<void, StreamError>(() => stream.blockingWriteAndFlush(chunk));
      if ('err' in written) throw fromStream(written.err, target);
    }
  } finally {
    stream[Symbol.dispose]();
  }
  const finished = witCall<void, ErrorCode>(() => OutgoingBody.finish(outgoing, undefined));
  if ('err' in finished) throw fromCode(finished.err, target);
}

function wait(future: FutureIncomingResponse, target: Target): IncomingResponse {
  const pollable = future.subscribe();
  let outcome = future.get();
  while (outcome === undefined) {
    pollable.block();
    outcome = future.get();
  }
  pollable[Symbol.dispose]();
  if (outcome.tag === 'err') throw new HttpError('transport', 'response already taken');
  if (outcome.val.tag === 'err') throw fromCode(outcome.val.val, target);
  return outcome.val.val;
}

function readResponse(response: IncomingResponse, target: Target): RawResponse {
  const status = response.status();
  const headerFields = response.headers();
  const headers = headerFields.entries().map(([name, value]): [string, Uint8Array] => [name.toLowerCase(), value]);
  headerFields[Symbol.dispose]();
  const incoming = response.consume();
  const body = readBody(incoming, target);
  IncomingBody.finish(incoming)[Symbol.dispose]();
  response[Symbol.dispose]();
  return { status, headers, body };
}

function readBody(incoming: IncomingBody, target: Target): Uint8Array {
  const stream = incoming.stream();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const read = witCall<Uint8Array, StreamError>(() => stream.blockingRead(READ_CHUNK));
      if ('err' in read) {
        if (read.err.tag === 'closed') break;
        throw fromStream(read.err, target);
      }
      chunks.push(read.ok);
      total += read.ok.length;
    }
  } finally {
    stream[Symbol.dispose]();
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}

function fromCode(code: ErrorCode, target: Target): HttpError {
  // Both are the host's refusal: the URL, or the address it resolves to, is not granted.
  if (code.tag === 'HTTP-request-denied' || code.tag === 'destination-IP-prohibited') {
    return new HttpError(
      'denied',
      `HTTP request to ${target.original} denied by the host: declare it in spec.capabilities.http`,
    );
  }
  const detail = 'val' in code && code.val !== undefined ? ` ${JSON.stringify(code.val, bigintToString)}` : '';
  return new HttpError('transport', `HTTP transport error: ${code.tag}${detail}`);
}

function fromStream(e: StreamError, target: Target): HttpError {
  if (e.tag === 'closed') return new HttpError('transport', 'HTTP transport error: stream closed');
  const code = httpErrorCode(e.val);
  const message = code === undefined ? e.val.toDebugString() : undefined;
  e.val[Symbol.dispose]();
  return code === undefined ? new HttpError('transport', `HTTP transport error: ${message}`) : fromCode(code, target);
}

function bigintToString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
