/**
 * Key-value state that outlives the invocation (`spec.capabilities.keyValue`,
 * `wasi:keyvalue` store and atomics).
 *
 * The host scopes every key to the agent (and its namespace) and makes an
 * invocation's writes one transaction: visible to later invocations only if
 * `run` returns an output; a trap, a thrown error or a timeout leaves nothing.
 * Reads see the invocation's own writes. Counters are kept the way the host
 * stores them: 8-byte little-endian u64, as `bigint`.
 *
 * ```ts
 * const handled = kv.Store.open('handled'); // unlisted bucket -> KvError 'denied'
 * if (handled.getJson('alert-42') === undefined) handled.setJson('alert-42', { tool: 'create_ticket' });
 * const seen = handled.increment('alerts-seen'); // bigint
 * ```
 */

import { increment as witIncrement } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { open as witOpen, type Bucket, type Error as WitError, type KeyResponse } from 'wasi:keyvalue/store@0.2.0-draft';
import { AgentError, SdkError } from './task.js';
import { witCall } from './wit-error.js';

/**
 * The cases of {@link KvError}:
 * - `denied`: no `spec.capabilities.keyValue` grant, or the bucket is not in its `buckets`.
 * - `no-such-store`: the host does not know the bucket.
 * - `host`: the host refused or failed the operation (quota, key length, backend); its message.
 * - `json`: a value could not be encoded as JSON, or the stored bytes are not JSON.
 * - `not-a-counter`: the key holds something other than an 8-byte counter.
 */
export type KvErrorKind = 'denied' | 'no-such-store' | 'host' | 'json' | 'not-a-counter';

export class KvError extends SdkError {
  constructor(
    readonly kind: KvErrorKind,
    /** The bucket operated on. */
    readonly bucket: string,
    message: string,
  ) {
    super(message);
    this.name = 'KvError';
  }

  /**
   * `denied` and `no-such-store` are `capability-denied` (fix the manifest);
   * stored data that does not fit the agent's types is `internal`; what the
   * host refused or failed is `upstream`.
   */
  toAgentError(): AgentError {
    switch (this.kind) {
      case 'denied':
      case 'no-such-store':
        return AgentError.capabilityDenied(this.message);
      case 'json':
      case 'not-a-counter':
        return AgentError.internal(this.message);
      case 'host':
        return AgentError.upstream(this.message);
    }
  }
}

/** The one mapping from `wasi:keyvalue` errors to {@link KvError}. */
function hostError(bucket: string, e: WitError): KvError {
  switch (e.tag) {
    case 'access-denied':
      return new KvError(
        'denied',
        bucket,
        `key-value bucket \`${bucket}\` denied by the host: grant it in spec.capabilities.keyValue (and its buckets list)`,
      );
    case 'no-such-store':
      return new KvError('no-such-store', bucket, `key-value bucket \`${bucket}\` does not exist on this host`);
    case 'other':
      return new KvError('host', bucket, `key-value bucket \`${bucket}\`: ${e.val}`);
  }
}

const U64_MAX = (1n << 64n) - 1n;

/** An open bucket of the agent's key-value state. */
export class Store {
  private constructor(
    private readonly bucket: Bucket,
    /** The bucket's name. */
    readonly name: string,
  ) {}

  /** Opens `bucket`; a {@link KvError} `denied` without the grant or outside its `buckets`. */
  static open(bucket: string): Store {
    const opened = witCall<Bucket, WitError>(() => witOpen(bucket));
    if ('err' in opened) throw hostError(bucket, opened.err);
    return new Store(opened.ok, bucket);
  }

  private call<T>(f: () => T): T {
    const r = witCall<T, WitError>(f);
    if ('err' in r) throw hostError(this.name, r.err);
    return r.ok;
  }

  /** The bytes at `key`, or `undefined` if it is absent. */
  get(key: string): Uint8Array | undefined {
    return this.call(() => this.bucket.get(key));
  }

  /** Stores `value` (a string is stored as UTF-8) at `key`, replacing any previous value. */
  set(key: string, value: Uint8Array | string): void {
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    this.call(() => this.bucket.set(key, bytes));
  }

  /** Removes `key`; removing an absent key is not an error. */
  delete(key: string): void {
    this.call(() => this.bucket.delete(key));
  }

  /** Whether `key` holds a value. */
  exists(key: string): boolean {
    return this.call(() => this.bucket.exists(key));
  }

  /** Every key in the bucket, following the host's pages to the end. */
  keys(): string[] {
    return allPages(this.name, (cursor) => this.call(() => this.bucket.listKeys(cursor)));
  }

  /** The JSON value at `key`, or `undefined` if absent; `json` error if it is not JSON. */
  getJson<T = unknown>(key: string): T | undefined {
    const bytes = this.get(key);
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as T;
    } catch (e) {
      throw this.jsonError(key, `stored value is not the expected JSON: ${(e as Error).message}`);
    }
  }

  /** Stores `value` serialised as JSON at `key`. */
  setJson(key: string, value: unknown): void {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      throw this.jsonError(key, `cannot encode value as JSON: ${(e as Error).message}`);
    }
    if (text === undefined) throw this.jsonError(key, `cannot encode ${typeof value} as JSON`);
    this.set(key, text);
  }

  /**
   * Adds `delta` (a non-negative integer) to the counter at `key` (absent
   * counts as 0) and returns the value this invocation sees. Increments
   * commute: invocations that only increment a key never conflict. The host
   * wraps on overflow; a key holding anything but a counter is a `host` error.
   */
  increment(key: string, delta: bigint | number = 1n): bigint {
    const d = BigInt(delta);
    if (d < 0n || d > U64_MAX) {
      throw new RangeError(`increment of \`${key}\` by ${d}: the delta must be a u64 (0 to 2^64-1)`);
    }
    return this.call(() => witIncrement(this.bucket, key, d));
  }

  /** The counter at `key` as {@link increment} left it (absent is 0); `not-a-counter` otherwise. */
  counter(key: string): bigint {
    const bytes = this.get(key);
    if (bytes === undefined) return 0n;
    if (bytes.length !== 8) {
      throw new KvError(
        'not-a-counter',
        this.name,
        `key-value bucket \`${this.name}\`, key \`${key}\`: holds ${bytes.length} bytes, not an 8-byte little-endian u64 counter`,
      );
    }
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  }

  /**
   * Releases the bucket's handle now rather than when the instance ends
   * (handles count against `spec.limits.maxResources`). Also `using store = ...`.
   */
  close(): void {
    this.bucket[Symbol.dispose]();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private jsonError(key: string, message: string): KvError {
    return new KvError('json', this.name, `key-value bucket \`${this.name}\`, key \`${key}\`: ${message}`);
  }
}

/**
 * Concatenates the pages `listKeys` returns from the first (`undefined`)
 * cursor on. A cursor that does not move forward is an error, not an endless loop.
 */
export function allPages(bucket: string, listKeys: (cursor: bigint | undefined) => KeyResponse): string[] {
  const keys: string[] = [];
  let cursor: bigint | undefined;
  for (;;) {
    const page = listKeys(cursor);
    keys.push(...page.keys);
    if (page.cursor === undefined) return keys;
    if (cursor !== undefined && page.cursor <= cursor) {
      throw new KvError(
        'host',
        bucket,
        `key-value bucket \`${bucket}\`: list-keys returned cursor ${page.cursor}, which does not advance past ${cursor}`,
      );
    }
    cursor = page.cursor;
  }
}
