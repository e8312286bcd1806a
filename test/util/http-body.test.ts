import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BodyError, readFormBody, readJsonBody } from '../../src/util/http-body.js';

/** A real server whose handler reads the body as `?as=json|form` with a 64-byte limit and 300 ms. */
let server: Server;
let port = 0;

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const as = new URL(req.url ?? '/', 'http://x').searchParams.get('as');
    try {
      const opts = { limit: 64, timeoutMs: 300 };
      const v = as === 'form' ? Object.fromEntries(await readFormBody(req, opts)) : await readJsonBody(req, opts);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ v: v ?? null }));
    } catch (e) {
      const b = e as BodyError;
      res
        .writeHead(b.status, { 'content-type': 'application/json', connection: 'close' })
        .end(JSON.stringify({ error: b.reason, code: b.code }));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});
afterAll(() => server.close());

/** Sends `chunks` (with a pause between them) and returns the answer; a hang-up rejects. */
function send(
  path: string,
  chunks: string[],
  headers: Record<string, string> = {},
  pauseMs = 0,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    (async () => {
      for (const c of chunks) {
        if (req.destroyed) return;
        req.write(c);
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
      req.end();
    })().catch(reject);
  });
}

describe('bounded request bodies', () => {
  it('reads JSON and forms within the limit; an empty JSON body is undefined', async () => {
    expect(await send('/?as=json', ['{"a":', '1}'])).toEqual({ status: 200, body: { v: { a: 1 } } });
    expect(await send('/?as=json', [])).toEqual({ status: 200, body: { v: null } });
    const form = await send('/?as=form', ['csrf=abc&x=1'], { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form).toEqual({ status: 200, body: { v: { csrf: 'abc', x: '1' } } });
  });

  it('a body over the limit gets its 413 answer (the socket is not destroyed under the caller)', async () => {
    // Declared too long: refused before reading.
    const declared = await send('/?as=json', ['x'.repeat(100)], { 'content-length': '100' });
    expect(declared).toEqual({ status: 413, body: { error: 'body_too_large', code: 'ERR_BODY_TOO_LARGE' } });
    // Chunked, over the limit only after a few chunks.
    const streamed = await send('/?as=json', ['{"a":"', 'y'.repeat(40), 'y'.repeat(40), '"}'], {}, 20);
    expect(streamed).toEqual({ status: 413, body: { error: 'body_too_large', code: 'ERR_BODY_TOO_LARGE' } });
  });

  it('malformed JSON is 400 bad_json; a form of another type is 415; a slow body is 408', async () => {
    expect((await send('/?as=json', ['{"a":'])).body).toEqual({ error: 'bad_json', code: 'ERR_BODY_BAD_JSON' });
    const typed = await send('/?as=form', ['a=1'], { 'content-type': 'text/plain' });
    expect(typed).toEqual({ status: 415, body: { error: 'bad_form', code: 'ERR_BODY_BAD_FORM' } });
    const slow = await send('/?as=json', ['{', '"a"', ':1', '}'], {}, 200);
    expect(slow).toEqual({ status: 408, body: { error: 'body_timeout', code: 'ERR_BODY_TIMEOUT' } });
  });
});
