/**
 * Splitting a URL into the parts `wasi:http` wants: scheme, authority and
 * path-with-query. Deliberately strict: no user info, no whitespace.
 */

import type { Scheme } from 'wasi:http/types@0.2.12';
import { HttpError } from './error.js';

/** A request target split into its `wasi:http` parts. */
export interface Target {
  /** The URL as the agent gave it (for error messages). */
  original: string;
  scheme: Scheme;
  authority: string;
  pathWithQuery: string;
}

/** Parses `scheme://authority[/path][?query][#fragment]`; the fragment is dropped. */
export function parseUrl(url: string): Target {
  const invalid = (why: string) => new HttpError('invalid-url', `invalid URL: ${JSON.stringify(url)}: ${why}`);
  if (/[\s\x00-\x1f\x7f]/.test(url)) throw invalid('contains whitespace or control characters');
  const sep = url.indexOf('://');
  if (sep < 0) throw invalid('missing scheme://');
  const schemeName = url.slice(0, sep).toLowerCase();
  const rest = url.slice(sep + 3);
  let scheme: Scheme;
  if (schemeName === 'http') scheme = { tag: 'HTTP' };
  else if (schemeName === 'https') scheme = { tag: 'HTTPS' };
  else if (schemeName === '') throw invalid('empty scheme');
  else scheme = { tag: 'other', val: schemeName };
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  let tail = end < 0 ? '' : rest.slice(end);
  if (authority === '') throw invalid('missing host');
  if (authority.includes('@')) {
    throw invalid('user info in URLs is not supported; send credentials in a header');
  }
  const hash = tail.indexOf('#');
  if (hash >= 0) tail = tail.slice(0, hash);
  const pathWithQuery = tail === '' ? '/' : tail.startsWith('?') ? `/${tail}` : tail;
  return { original: url, scheme, authority, pathWithQuery };
}

/**
 * Percent-encodes `s` for use as one query value or path segment: every
 * UTF-8 byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`)
 * becomes `%XX`.
 */
export function encodeComponent(s: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9._~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
