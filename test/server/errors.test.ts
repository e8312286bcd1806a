/**
 * The one error mapping of the API ports (router.ts dispatch()): a caller's error answers its status,
 * reason and message; an internal one answers 500 without its message, which goes to the log.
 * Real server, real CA with real worker threads, real TLS on the agent port.
 */
import { generateKeyPairSync } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createCsr, csrToPem, SigningPool } from '../../src/ca/index.js';
import { configSchema } from '../../src/config/index.js';
import { CaError } from '../../src/ca/errors.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { agentEndpointPlugin } from '../../src/server/plugins/agent-endpoint.js';
import { caPlugin } from '../../src/server/plugins/ca.js';
import { errorAnswer, HttpError } from '../../src/server/router.js';
import { createLogger } from '../../src/util/logger.js';
import { tempDir } from '../support/tmp.js';

const servers: RunningServer[] = [];
const pools: SigningPool[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
  for (const p of pools) await p.close();
});

/** A logger whose lines are kept, to check that the internal details went there. */
function capturingLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger('error', sink), lines };
}

/** An HTTP/1.1 request with a chunked body (no content-length), sent in pieces of `piece` bytes. */
function chunkedPost(
  url: string,
  headers: Record<string, string>,
  total: number,
  piece = 64 * 1024,
  tls?: { ca?: string; rejectUnauthorized?: boolean },
): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = make(
      u,
      { method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' }, ...(tls ?? {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(piece, total - sent);
        sent += n;
        if (!req.write(Buffer.alloc(n, 0x61))) return void req.once('drain', pump);
      }
      req.end();
    };
    // The server may answer (and close) before the whole body is sent; stop writing then.
    req.on('response', () => (sent = total));
    pump();
  });
}

describe('one error mapping', () => {
  it('errorAnswer: caller errors keep status, reason and message; internal ones say nothing', () => {
    expect(errorAnswer(new HttpError(409, 'conflict', 'changed', { id: 'x' }))).toEqual({
      status: 409,
      body: { error: 'conflict', message: 'changed', id: 'x' },
      log: false,
    });
    expect(errorAnswer(new CaError('ERR_CA_INVALID_TTL', 'ttl too long'))).toMatchObject({
      status: 400,
      body: { error: 'ca_invalid_ttl', message: 'ttl too long' },
    });
    for (const e of [
      new CaError('ERR_CA_STATE_CORRUPT', 'sealed key /var/x unreadable'),
      new Error('db at 10.0.0.1'),
    ]) {
      const a = errorAnswer(e);
      expect(a).toEqual({ status: 500, body: { error: 'internal', message: 'internal error' }, log: true });
    }
  });

  it('CA signing route: a closed signer is a 500 without the internal message (logged); a bad CSR is still 400', async () => {
    const dataDir = tempDir();
    const pool = new SigningPool({ size: 1 });
    pools.push(pool);
    const { logger, lines } = capturingLogger();
    const server = await startServer({
      config: configSchema.parse({ data_dir: dataDir, server: { port: 0 } }),
      logger,
      plugins: [caPlugin({ signingPool: pool })],
    });
    servers.push(server);
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const post = async (body: unknown) => {
      const res = await fetch(`${server.url}/v1/admin/x509/sign`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { error: string; message: string } };
    };
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = csrToPem(createCsr(privateKey));
    const spiffe_id = 'spiffe://example.org/ns/a/sa/b';

    expect((await post({ csr, spiffe_id })).status).toBe(200);

    // Caller errors: the status and the reason, as before.
    const broken = await post({
      csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      spiffe_id,
    });
    expect(broken.status).toBe(400);
    expect(broken.body.error).toMatch(/^csr_/);
    expect(broken.body.message.length).toBeGreaterThan(0);
    const foreign = await post({ csr, spiffe_id: 'spiffe://evil.org/x' });
    expect(foreign).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    const badId = await post({ csr, spiffe_id: 'not a spiffe id' });
    expect(badId).toMatchObject({ status: 400, body: { error: 'invalid_request' } });

    // An internal failure: the signer is gone. Was 400 with "the CA signing pool is closed".
    await pool.close();
    const internal = await post({ csr, spiffe_id });
    expect(internal).toEqual({ status: 500, body: { error: 'internal', message: 'internal error' } });
    expect(lines.join('')).toContain('the CA signing pool is closed');
  });

  it('413 body_too_large for a chunked upload over the limit on the admin API, and on the agent port', async () => {
    const dataDir = tempDir();
    const ca = caPlugin();
    const agent = agentEndpointPlugin({ ca: ca.handle });
    const server = await startServer({
      config: configSchema.parse({ data_dir: dataDir, server: { port: 0, agent_port: 0 } }),
      logger: createLogger('silent'),
      plugins: [ca, agent],
    });
    servers.push(server);
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();

    // Admin API (1 MiB limit): was a connection reset.
    const admin = await chunkedPost(`${server.url}/v1/admin/x509/sign`, { authorization: `Bearer ${token}` }, 3 << 20);
    expect(admin.status).toBe(413);
    expect(JSON.parse(admin.body)).toMatchObject({ error: 'body_too_large' });
    expect(admin.connection).toBe('close');

    // Agent port (64 KiB limit on attest): was a 500.
    const agentUrl = `https://127.0.0.1:${agent.address()?.port}/agent/v1/attest`;
    for (const total of [256 * 1024, 8 << 20]) {
      const r = await chunkedPost(agentUrl, {}, total, 16 * 1024, { rejectUnauthorized: false });
      expect(r.status).toBe(413);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'body_too_large' });
    }
    // A declared content-length over the limit: 413 too, with the same reason.
    const declared = await fetch(`${server.url}/v1/admin/x509/sign`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: 'x'.repeat(2 << 20),
    });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toMatchObject({ error: 'body_too_large' });
    // The server still answers afterwards.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('warns about a data dir open to group or others; traverse-only 0711 is fine', async () => {
    for (const [mode, warned] of [
      [0o755, true],
      [0o777, true],
      [0o711, false],
      [0o700, false],
    ] as const) {
      const dataDir = join(tempDir(), 'data');
      mkdirSync(dataDir);
      chmodSync(dataDir, mode);
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      });
      const server = await startServer({
        config: configSchema.parse({ data_dir: dataDir, server: { port: 0 } }),
        logger: createLogger('warn', sink),
      });
      await server.close();
      const warning = lines.find((l) => l.includes('open to group or others'));
      expect(Boolean(warning), mode.toString(8)).toBe(warned);
      if (warned) expect(warning).toContain(`chmod 700 ${dataDir}`);
    }
  });
});
