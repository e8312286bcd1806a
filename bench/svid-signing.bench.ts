/**
 * X.509-SVID signing from CSRs per second, beside a bare ECDSA P-256 sign loop in the same
 * process (the physical limit of one signature per certificate).
 *
 * Each CSR carries its own fresh key, as agents' requests do, so nothing is cached across
 * requests: every SVID costs a CSR signature check (proof of possession), a public-key import,
 * building the TBSCertificate and one ECDSA signature.
 *
 * Run: npx tsx bench/svid-signing.bench.ts
 */
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { CertificateAuthority, createCsr, generatePrivateKey, Kek, MemoryCaStateStore } from '../src/ca/index.js';
import { type Figure, measureAsync, measureSync, report } from './harness.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CSR_POOL = 2000;
const SPIFFE_ID = 'spiffe://example.org/ns/production/sa/payment-service';

const ca = await CertificateAuthority.open({
  trustDomain: 'example.org',
  store: new MemoryCaStateStore(),
  kek: Kek.fromBytes(randomBytes(32)),
});
const csrs = Array.from({ length: CSR_POOL }, () => createCsr(generatePrivateKey('ec-p256')));
let next = 0;
const csr = () => csrs[next++ % CSR_POOL] as Buffer;

// Peer: a bare P-256 signature over a TBSCertificate-sized message.
const peerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const tbsSized = randomBytes(420);
const peerSig = sign('sha256', tbsSized, peerKey.privateKey);
const bareSign = () => sign('sha256', tbsSized, peerKey.privateKey);
const bareSignVerify = () => {
  verify('sha256', tbsSized, peerKey.publicKey, peerSig);
  return sign('sha256', tbsSized, peerKey.privateKey);
};

const oursSync = () => ca.signX509SvidFromCsr({ csr: csr(), spiffeId: SPIFFE_ID });
const oursAsync = () => ca.signX509SvidFromCsrAsync({ csr: csr(), spiffeId: SPIFFE_ID });

// Peer measured before and after ours; the mean evens out drift on a shared machine.
const peer1 = measureSync(bareSign, { seconds: SECONDS, batch: 50 });
const sync = measureSync(oursSync, { seconds: SECONDS, batch: 20, warmup: 500 });
const async = await measureAsync(oursAsync, { seconds: SECONDS, concurrency: 32, warmup: 200 });
const peerSv = measureSync(bareSignVerify, { seconds: SECONDS, batch: 20 });
const peer2 = measureSync(bareSign, { seconds: SECONDS, batch: 50 });
const peer = (peer1.opsPerSec + peer2.opsPerSec) / 2;

const figures: Figure[] = [
  {
    bench: 'svid-signing',
    metric: 'X.509-SVIDs from CSRs /s, one thread (sync)',
    unit: 'ops/s',
    peerName: 'bare ECDSA P-256 sign',
    peer,
    ours: sync.opsPerSec,
    higherIsBetter: true,
    targetRatio: 0.2,
  },
  {
    bench: 'svid-signing',
    metric: 'X.509-SVIDs from CSRs /s, async (libuv pool, 32 in flight)',
    unit: 'ops/s',
    peerName: 'bare ECDSA P-256 sign',
    peer,
    ours: async.opsPerSec,
    higherIsBetter: true,
    targetRatio: 0.2,
  },
  {
    bench: 'svid-signing',
    metric: 'X.509-SVIDs from CSRs /s vs verify+sign floor (sync)',
    unit: 'ops/s',
    peerName: 'bare P-256 verify + sign',
    peer: peerSv.opsPerSec,
    ours: sync.opsPerSec,
    higherIsBetter: true,
  },
];
report(figures);
const best = Math.max(sync.opsPerSec, async.opsPerSec);
process.stdout.write(
  `absolute target ≥ 5,000 X.509-SVIDs/s: ${best >= 5000 ? 'reached' : 'NOT reached'} (best ${Math.round(best).toLocaleString('en-US')}/s; ` +
    `sync p50 ${sync.p50us.toFixed(0)} µs, async p50 ${async.p50us.toFixed(0)} µs at 32 in flight)\n`,
);
