import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CaError,
  CertificateAuthority,
  type CertificateAuthorityOptions,
  certificatesToPem,
  createCsr,
  csrToPem,
  FileCaStateStore,
  generatePrivateKey,
  Kek,
  KekError,
  MemoryCaStateStore,
  type SealedKey,
} from '../../src/ca/index.js';
import { validateJwtSvid, validateX509Svid, X509SvidError } from '../../src/spiffe/index.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/prod/sa/api';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nt-ca-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] }).toString('utf8');
}

/** A controllable clock for rotation tests. */
function fakeClock(start = Date.parse('2030-01-01T00:00:00Z')) {
  let t = start;
  return {
    now: () => new Date(t),
    set: (ms: number) => {
      t = ms;
    },
    advance: (s: number) => {
      t += s * 1000;
      return new Date(t);
    },
    get ms() {
      return t;
    },
  };
}

async function newCa(extra: Partial<CertificateAuthorityOptions> = {}) {
  const store = new MemoryCaStateStore();
  const kek = Kek.fromBytes(randomBytes(32));
  const ca = await CertificateAuthority.open({ trustDomain: TD, store, kek, ...extra });
  return { ca, store, kek };
}

describe('X.509-SVID issuance', () => {
  it('a minted SVID passes openssl verify and carries the required extensions', async () => {
    const { ca } = await newCa();
    const key = generatePrivateKey();
    const svid = ca.signX509SvidFromCsr({ csrDer: createCsr(key), spiffeId: ID, dnsNames: ['api.internal'] });
    writeFileSync(join(dir, 'bundle.pem'), ca.bundle().toPem());
    writeFileSync(join(dir, 'svid.pem'), certificatesToPem(svid.chain));
    expect(openssl(['verify', '-CAfile', 'bundle.pem', '-purpose', 'sslclient', 'svid.pem']).trim()).toBe(
      'svid.pem: OK',
    );
    expect(openssl(['verify', '-CAfile', 'bundle.pem', '-purpose', 'sslserver', 'svid.pem']).trim()).toBe(
      'svid.pem: OK',
    );
    const text = openssl(['x509', '-in', 'svid.pem', '-noout', '-text']);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Agreement/);
    expect(text).not.toMatch(/Certificate Sign|CRL Sign/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(
      /X509v3 Subject Alternative Name:\s+URI:spiffe:\/\/example\.org\/ns\/prod\/sa\/api, DNS:api\.internal/,
    );
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/Subject: C ?= ?US, O ?= ?nevertrust, CN ?= ?api\.internal/);
    // 128-bit positive serial: 16 bytes, or 17 with a leading 00
    expect(svid.serialHex.length === 32 || (svid.serialHex.length === 34 && svid.serialHex.startsWith('00'))).toBe(
      true,
    );
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
    // default TTL 1 h (+ the 10 s notBefore cushion)
    const life = svid.notAfter.getTime() - svid.notBefore.getTime();
    expect(life).toBeGreaterThan(3590_000);
    expect(life).toBeLessThanOrEqual(3611_000);
    const ca509 = openssl(['x509', '-in', 'bundle.pem', '-noout', '-text']);
    expect(ca509).toMatch(/CA:TRUE/);
    expect(ca509).toMatch(/Certificate Sign, CRL Sign/);
    expect(ca509).toMatch(/URI:spiffe:\/\/example\.org\n/);
  });

  it('ignores the subject and SANs an openssl CSR asks for; RSA keys get keyEncipherment', async () => {
    const { ca } = await newCa();
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'rsa.key']);
    writeFileSync(join(dir, 'req.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n');
    const csrPem = openssl([
      'req',
      '-new',
      '-config',
      'req.cnf',
      '-key',
      'rsa.key',
      '-subj',
      '/CN=admin',
      '-addext',
      'subjectAltName=URI:spiffe://example.org/admin,DNS:evil.example',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    const svid = await ca.signX509SvidFromCsrAsync({ csrPem, spiffeId: ID, ttlSeconds: 600 });
    writeFileSync(join(dir, 'rsa-svid.pem'), certificatesToPem(svid.chain));
    const text = openssl(['x509', '-in', 'rsa-svid.pem', '-noout', '-text']);
    expect(text).not.toContain('admin');
    expect(text).not.toContain('evil');
    expect(text).toMatch(/CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
    expect(svid.notAfter.getTime() - svid.notBefore.getTime()).toBeLessThanOrEqual(610_000);
  });

  it('refuses a CSR without proof of possession, a foreign ID, a trust-domain ID and a bad DNS name', async () => {
    const { ca } = await newCa();
    const csr = Buffer.from(createCsr(generatePrivateKey()));
    const bad = Buffer.from(csr);
    bad[bad.length - 5] = (bad[bad.length - 5] as number) ^ 0x55;
    expect(() => ca.signX509SvidFromCsr({ csr: bad, spiffeId: ID })).toThrow(
      expect.objectContaining({ code: 'ERR_CSR_BAD_SIGNATURE' }),
    );
    await expect(ca.signX509SvidFromCsrAsync({ csr: bad, spiffeId: ID })).rejects.toMatchObject({
      code: 'ERR_CSR_BAD_SIGNATURE',
    });
    expect(() => ca.signX509SvidFromCsr({ csr, spiffeId: 'spiffe://other.org/x' })).toThrow(
      expect.objectContaining({ code: 'ERR_CA_TRUST_DOMAIN_MISMATCH' }),
    );
    expect(() => ca.signX509SvidFromCsr({ csr, spiffeId: 'spiffe://example.org' })).toThrow(
      expect.objectContaining({ code: 'ERR_CA_INVALID_REQUEST' }),
    );
    expect(() => ca.signX509SvidFromCsr({ csr, spiffeId: ID, dnsNames: ['bad name'] })).toThrow(
      expect.objectContaining({ code: 'ERR_CA_INVALID_DNS_NAME' }),
    );
    expect(() => ca.signX509SvidFromCsr({ csr: 'garbage', spiffeId: ID })).toThrow(
      expect.objectContaining({ code: 'ERR_CSR_MALFORMED' }),
    );
  });

  it('long SAN lists (multi-byte DER lengths) and validity crossing 2050 (GeneralizedTime) encode correctly', async () => {
    const clock = fakeClock(Date.parse('2049-12-31T23:30:00Z'));
    const { ca } = await newCa({ clock: clock.now });
    const dnsNames = Array.from({ length: 40 }, (_, i) => `service-${i}.namespace.cluster.internal`);
    const svid = ca.signX509SvidFromCsr({ csr: createCsr(generatePrivateKey()), spiffeId: ID, dnsNames });
    expect(svid.notAfter.toISOString()).toBe('2050-01-01T00:30:00.000Z');
    writeFileSync(join(dir, 'big-bundle.pem'), ca.bundle().toPem());
    writeFileSync(join(dir, 'big-svid.pem'), certificatesToPem(svid.chain));
    const text = openssl(['x509', '-in', 'big-svid.pem', '-noout', '-text']);
    expect(text).toContain('Not After : Jan  1 00:30:00 2050 GMT');
    expect(text).toContain('DNS:service-39.namespace.cluster.internal');
    // openssl checks against the real time, when this certificate is not yet valid: check the signature only
    expect(openssl(['verify', '-CAfile', 'big-bundle.pem', '-no_check_time', 'big-svid.pem']).trim()).toBe(
      'big-svid.pem: OK',
    );
    expect(validateX509Svid(svid.chain, ca.bundle(), { now: clock.now() }).toString()).toBe(ID);
  });

  it('refuses CSRs for unsupported keys (P-521, RSA-1024, Ed25519)', async () => {
    const { ca } = await newCa();
    writeFileSync(join(dir, 'req.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n');
    const csrFor = (genArgs: string[], name: string) => {
      openssl(['genpkey', ...genArgs, '-out', `${name}.key`]);
      return openssl(['req', '-new', '-config', 'req.cnf', '-key', `${name}.key`, '-subj', '/CN=x']);
    };
    const p521 = csrFor(['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521'], 'p521');
    const rsa1024 = csrFor(['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'], 'rsa1024');
    const ed = csrFor(['-algorithm', 'ED25519'], 'ed');
    const code = (csrPem: string) => {
      try {
        ca.signX509SvidFromCsr({ csrPem, spiffeId: ID });
        return undefined;
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    expect(code(p521)).toBe('ERR_CSR_UNSUPPORTED_KEY');
    expect(code(rsa1024)).toBe('ERR_CSR_UNSUPPORTED_KEY');
    expect(code(ed)).toBe('ERR_CSR_UNSUPPORTED_ALGORITHM');
  });

  it('createCsr output passes openssl req -verify', () => {
    writeFileSync(join(dir, 'ours.csr'), csrToPem(createCsr(generatePrivateKey('ec-p384'))));
    expect(openssl(['req', '-in', 'ours.csr', '-verify', '-noout'])).toBe('');
  });

  it('P-384 and RSA-2048 CAs issue valid SVIDs', async () => {
    for (const keyType of ['ec-p384', 'rsa-2048'] as const) {
      const { ca } = await newCa({ keyType });
      const svid = ca.mintX509Svid({ spiffeId: ID });
      expect(validateX509Svid(svid.chain, ca.bundle()).toString()).toBe(ID);
      writeFileSync(join(dir, `b-${keyType}.pem`), ca.bundle().toPem());
      writeFileSync(join(dir, `s-${keyType}.pem`), certificatesToPem(svid.chain));
      expect(openssl(['verify', '-CAfile', `b-${keyType}.pem`, `s-${keyType}.pem`]).trim()).toBe(
        `s-${keyType}.pem: OK`,
      );
    }
  });
});

describe('JWT-SVIDs from the CA', () => {
  it('mints tokens that validate against the bundle, with the active kid', async () => {
    const { ca } = await newCa();
    const jwt = await ca.mintJwtSvid({ spiffeId: ID, audience: ['payments'] });
    const v = await validateJwtSvid(jwt.token, ca.bundle(), 'payments');
    expect(v.spiffeId.toString()).toBe(ID);
    expect(v.kid).toBe(jwt.kid);
    expect(ca.bundle().jwtAuthority(jwt.kid)).toBeDefined();
    expect(jwt.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(300_000);
  });
});

describe('rotation with short TTLs (injected clock)', () => {
  it('prepares at half-life, activates at 1/6 left, keeps the retired CA until its last SVID expired', async () => {
    const clock = fakeClock();
    const t0 = clock.ms;
    const { ca } = await newCa({ caTtlSeconds: 600, x509SvidTtlSeconds: 60, jwtSvidTtlSeconds: 60, clock: clock.now });
    const seq0 = ca.sequence;
    expect(ca.bundle().x509Authorities).toHaveLength(1);
    const [gen1] = ca.authorities();

    // before half-life: nothing changes
    expect(await ca.tick(clock.advance(200))).toBe(false);
    // half-life (600 s lifetime began 10 s before t0): the next CA is prepared and published
    expect(await ca.tick(clock.advance(100))).toBe(true);
    expect(ca.sequence).toBeGreaterThan(seq0);
    expect(ca.bundle().x509Authorities).toHaveLength(2);
    expect(ca.authorities().map((a) => a.status)).toEqual(['active', 'prepared']);

    // SVID A from the old CA, shortly before the switch
    clock.set(t0 + 450_000);
    const a = ca.mintX509Svid({ spiffeId: ID });
    const jwtA = await ca.mintJwtSvid({ spiffeId: ID, audience: ['p'] });
    // switch at 1/6 of the lifetime left: notAfter - 610 s / 6 = t0 + 498.3 s
    const seqBefore = ca.sequence;
    expect(await ca.tick(new Date(t0 + 498_000))).toBe(false);
    expect(await ca.tick(new Date(t0 + 499_000))).toBe(true);
    expect(ca.sequence).toBeGreaterThan(seqBefore);
    expect(ca.authorities().map((x) => x.status)).toEqual(['retired', 'active']);
    clock.set(t0 + 500_000);
    const b = ca.mintX509Svid({ spiffeId: ID });
    const jwtB = await ca.mintJwtSvid({ spiffeId: ID, audience: ['p'] });
    expect(jwtB.kid).not.toBe(jwtA.kid);

    // both validate against the one bundle
    const now = new Date(t0 + 503_000);
    expect(validateX509Svid(a.chain, ca.bundle(), { now }).toString()).toBe(ID);
    expect(validateX509Svid(b.chain, ca.bundle(), { now }).toString()).toBe(ID);
    expect((await validateJwtSvid(jwtA.token, ca.bundle(), 'p', { now })).kid).toBe(jwtA.kid);
    expect((await validateJwtSvid(jwtB.token, ca.bundle(), 'p', { now })).kid).toBe(jwtB.kid);
    // B is signed by the new CA, A by the old one
    const [oldCa, newCa2] = ca.bundle().x509Authorities.map((d) => new X509Certificate(d));
    expect(new X509Certificate(a.chain[0] as Buffer).checkIssued(oldCa as X509Certificate)).toBe(true);
    expect(new X509Certificate(b.chain[0] as Buffer).checkIssued(newCa2 as X509Certificate)).toBe(true);

    // the retired CA stays while SVID A lives (A expires at t0+510 s)
    expect(await ca.tick(new Date(t0 + 505_000))).toBe(false);
    expect(ca.bundle().x509Authorities).toHaveLength(2);
    const seqKeep = ca.sequence;
    // ... and leaves the bundle once A and the JWT expired
    expect(await ca.tick(new Date(t0 + 511_000))).toBe(true);
    expect(ca.sequence).toBeGreaterThan(seqKeep);
    expect(ca.bundle().x509Authorities).toHaveLength(1);
    expect(ca.bundle().jwtAuthority(jwtA.kid)).toBeUndefined();
    expect(ca.authorities().map((x) => x.id)).not.toContain(gen1?.id);
    expect(validateX509Svid(b.chain, ca.bundle(), { now: new Date(t0 + 512_000) }).toString()).toBe(ID);
  });

  it('an SVID never outlives its CA', async () => {
    const clock = fakeClock();
    const { ca } = await newCa({ caTtlSeconds: 600, clock: clock.now });
    clock.advance(400);
    const svid = ca.mintX509Svid({ spiffeId: ID, ttlSeconds: 3600 });
    const caCert = new X509Certificate(ca.bundle().x509Authorities[0] as Buffer);
    expect(svid.notAfter.getTime()).toBeLessThanOrEqual(new Date(caCert.validTo).getTime());
    expect(new Date(new X509Certificate(svid.chain[0] as Buffer).validTo).getTime()).toBe(
      new Date(caCert.validTo).getTime(),
    );
    const jwt = await ca.mintJwtSvid({ spiffeId: ID, audience: ['p'], ttlSeconds: 3600 });
    expect(jwt.expiresAt.getTime()).toBeLessThanOrEqual(new Date(caCert.validTo).getTime());
  });

  it('rotate() switches at once; an expired CA refuses to sign until tick', async () => {
    const clock = fakeClock();
    const { ca } = await newCa({ caTtlSeconds: 600, clock: clock.now });
    const before = ca.authorities()[0]?.id;
    await ca.rotate();
    expect(ca.authorities().find((a) => a.status === 'active')?.id).not.toBe(before);
    clock.advance(10_000);
    expect(() => ca.mintX509Svid({ spiffeId: ID })).toThrow(
      expect.objectContaining({ code: 'ERR_CA_AUTHORITY_EXPIRED' }),
    );
    await ca.tick();
    expect(
      validateX509Svid(ca.mintX509Svid({ spiffeId: ID }).chain, ca.bundle(), { now: clock.now() }).toString(),
    ).toBe(ID);
  });
});

describe('downtime', () => {
  it('one tick after days offline leaves a CA that signs valid SVIDs', async () => {
    const clock = fakeClock();
    const { ca, store, kek } = await newCa({ caTtlSeconds: 600, clock: clock.now });
    await ca.tick(clock.advance(320)); // a prepared generation exists
    expect(ca.authorities().map((a) => a.status)).toEqual(['active', 'prepared']);
    clock.advance(3 * 86_400);
    const again = await CertificateAuthority.open({ trustDomain: TD, store, kek, caTtlSeconds: 600, clock: clock.now });
    expect(again.authorities().map((a) => a.status)).toEqual(['active']);
    const svid = again.mintX509Svid({ spiffeId: ID });
    expect(validateX509Svid(svid.chain, again.bundle(), { now: clock.now() }).toString()).toBe(ID);
    expect(again.bundle().x509Authorities).toHaveLength(1);
  });
});

describe('persistence', () => {
  it('a reload from the same store and KEK gives the same CA', async () => {
    const { ca, store, kek } = await newCa();
    const svid = ca.mintX509Svid({ spiffeId: ID });
    const jwt = await ca.mintJwtSvid({ spiffeId: ID, audience: ['p'] });
    await ca.tick();
    const again = await CertificateAuthority.open({ trustDomain: TD, store, kek });
    expect(JSON.stringify(again.bundle().toJwks())).toBe(JSON.stringify(ca.bundle().toJwks()));
    expect(again.sequence).toBe(ca.sequence);
    expect(validateX509Svid(svid.chain, again.bundle()).toString()).toBe(ID);
    expect((await validateJwtSvid(jwt.token, again.bundle(), 'p')).spiffeId.toString()).toBe(ID);
    const next = again.mintX509Svid({ spiffeId: ID });
    expect(validateX509Svid(next.chain, ca.bundle()).toString()).toBe(ID);
    expect(new X509Certificate(next.chain[0] as Buffer).issuer).toBe(
      new X509Certificate(svid.chain[0] as Buffer).issuer,
    );
  });

  it('the persisted state, JSON, toString and inspect hold no plaintext key material', async () => {
    const { ca, store, kek } = await newCa();
    const state = store.state as string;
    const doc = JSON.parse(state) as { generations: { id: string; caKey: SealedKey; jwtKey: SealedKey }[] };
    expect(state).not.toMatch(/PRIVATE KEY/);
    const shown = [state, JSON.stringify(ca), String(ca), inspect(ca, { showHidden: true, depth: 10 })];
    for (const g of doc.generations) {
      for (const [box, what] of [
        [g.caKey, 'x509'],
        [g.jwtKey, 'jwt'],
      ] as const) {
        const pkcs8 = kek.open(box, `nevertrust-ca/${TD}/${g.id}/${what}`);
        // the private scalar (and the whole PKCS#8) must not appear in any form
        const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
        const d = key.export({ format: 'jwk' }).d as string;
        for (const text of shown) {
          expect(text).not.toContain(pkcs8.toString('base64'));
          expect(text).not.toContain(pkcs8.toString('hex'));
          expect(text).not.toContain(d);
          expect(text).not.toContain(Buffer.from(d, 'base64url').toString('base64'));
          expect(text).not.toContain(Buffer.from(d, 'base64url').toString('hex'));
        }
      }
    }
  });

  it('refuses another KEK, another trust domain and a corrupt state', async () => {
    const { store } = await newCa();
    await expect(
      CertificateAuthority.open({ trustDomain: TD, store, kek: Kek.fromBytes(randomBytes(32)) }),
    ).rejects.toBeInstanceOf(KekError);
    const kek = Kek.fromBytes(randomBytes(32));
    const s2 = new MemoryCaStateStore();
    await CertificateAuthority.open({ trustDomain: TD, store: s2, kek });
    await expect(CertificateAuthority.open({ trustDomain: 'other.org', store: s2, kek })).rejects.toMatchObject({
      code: 'ERR_CA_STATE_MISMATCH',
    });
    s2.state = '{';
    await expect(CertificateAuthority.open({ trustDomain: TD, store: s2, kek })).rejects.toBeInstanceOf(CaError);
  });

  it('FileCaStateStore writes mode 0600 and reloads', async () => {
    const path = join(dir, 'state', 'ca.json');
    const kek = Kek.fromBytes(randomBytes(32));
    const ca = await CertificateAuthority.open({ trustDomain: TD, store: new FileCaStateStore(path), kek });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const again = await CertificateAuthority.open({ trustDomain: TD, store: new FileCaStateStore(path), kek });
    expect(again.bundle().toPem()).toBe(ca.bundle().toPem());
  });
});

describe('errors', () => {
  it('X509SvidError for an SVID from another CA', async () => {
    const a = await newCa();
    const b = await newCa();
    const svid = a.ca.mintX509Svid({ spiffeId: ID });
    expect(() => validateX509Svid(svid.chain, b.ca.bundle())).toThrow(X509SvidError);
  });
});
