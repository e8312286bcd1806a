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
  };
  methods: string[];
}
const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as ParserModule;

/** Request or response heads over this size are refused (node:http's default). */
export const MAX_HEAD = 16 * 1024;

/** A message head as the parser completes it: request (method, url) or response (status, message). */
export interface ParsedHead {
  httpMinor: number;
  httpMajor: number;
  /** Raw header pairs, name then value, as received (latin1). */
  raw: string[];
  method: string;
  url: string;
  status: number;
  message: string;
  upgrade: boolean;
  keepAlive: boolean;
}

export interface ParserHandlers {
  onBegin?(): void;
  /** Returns llhttp's answer: 0 a body may follow, 1 no body (HEAD), 2 no body and an upgrade. */
  onHead(head: ParsedHead): number;
  onBody(b: Buffer): void;
  onEnd(): void;
}

/**
 * A strict llhttp parser for requests or responses. A head that arrives in pieces (llhttp hands
 * long heads over in parts before completing them) is put back together here.
 */
export function createParser(kind: 'request' | 'response', h: ParserHandlers): NativeParser {
  const p = new HTTPParser();
  p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, MAX_HEAD, 0);
  let partRaw: string[] = [];
  let partUrl = '';
  if (h.onBegin) p[HTTPParser.kOnMessageBegin] = h.onBegin;
  p[HTTPParser.kOnHeaders] = ((headers: string[], url: string) => {
    for (const x of headers) partRaw.push(x);
    partUrl += url;
  }) as never;
  p[HTTPParser.kOnHeadersComplete] = ((
    httpMajor: number,
    httpMinor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    status: number,
    message: string,
    upgrade: boolean,
    keepAlive: boolean,
  ) => {
    const head: ParsedHead = {
      httpMajor,
      httpMinor,
      raw: headers ?? partRaw,
      method: methods[method] ?? 'GET',
      url: url ?? partUrl,
      status,
      message,
      upgrade,
      keepAlive,
    };
    partRaw = [];
    partUrl = '';
    return h.onHead(head);
  }) as never;
  p[HTTPParser.kOnBody] = h.onBody as never;
  p[HTTPParser.kOnMessageComplete] = h.onEnd as never;
  return p;
}
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
