/**
 * Primitive matching: Istio's exact/prefix/suffix/presence strings, ports and CIDR blocks.
 * A missing value (`undefined`) never satisfies a positive matcher.
 */
import type { Cidr, StringMatcher } from './model.js';

/**
 * @example
 * matchString({ kind: 'prefix', value: '/v1/' }, '/v1/charges') // true
 * matchString({ kind: 'presence' }, '')                           // false: presence means non-empty
 */
export function matchString(m: StringMatcher, v: string | undefined): boolean {
  if (v === undefined) return false;
  switch (m.kind) {
    case 'exact':
      return v === m.value;
    case 'prefix':
      return v.startsWith(m.value);
    case 'suffix':
      return v.endsWith(m.value);
    case 'presence':
      return v !== '';
  }
}

/** True when any matcher matches `v`. */
export function matchAny(ms: readonly StringMatcher[], v: string | undefined): boolean {
  for (const m of ms) if (matchString(m, v)) return true;
  return false;
}

/** True when any matcher matches any of `vs` (list-valued claims and audiences). */
export function matchAnyOf(ms: readonly StringMatcher[], vs: readonly string[]): boolean {
  for (const v of vs) if (matchAny(ms, v)) return true;
  return false;
}

type ParsedIp = Readonly<{ family: 4 | 6; value: bigint }>;
/** Recently parsed addresses: a service sees the same few callers request after request. */
const recentIps = new Map<string, ParsedIp | undefined>();
const RECENT_IPS = 1024;

/** Parses an IPv4 or IPv6 address into family and bigint value; `undefined` when it is not one. */
export function parseIp(s: string): ParsedIp | undefined {
  const known = recentIps.get(s);
  if (known !== undefined || recentIps.has(s)) return known;
  const parsed = parseIpUncached(s);
  if (recentIps.size >= RECENT_IPS) recentIps.clear();
  recentIps.set(s, parsed);
  return parsed;
}

function parseIpUncached(s: string): ParsedIp | undefined {
  if (s.includes(':')) return parseIpv6(s);
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return { family: 4, value: v };
}

function parseIpv6(s: string): { family: 6; value: bigint } | undefined {
  let str = s;
  const pct = str.indexOf('%');
  if (pct >= 0) str = str.slice(0, pct); // zone ids do not take part in matching
  // An embedded IPv4 tail (`::ffff:1.2.3.4`) is rewritten as its two hex groups.
  const lastColon = str.lastIndexOf(':');
  const maybeV4 = str.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const v4 = parseIp(maybeV4);
    if (v4?.family !== 4) return undefined;
    str = `${str.slice(0, lastColon + 1)}${(v4.value >> 16n).toString(16)}:${(v4.value & 0xffffn).toString(16)}`;
  }
  const halves = str.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string | undefined): bigint[] | undefined => {
    if (h === undefined || h === '') return [];
    const out: bigint[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(BigInt(`0x${g}`));
    }
    return out;
  };
  const head = parse(halves[0]);
  const rest = parse(halves[1]);
  if (!head || !rest) return undefined;
  let groups: bigint[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<bigint>(fill).fill(0n), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  let v = 0n;
  for (const g of groups) v = (v << 16n) | g;
  return { family: 6, value: v };
}

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128). Host bits must be zero
 * so that a typo like `10.0.0.1/8` is caught at load time instead of silently widening.
 *
 * @example
 * parseCidr('10.0.0.0/8') // { family: 4, prefix: 8, … }
 */
export function parseCidr(text: string): Cidr | string {
  const [addr, bits, extra] = text.split('/');
  if (extra !== undefined || addr === undefined) return `invalid CIDR ${JSON.stringify(text)}`;
  const ip = parseIp(addr);
  if (!ip) return `invalid IP address ${JSON.stringify(addr)}`;
  const width = ip.family === 4 ? 32 : 128;
  let prefix = width;
  if (bits !== undefined) {
    if (!/^[0-9]{1,3}$/.test(bits) || Number(bits) > width) return `invalid prefix length in ${JSON.stringify(text)}`;
    prefix = Number(bits);
  }
  const hostMask = (1n << BigInt(width - prefix)) - 1n;
  if ((ip.value & hostMask) !== 0n) return `CIDR ${JSON.stringify(text)} has host bits set`;
  return { family: ip.family, network: ip.value, prefix, text };
}

/** True when the address lies in the block (an IPv4-mapped IPv6 address matches IPv4 blocks). */
export function cidrContains(c: Cidr, ip: { family: 4 | 6; value: bigint }): boolean {
  let { family, value } = ip;
  if (family === 6 && c.family === 4 && value >> 32n === 0xffffn) {
    family = 4;
    value &= 0xffffffffn;
  }
  if (family !== c.family) return false;
  const width = family === 4 ? 32 : 128;
  return value >> BigInt(width - c.prefix) === c.network >> BigInt(width - c.prefix);
}

/** True when any block contains the address. */
export function cidrAny(cs: readonly Cidr[], ip: { family: 4 | 6; value: bigint } | undefined): boolean {
  if (!ip) return false;
  for (const c of cs) if (cidrContains(c, ip)) return true;
  return false;
}
