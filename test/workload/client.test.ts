import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkloadApiServer } from '../../src/agent/workload-api.js';
import {
  backoffDelay,
  EndpointAddressError,
  JwtSource,
  jwtBundles,
  parseEndpointAddress,
  resolveEndpoint,
  validateJwtSvid,
  WorkloadApiError,
  X509Source,
  X509SourceError,
  type X509Context,
} from '../../src/workload/index.js';
import { newCa, TD, TestResolver } from '../agent/fixtures.js';
import { sharedTempDir } from '../agent/peer.js';

const ID = `spiffe://${TD}/ns/prod/sa/client`;
const dir = sharedTempDir();
const sock = join(dir, 'agent.sock');
const address = `unix://${sock}`;
let resolver: TestResolver;
let server: WorkloadApiServer;

beforeAll(async () => {
  resolver = new TestResolver(await newCa());
  resolver.add(ID, ['unix:uid:0']);
  server = new WorkloadApiServer({ socketPath: sock, resolver });
  await server.start();
});
afterAll(async () => {
  await server.close();
});

function nextUpdate(source: X509Source, timeoutMs = 5000): Promise<X509Context> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no update')), timeoutMs);
    source.once('update', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
}

const serial = (s: X509Source) => s.svid.certChain[0]?.serialNumber;

describe('X509Source', () => {
  it('gets the SVID (chain, key, PEM) and the bundle, from SPIFFE_ENDPOINT_SOCKET', async () => {
    const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
    process.env.SPIFFE_ENDPOINT_SOCKET = address;
    const source = await X509Source.create();
    process.env.SPIFFE_ENDPOINT_SOCKET = saved;
    try {
      const svid = source.svid;
      expect(svid.spiffeId.toString()).toBe(ID);
      expect(svid.certChain[0]?.checkPrivateKey(svid.privateKey)).toBe(true);
      expect(new X509Certificate(svid.certChainPem).subjectAltName).toContain(ID);
      expect(svid.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
      expect(svid.expiresAt.getTime()).toBeGreaterThan(Date.now());
      const bundle = source.bundleFor(TD);
      expect(bundle?.x509Authorities.length).toBeGreaterThan(0);
      expect(source.bundles.size).toBe(1);
    } finally {
      source.close();
    }
  });

  it('receives rotations', async () => {
    const source = await X509Source.create({ address });
    try {
      const before = serial(source);
      const update = nextUpdate(source);
      resolver.rotate(ID);
      await update;
      expect(serial(source)).not.toBe(before);
    } finally {
      source.close();
    }
  });

  it('survives an agent restart without an error while its SVID is valid, then resumes updates', async () => {
    const source = await X509Source.create({ address, backoff: { initialMs: 50, maxMs: 200 } });
    const revoked: Error[] = [];
    let reconnects = 0;
    source.on('revoked', (e) => revoked.push(e));
    source.on('reconnecting', () => reconnects++);
    try {
      const before = serial(source);
      await server.close();
      await new Promise((r) => setTimeout(r, 400));
      // The agent is down: the last SVID is still served, no error surfaces.
      expect(serial(source)).toBe(before);
      expect(reconnects).toBeGreaterThan(0);
      server = new WorkloadApiServer({ socketPath: sock, resolver });
      await server.start();
      // Reconnected: the stream delivers the current state again, then new rotations.
      await nextUpdate(source);
      const update = nextUpdate(source);
      resolver.rotate(ID);
      await update;
      expect(serial(source)).not.toBe(before);
      expect(revoked).toEqual([]);
    } finally {
      source.close();
    }
  });

  it('withdraws the SVID when the agent revokes the identity, and picks up a new entry', async () => {
    const source = await X509Source.create({ address, backoff: { initialMs: 50, maxMs: 100 } });
    try {
      const revoked = new Promise<Error>((r) => source.once('revoked', r));
      resolver.remove(ID);
      expect(await revoked).toMatchObject({ grpcCode: 7, code: 'ERR_WORKLOAD_API_PERMISSION_DENIED' });
      expect(() => source.svid).toThrow(X509SourceError);
      const back = nextUpdate(source);
      resolver.add(ID, ['unix:uid:0']);
      await back;
      expect(source.svid.spiffeId.toString()).toBe(ID);
    } finally {
      source.close();
    }
  });

  it('create() fails clearly when no agent answers', async () => {
    await expect(
      X509Source.create({ address: `unix://${join(dir, 'nobody-here.sock')}`, initialTimeoutMs: 300 }),
    ).rejects.toThrow(X509SourceError);
  });
});

describe('JwtSource and JWT helpers', () => {
  it('caches per audience set and refreshes after half of the lifetime', async () => {
    resolver.jwtTtlSeconds = 4;
    const jwt = await JwtSource.create({ address });
    try {
      const t1 = await jwt.fetchToken(['b', 'a']);
      expect(await jwt.fetchToken(['a', 'b'])).toBe(t1);
      expect(jwt.fetches).toBe(1);
      const other = await jwt.fetchToken('c');
      expect(other).not.toBe(t1);
      expect(jwt.fetches).toBe(2);
      await new Promise((r) => setTimeout(r, 2100));
      const t2 = await jwt.fetchToken(['a', 'b']);
      expect(t2).not.toBe(t1);
      expect(jwt.fetches).toBe(3);
      const v = await jwt.validateJwtSvid(t2, 'a');
      expect(v.spiffeId.toString()).toBe(ID);
      expect(v.claims).toMatchObject({ sub: ID, aud: ['a', 'b'] });
      expect(typeof v.claims.exp).toBe('number');
    } finally {
      resolver.jwtTtlSeconds = undefined;
      jwt.close();
    }
  });

  it('reports API errors with their gRPC code', async () => {
    const jwt = new JwtSource({ address });
    try {
      await expect(jwt.fetchToken([])).rejects.toMatchObject({
        grpcCode: 3,
        code: 'ERR_WORKLOAD_API_INVALID_ARGUMENT',
      });
      await expect(jwt.fetchToken(['a'], { spiffeId: `spiffe://${TD}/not-mine` })).rejects.toBeInstanceOf(
        WorkloadApiError,
      );
      await expect(validateJwtSvid('a.b.c', 'a', { address })).rejects.toMatchObject({
        grpcCode: 3,
        code: 'ERR_WORKLOAD_API_INVALID_ARGUMENT',
      });
    } finally {
      jwt.close();
    }
  });

  it('fetches the JWT bundles as JWKS', async () => {
    const bundles = await jwtBundles({ address });
    expect([...(bundles.get(TD)?.jwtAuthorities.keys() ?? [])]).toEqual([
      ...resolver.ca.bundle().jwtAuthorities.keys(),
    ]);
  });
});

describe('endpoint addresses and backoff', () => {
  it('parses SPIFFE endpoint addresses strictly', () => {
    expect(parseEndpointAddress('unix:///run/a.sock')).toMatchObject({ kind: 'unix', location: '/run/a.sock' });
    expect(parseEndpointAddress('unix:/run/a.sock').grpcTarget).toBe('unix:///run/a.sock');
    expect(parseEndpointAddress('tcp://127.0.0.1:8082').grpcTarget).toBe('ipv4:127.0.0.1:8082');
    expect(parseEndpointAddress('tcp://[::1]:8082').grpcTarget).toBe('ipv6:[::1]:8082');
    for (const bad of [
      'unix://host/run/a.sock',
      'unix:///run/a.sock?x=1',
      'tcp://localhost:80',
      'tcp://127.0.0.1',
      'tcp://127.0.0.1:80/path',
      'tcp://u:p@127.0.0.1:80',
      'http://127.0.0.1:80',
      '/run/a.sock',
    ]) {
      expect(() => parseEndpointAddress(bad), bad).toThrow(EndpointAddressError);
    }
    expect(() => resolveEndpoint(undefined, {})).toThrow(/SPIFFE_ENDPOINT_SOCKET/);
  });

  it('backs off exponentially with jitter up to the cap', () => {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(3, { initialMs: 100, maxMs: 30_000 });
      expect(d).toBeGreaterThanOrEqual(400);
      expect(d).toBeLessThanOrEqual(800);
      expect(backoffDelay(40, { initialMs: 100, maxMs: 1000 })).toBeLessThanOrEqual(1000);
    }
  });
});
