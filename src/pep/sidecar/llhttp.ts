/**
 * Node's own HTTP/1.1 parser (llhttp, the one node:http uses) for the sidecar's HTTP/1.1 legs, and
 * header handling as node:http presents headers. Strict: no lenient flags are ever set.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';

/** Node's binding of llhttp (the parser node:http uses), as `_http_common` exports it. */
export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [callback: number]: ((...args: never[]) => unknown) | undefined;
}
interface ParserModule {
  HTTPParser: {
    new (): NativeParser;
    REQUEST: number;
    RESPONSE: number;
    kOnMessageBegin: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
  };
  methods: string[];
}
export const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as ParserModule;

/** Request or response heads over this size are refused (node:http's default). */
export const MAX_HEAD = 16 * 1024;
/** Headers whose repeats node:http discards (the first counts); the decision and the app see the same one. */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/** Raw header pairs as node:http would present them (lower-case names, repeats joined or dropped). */
export function headersFromRaw(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    const v = raw[i + 1] as string;
    const prev = out[k];
    if (prev === undefined) out[k] = k === 'set-cookie' ? [v] : v;
    else if (k === 'set-cookie') (prev as string[]).push(v);
    else if (SINGLE.has(k)) continue;
    else out[k] = `${prev}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out;
}
