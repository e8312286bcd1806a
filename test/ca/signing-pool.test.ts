/**
 * The CA's worker-thread signing pool: proof of possession still enforced, identity from the
 * caller only, rotation reaching the workers, crash and hang recovery, clean exit and close.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CertificateAuthority,
  type CertificateAuthorityOptions,
  createCsr,
  csrToPem,
  generatePrivateKey,
  Kek,
  MemoryCaStateStore,
} from '../../src/ca/index.js';
import { SigningPool } from '../../src/ca/signing-pool.js';
import { validateX509Svid } from '../../src/spiffe/index.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/prod/sa/api';
const pools: SigningPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.close();
});

function pool(opts: ConstructorParameters<typeof SigningPool>[0] = {}): SigningPool {
  const p = new SigningPool({ size: 2, ...opts });
  pools.push(p);
  return p;
}

async function newCa(extra: Partial<CertificateAuthorityOptions> = {}) {
  return CertificateAuthority.open({
    trustDomain: TD,
    store: new MemoryCaStateStore(),
    kek: Kek.fromBytes(randomBytes(32)),
    ...extra,
  });
}

const spkiOf = (der: Buffer) => new X509Certificate(der).publicKey.export({ format: 'der', type: 'spki' });
const crashingWorker = new URL('./fixtures/crashing-signing-worker.ts', import.meta.url);

describe('signing through the worker pool', () => {
  it('refuses a forged CSR signature and a malformed CSR; signs a good one for the caller’s ID only', async () => {
    const ca = await newCa({ signingPool: pool() });
    // An openssl-style CSR asking for another identity: the subject and SANs are never used.
    const key = generatePrivateKey();
    const good = createCsr(key);
    const forged = Buffer.from(good);
    forged[forged.length - 5] = (forged[forged.length - 5] as number) ^ 0x55;
    await expect(ca.signX509SvidFromCsrAsync({ csr: forged, spiffeId: ID })).rejects.toMatchObject({
      name: 'CsrError',
      code: 'ERR_CSR_BAD_SIGNATURE',
    });
    // Someone else's key with our CSR's signature: no proof of possession either.
    const swapped = Buffer.from(good);
    const otherSpki = createPublicKey(generatePrivateKey()).export({ format: 'der', type: 'spki' });
    swapped.set(otherSpki, swapped.indexOf(createPublicKey(key).export({ format: 'der', type: 'spki' })));
    await expect(ca.signX509SvidFromCsrAsync({ csr: swapped, spiffeId: ID })).rejects.toMatchObject({
      code: 'ERR_CSR_BAD_SIGNATURE',
    });
    await expect(ca.signX509SvidFromCsrAsync({ csr: 'garbage', spiffeId: ID })).rejects.toMatchObject({
      code: 'ERR_CSR_MALFORMED',
    });
    await expect(ca.signX509SvidFromCsrAsync({ csr: good, spiffeId: 'spiffe://other.org/x' })).rejects.toMatchObject({
      code: 'ERR_CA_TRUST_DOMAIN_MISMATCH',
    });
    const svid = await ca.signX509SvidFromCsrAsync({ csr: good, spiffeId: ID, dnsNames: ['api.internal'] });
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
    const leaf = new X509Certificate(svid.chain[0] as Buffer);
    expect(leaf.subjectAltName).toBe(`URI:${ID}, DNS:api.internal`);
    expect(spkiOf(svid.chain[0] as Buffer).equals(createPublicKey(key).export({ format: 'der', type: 'spki' }))).toBe(
      true,
    );
  });

  it('gives each of many concurrent callers the certificate for its own key and SPIFFE ID', async () => {
    const ca = await newCa({ signingPool: pool() });
    const jobs = Array.from({ length: 120 }, (_, i) => {
      const key = generatePrivateKey(i % 7 === 0 ? 'ec-p384' : 'ec-p256');
      const der = createCsr(key);
      return {
        id: `spiffe://example.org/w/${i}`,
        spki: createPublicKey(key).export({ format: 'der', type: 'spki' }),
        // half as PEM text (what agents send), half as DER
        csr: i % 2 ? csrToPem(der) : der,
        ttl: 600 + i,
      };
    });
    const svids = await Promise.all(
      jobs.map((j) => ca.signX509SvidFromCsrAsync({ csr: j.csr, spiffeId: j.id, ttlSeconds: j.ttl })),
    );
    const serials = new Set<string>();
    svids.forEach((svid, i) => {
      const job = jobs[i] as (typeof jobs)[number];
      const leaf = svid.chain[0] as Buffer;
      expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(job.id);
      expect(spkiOf(leaf).equals(job.spki)).toBe(true);
      expect(svid.spiffeId.toString()).toBe(job.id);
      expect(new X509Certificate(leaf).serialNumber.toLowerCase().replace(/^0+/, '')).toBe(
        svid.serialHex.replace(/^0+/, ''),
      );
      serials.add(svid.serialHex);
    });
    expect(serials.size).toBe(jobs.length);
  });

  it('a rotation reaches the workers before any later request is signed', async () => {
    const ca = await newCa({ signingPool: pool() });
    const csr = () => createCsr(generatePrivateKey());
    const signedBy = (svid: { chain: Buffer[] }, caCert: X509Certificate) =>
      new X509Certificate(svid.chain[0] as Buffer).verify(caCert.publicKey);
    for (let round = 0; round < 3; round++) {
      const oldCa = activeCaCert(ca);
      // In flight while the rotation happens: authorized before it, so signed by the old CA.
      const before = Array.from({ length: 20 }, () => ca.signX509SvidFromCsrAsync({ csr: csr(), spiffeId: ID }));
      await ca.rotate();
      const newCa = activeCaCert(ca);
      expect(newCa.fingerprint256).not.toBe(oldCa.fingerprint256);
      const after = await Promise.all(
        Array.from({ length: 20 }, () => ca.signX509SvidFromCsrAsync({ csr: csr(), spiffeId: ID })),
      );
      for (const s of after) expect(signedBy(s, newCa)).toBe(true);
      for (const s of await Promise.all(before)) {
        expect(signedBy(s, oldCa)).toBe(true);
        // the old CA stays in the bundle while its SVIDs live
        expect(validateX509Svid(s.chain, ca.bundle()).toString()).toBe(ID);
      }
    }
  });

  it('a crashed worker rejects what it held with a clear error and is replaced', async () => {
    const p = pool({ size: 1, workerScript: crashingWorker });
    const ca = await newCa({ signingPool: p });
    await ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID });
    const held = [
      ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID }),
      ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: `${ID}/crash` }),
    ];
    for (const r of await Promise.allSettled(held)) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({
        name: 'CaError',
        code: 'ERR_CA_SIGNER_FAILED',
        message: expect.stringMatching(/signing worker exited \(code 7\).*not signed/),
      });
    }
    // the next request gets a new worker, which is sent the CA key again
    const svid = await ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID });
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
    expect(p.threads).toBe(1);
  });

  it('a hung worker is stopped and its requests rejected; a worker that cannot start fails requests, not hangs', async () => {
    const ca = await newCa({ signingPool: pool({ size: 1, workerScript: crashingWorker, stallMs: 8000 }) });
    await expect(
      ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: `${ID}/hang` }),
    ).rejects.toMatchObject({ code: 'ERR_CA_SIGNER_FAILED', message: expect.stringMatching(/did not answer/) });
    expect(
      validateX509Svid(
        (await ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID })).chain,
        ca.bundle(),
      ).toString(),
    ).toBe(ID);

    const missing = new URL('./fixtures/no-such-worker.js', import.meta.url);
    const broken = await newCa({ signingPool: pool({ size: 1, workerScript: missing }) });
    await expect(
      broken.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID }),
    ).rejects.toMatchObject({ code: 'ERR_CA_SIGNER_FAILED' });
    // 8 s of stall allowance: a respawned worker loading under a busy test run must not count as hung.
  }, 60_000);

  it('close() rejects what is held; a closed pool refuses; errors never carry key material', async () => {
    const p = pool();
    const ca = await newCa({ signingPool: p });
    const held = ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID }).then(
      () => undefined,
      (e: Error) => e,
    );
    await p.close();
    const err = await held;
    expect(err).toMatchObject({ code: 'ERR_CA_SIGNER_CLOSED' });
    await expect(
      ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID }),
    ).rejects.toMatchObject({ code: 'ERR_CA_SIGNER_CLOSED' });
    expect(`${String(err)} ${JSON.stringify(err)}`).not.toMatch(/PRIVATE KEY|"d":/);
  });

  it('the libuv path stays available (signingPool: null) and agrees with the pool', async () => {
    const ca = await newCa({ signingPool: null });
    const svid = await ca.signX509SvidFromCsrAsync({ csr: createCsr(generatePrivateKey()), spiffeId: ID });
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
  });

  it('a process that signed through the shared pool and never closed it still exits by itself', () => {
    const script = fileURLToPath(new URL('./fixtures/pool-exit.ts', import.meta.url));
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { timeout: 20_000 }).toString();
    expect(out).toMatch(/^signed [0-9a-f]+\n$/);
  });
});

function activeCaCert(ca: CertificateAuthority): X509Certificate {
  const fp = (ca.authorities().find((a) => a.status === 'active') as { x509Fingerprint: string }).x509Fingerprint;
  const cert = ca
    .bundle()
    .x509Authorities.map((d) => new X509Certificate(d))
    .find((c) => c.fingerprint256.replaceAll(':', '').toLowerCase() === fp);
  if (!cert) throw new Error('the active CA is not in the bundle');
  return cert;
}
