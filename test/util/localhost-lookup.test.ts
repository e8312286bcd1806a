/**
 * `*.localhost` names reach loopback without /etc/hosts (RFC 6761 § 6.3), as in browsers: the local
 * mesh's `idp.localhost` and `backoffice.localhost` depend on it. Other names, and names that only
 * look like localhost, go to the system resolver.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { createServer } from 'node:net';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { isLocalhostName, localhostLookup } from '../../src/util/localhost-lookup.js';

const one = (name: string, options: object = {}) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number }>((r) =>
    localhostLookup(name, options, (err, address, family) => r({ err, address, family })),
  );

describe('localhostLookup', () => {
  it('answers localhost names with loopback, in the shapes net and undici ask for', async () => {
    expect(await one('idp.localhost')).toMatchObject({ err: null, address: '127.0.0.1', family: 4 });
    expect(await one('A.B.LocalHost.')).toMatchObject({ address: '127.0.0.1' });
    expect(await one('backoffice.localhost', { all: true })).toMatchObject({
      address: [{ address: '127.0.0.1', family: 4 }],
    });
    expect(await one('x.localhost', { family: 6 })).toMatchObject({ address: '::1', family: 6 });
  });

  it('leaves other names to the system resolver (no look-alikes on loopback)', async () => {
    for (const name of ['localhost.example.com', 'evil-localhost', 'xlocalhost', 'localhost.evil.test']) {
      expect(isLocalhostName(name), name).toBe(false);
    }
    const viaSystem = await new Promise<string | undefined>((r) =>
      dnsLookup('localhost.invalid', (err, a) => r(err ? err.code : a)),
    );
    const ours = await one('localhost.invalid');
    expect(ours.err?.code ?? ours.address).toBe(viaSystem);
  });

  it('connects a socket to a loopback listener by a *.localhost name', async () => {
    const server = createServer((s) => s.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: 'app.localhost', port, lookup: localhostLookup as never });
        let data = '';
        s.on('data', (d) => (data += d));
        s.on('end', () => resolve(data));
        s.on('error', reject);
      });
      expect(got).toBe('hi');
    } finally {
      server.close();
    }
  });
});
