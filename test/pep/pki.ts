/** Real SVIDs for enforcement tests: a CA for example.org and a second one for another trust domain. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertificateAuthority, certificatesToPem, loadOrCreateKek, MemoryCaStateStore } from '../../src/ca/index.js';
import { MemorySvidSource } from '../../src/pep/mtls/index.js';
import type { TrustBundle } from '../../src/spiffe/index.js';

export const TD = 'example.org';
export const id = (name: string, td = TD) => `spiffe://${td}/ns/payments/sa/${name}`;

export interface Svid {
  spiffeId: string;
  certChainPem: string;
  privateKeyPem: string;
}

export interface Pki {
  ca: CertificateAuthority;
  other: CertificateAuthority;
  bundle(): TrustBundle;
  mint(name: string, opts?: { ttlSeconds?: number; now?: Date; other?: boolean; dnsNames?: string[] }): Svid;
  /** An SVID source for a server-side workload (its SVID also names `localhost`), with this CA's bundle. */
  source(name: string): MemorySvidSource;
  /** Writes cert/key PEM files and returns their paths. */
  files(dir: string, name: string, svid: Svid): { cert: string; key: string };
  bundleFile(dir: string): string;
}

export async function makePki(dir: string): Promise<Pki> {
  const kek = (await loadOrCreateKek({ file: join(dir, 'kek'), env: {} })).kek;
  const ca = await CertificateAuthority.open({ trustDomain: TD, store: new MemoryCaStateStore(), kek });
  const other = await CertificateAuthority.open({ trustDomain: 'evil.example', store: new MemoryCaStateStore(), kek });
  const pki: Pki = {
    ca,
    other,
    bundle: () => ca.bundle(),
    mint(name, opts = {}) {
      const authority = opts.other ? other : ca;
      const spiffeId = id(name, opts.other ? 'evil.example' : TD);
      const m = authority.mintX509Svid(
        { spiffeId, ttlSeconds: opts.ttlSeconds ?? 3600, ...(opts.dnsNames ? { dnsNames: opts.dnsNames } : {}) },
        opts.now,
      );
      return {
        spiffeId,
        certChainPem: certificatesToPem(m.chain),
        privateKeyPem: m.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      };
    },
    source(name) {
      return new MemorySvidSource(pki.mint(name, { dnsNames: ['localhost'] }), [ca.bundle()]);
    },
    files(d, name, svid) {
      const cert = join(d, `${name}.crt`);
      const key = join(d, `${name}.key`);
      writeFileSync(cert, svid.certChainPem);
      writeFileSync(key, svid.privateKeyPem, { mode: 0o600 });
      return { cert, key };
    },
    bundleFile(d) {
      const f = join(d, 'bundle.pem');
      writeFileSync(f, ca.bundle().toPem());
      return f;
    },
  };
  return pki;
}

/** One ALLOW rule of {@link ingressPolicy}: callers (service names) and what they may call. */
export interface IngressRule {
  name: string;
  from: string[];
  methods: string[];
  paths: string[];
}

/** A native ALLOW policy for `service` (`<service>-ingress`) as YAML, with callers named as services. */
export function ingressPolicy(service: string, rules: IngressRule[]): string {
  const body = rules
    .map(
      (r) =>
        `    - name: ${r.name}\n      from: [{ principals: [${r.from.map((f) => id(f)).join(', ')}] }]\n` +
        `      to: [{ methods: [${r.methods.join(', ')}], paths: [${r.paths.join(', ')}] }]\n`,
    )
    .join('');
  return `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata: { name: ${service}-ingress }\nspec:\n  action: ALLOW\n  target: { spiffeIds: [${id(service)}] }\n  rules:\n${body}`;
}

/** Writes {@link ingressPolicy} for `service` into `<dir>/policies/` and returns that directory. */
export function ingressPolicyDir(dir: string, service: string, rules: IngressRule[]): string {
  const policies = join(dir, 'policies');
  mkdirSync(policies, { recursive: true });
  writeFileSync(join(policies, `${service}.yaml`), ingressPolicy(service, rules));
  return policies;
}
