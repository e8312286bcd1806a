/**
 * The agent reads the sync stream through its contract (src/api/sync.ts): a server (here a real TLS
 * agent port with the server's SVID from a real CA) that sends a malformed message gets it refused
 * with the field named, and the agent keeps the entries, SVIDs and cache it had.
 */
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { entryToWire, type RegistrationEntry, signRequestSchema, svidToWire, syncLine } from '../../src/api/index.js';
import { certificatesToPem } from '../../src/ca/index.js';
import { serverSpiffeId } from '../../src/spiffe/index.js';
import { createLogger } from '../../src/util/logger.js';
import { newCa, TD } from './fixtures.js';
import { sharedTempDir } from './peer.js';

const AGENT_ID = `spiffe://${TD}/spire/agent/join_token/contract`;
const UID = process.getuid?.() ?? 0;

async function until<T>(fn: () => T | undefined | false, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('agent sync stream contract', () => {
  let server: Server | undefined;
  let agent: NodeAgent | undefined;
  afterAll(async () => {
    await agent?.stop();
    server?.closeAllConnections();
    server?.close();
  });

  it('a malformed state or policy message is refused, naming the field; the agent keeps what it holds', async () => {
    const ca = await newCa();
    const serverSvid = ca.mintX509Svid({ spiffeId: serverSpiffeId(TD) });
    const agentSvid = ca.mintX509Svid({ spiffeId: AGENT_ID });
    const dir = join(sharedTempDir(), 'agent');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'agent-svid.pem'), certificatesToPem(agentSvid.chain), { mode: 0o600 });
    writeFileSync(join(dir, 'agent-svid.key'), agentSvid.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      mode: 0o600,
    });

    const now = Date.now();
    const entry: RegistrationEntry = {
      id: '0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f',
      spiffeId: `spiffe://${TD}/ns/payments/sa/api`,
      parentId: AGENT_ID,
      selectors: [`unix:uid:${UID}`],
      x509SvidTtl: 3600,
      jwtSvidTtl: 300,
      dnsNames: [],
      hint: '',
      admin: false,
      expiresAt: null,
      revision: 1,
      createdAt: now,
      updatedAt: now,
    };
    const bundle = ca.bundle().toJwks();
    let stream: ServerResponse | undefined;
    server = createServer(
      {
        cert: certificatesToPem(serverSvid.chain),
        key: serverSvid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
        requestCert: true,
        rejectUnauthorized: false,
      },
      async (req, res) => {
        if (req.url === '/agent/v1/sync') {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.write(syncLine({ type: 'state', entries: [entryToWire(entry)], bundle }));
          stream = res;
          return;
        }
        if (req.url === '/agent/v1/sign') {
          const chunks: Buffer[] = [];
          for await (const c of req) chunks.push(c as Buffer);
          const { requests } = signRequestSchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          const results = await Promise.all(
            requests.map(async (r) => ({
              entry_id: r.entry_id,
              ...svidToWire(await ca.signX509SvidFromCsrAsync({ csr: r.csr, spiffeId: entry.spiffeId })),
            })),
          );
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results }));
          return;
        }
        res.writeHead(404).end('{}');
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;

    const log = new PassThrough();
    let logged = '';
    log.on('data', (c: Buffer) => {
      logged += c.toString('utf8');
    });
    agent = new NodeAgent({
      serverUrl: `https://127.0.0.1:${port}`,
      trustDomain: TD,
      trustBundlePem: ca.bundle().toPem(),
      dir,
      socketPath: join(sharedTempDir(), 'contract.sock'),
      logger: createLogger('info', log),
    });
    await agent.start();
    const caller = [{ type: 'unix', value: `uid:${UID}` }];
    const served = await until(() => agent?.identitiesFor(caller)[0], 'the SVID of the synced entry');
    expect(served.spiffeId).toBe(entry.spiffeId);
    const cacheFile = join(dir, 'cache.json');
    await until(() => {
      try {
        return JSON.parse(readFileSync(cacheFile, 'utf8')).entries.length === 1;
      } catch {
        return false;
      }
    }, 'the cache');

    // Selectors as a string instead of a list: cast blindly, the agent would hold an entry that
    // matches nobody (or throws while matching), and drop the workload's identity.
    const bad = { ...entryToWire(entry), selectors: `unix:uid:${UID}` };
    stream?.write(`${JSON.stringify({ type: 'state', entries: [bad], bundle })}\n`);
    stream?.write(`${JSON.stringify({ type: 'policy', policy: { version: 'v1', policies: 'everything' } })}\n`);
    stream?.write(syncLine({ type: 'ping' }));
    await until(() => logged.includes('policy.policies'), 'the refusal of the policy message');
    expect(logged).toMatch(/sync message: entries\.0\.selectors: .*refused, what the agent holds stays as it was/);
    expect(logged).toMatch(/sync message: policy\.policies: /);
    // Still connected, still serving the same identity, and the cache still holds the good entry.
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.connected).toBe(true);
    expect(agent.identitiesFor(caller).map((i) => i.spiffeId)).toEqual([entry.spiffeId]);
    const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { entries: { selectors: unknown }[] };
    expect(cached.entries[0]?.selectors).toEqual([`unix:uid:${UID}`]);
  });
});
