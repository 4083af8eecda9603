/**
 * Files under the directories the manifest grants (`spec.capabilities.filesystem`),
 * read-only unless the grant says otherwise. Paths are absolute guest paths
 * (`/runbooks/db.md`); the host confines every access to its mount, so `..`
 * and symlinks cannot leave it. (Rust agents use `std::fs`; JavaScript has no
 * file API of its own here, so this module is it.)
 *
 * ```ts
 * const runbook = fs.readText('/runbooks/db.md');
 * ```
 */

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import type { Descriptor, ErrorCode } from 'wasi:filesystem/types@0.2.12';
import { AgentError, SdkError } from './task.js';
import { witCall } from './wit-error.js';

/** Bytes asked for per read call. */
const READ_CHUNK = 64n * 1024n;

/**
 * `not-granted` when no granted directory contains the path (or it is not
 * absolute); otherwise the WIT `filesystem.error-code` the host answered
 * (`no-entry`, `read-only`, `not-permitted`, ...).
 */
export type FsErrorCode = ErrorCode | 'not-granted';

export class FsError extends SdkError {
  constructor(
    readonly code: FsErrorCode,
    /** The path the agent asked for. */
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'FsError';
  }

  /** Refusals by the sandbox are `capability-denied`; other failures `upstream`. */
  toAgentError(): AgentError {
    const refused = ['not-granted', 'access', 'not-permitted', 'read-only'].includes(this.code);
    return refused ? AgentError.capabilityDenied(this.message) : AgentError.upstream(this.message);
  }
}

/** The bytes of the file at `path`. */
export function readFile(path: string): Uint8Array {
  return withFile(path, { read: true }, {}, (file) => {
    const chunks: Uint8Array[] = [];
    let offset = 0n;
    for (;;) {
      const [chunk, end] = call(path, () => file.read(READ_CHUNK, offset));
      chunks.push(chunk);
      offset += BigInt(chunk.length);
      if (end || chunk.length === 0) break;
    }
    return concat(chunks);
  });
}

/** The file at `path` decoded as UTF-8 (invalid bytes replaced). */
export function readText(path: string): string {
  return new TextDecoder().decode(readFile(path));
}

/** Creates or replaces the file at `path` with `data` (a string is written as UTF-8). */
export function writeFile(path: string, data: Uint8Array | string): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  withFile(path, { write: true }, { create: true, truncate: true }, (file) => {
    let offset = 0;
    while (offset < bytes.length) {
      const written = call(path, () => file.write(bytes.subarray(offset), BigInt(offset)));
      offset += Number(written);
    }
  });
}

/** Opens `path` in the preopen that contains it, runs `f` on it, then closes every handle. */
function withFile<T>(
  path: string,
  flags: { read?: boolean; write?: boolean },
  open: { create?: boolean; truncate?: boolean },
  f: (file: Descriptor) => T,
): T {
  const preopens = getDirectories();
  try {
    const found = locate(path, preopens);
    const file = call(path, () => found.dir.openAt({ symlinkFollow: true }, found.relative, open, flags));
    try {
      return f(file);
    } finally {
      file[Symbol.dispose]();
    }
  } finally {
    for (const [dir] of preopens) dir[Symbol.dispose]();
  }
}

/**
 * The preopen whose guest path is the longest whole-component prefix of
 * `path`, and the rest of `path` relative to it. `..` is left to the host,
 * which refuses any step out of the mount.
 */
function locate(path: string, preopens: Array<[Descriptor, string]>): { dir: Descriptor; relative: string } {
  if (!path.startsWith('/')) {
    throw new FsError('not-granted', path, `${path}: not an absolute path (agents have no working directory)`);
  }
  let best: { dir: Descriptor; relative: string; len: number } | undefined;
  for (const [dir, guest] of preopens) {
    const root = guest.replace(/\/+$/, '');
    if (path !== root && !path.startsWith(`${root}/`)) continue;
    if (best !== undefined && best.len >= root.length) continue;
    const relative = path.slice(root.length).replace(/^\/+/, '') || '.';
    best = { dir, relative, len: root.length };
  }
  if (best === undefined) {
    const granted = preopens.map(([, g]) => g).join(', ') || 'none';
    throw new FsError(
      'not-granted',
      path,
      `${path}: not under a granted directory (granted: ${granted}); declare it in spec.capabilities.filesystem`,
    );
  }
  return best;
}

function call<T>(path: string, f: () => T): T {
  const r = witCall<T, ErrorCode>(f);
  if ('err' in r) throw new FsError(r.err, path, `${path}: ${r.err}`);
  return r.ok;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
