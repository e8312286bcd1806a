/**
 * The access proxy's per-request person assertion: one ES256 signature with the signer's
 * non-extractable WebCrypto key for every allowed request (it carries the decision id, so nothing
 * can be cached). Registration is answered in process; only signing is timed.
 *
 * Run: npx tsx bench/access-assertion.bench.ts
 */
import { calculateJwkThumbprint } from 'jose';
import { startAssertionSigner } from '../src/pep/assertion/signer.js';
import { MemorySvidSource } from '../src/pep/mtls/index.js';
import { CertificateAuthority, certificatesToPem, Kek, MemoryCaStateStore } from '../src/ca/index.js';
import { randomBytes } from 'node:crypto';
const ca = await CertificateAuthority.open({
  trustDomain: 'example.org',
  store: new MemoryCaStateStore(),
  kek: Kek.fromBytes(randomBytes(32)),
});
const id = 'spiffe://example.org/ns/edge/sa/access-proxy';
const m = ca.mintX509Svid({ spiffeId: id, ttlSeconds: 3600 });
const source = new MemorySvidSource(
  {
    spiffeId: id,
    certChainPem: certificatesToPem(m.chain),
    privateKeyPem: m.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  },
  [ca.bundle()],
);
const signer = await startAssertionSigner({
  source,
  server: 'https://127.0.0.1:1',
  fetch: async (_u, init) => {
    const kid = await calculateJwkThumbprint(JSON.parse(init.body).jwk, 'sha256');
    return { status: 201, text: async () => JSON.stringify({ kid }) };
  },
});
const claims = (i: number) => ({
  sub: 'alice',
  email: 'alice@example.test',
  groups: ['staff', 'eng'],
  amr: ['pwd', 'otp'],
  auth_time: 1780000000,
  sid: 'sid-abc',
  idp: 'https://idp.example.test',
  decision_id: `0193-${i}`,
});
for (let i = 0; i < 2000; i++)
  await signer.signClaims(claims(i), { typ: 'nevertrust-person+jwt', audience: 'https://wiki.example.test' });
const N = 20000;
let t = process.hrtime.bigint();
for (let i = 0; i < N; i++)
  await signer.signClaims(claims(i), { typ: 'nevertrust-person+jwt', audience: 'https://wiki.example.test' });
const seq = Number(process.hrtime.bigint() - t) / 1e3 / N;
t = process.hrtime.bigint();
const B = 64;
for (let i = 0; i < N; i += B)
  await Promise.all(
    Array.from({ length: B }, (_, j) =>
      signer.signClaims(claims(i + j), { typ: 'nevertrust-person+jwt', audience: 'https://wiki.example.test' }),
    ),
  );
const par = Number(process.hrtime.bigint() - t) / 1e3 / N;
console.log(
  `sequential: ${seq.toFixed(1)} µs/assertion (${Math.round(1e6 / seq)}/s); 64 in flight: ${par.toFixed(1)} µs/assertion (${Math.round(1e6 / par)}/s)`,
);
await signer.close();
