/**
 * One generation of the CA: an X.509 CA certificate and key and a JWT signing key that are prepared,
 * activated and retired together, with the issuers that sign with them and how long what they signed
 * stays valid (which keeps them published). Making a new generation lives here.
 */
import { createPublicKey, type KeyObject, randomBytes } from 'node:crypto';
import type { TrustDomain } from '../spiffe/index.js';
import { buildCaCertificate, encodeName, LeafIssuer } from './certificate.js';
import { CaError } from './errors.js';
import { generatePrivateKey, type KeyType } from './keys.js';
import { type PoolIssuer, poolIssuer } from './signing-pool.js';
import type { Upstream } from './upstream.js';

/** Backdating of notBefore against clock skew (SPIRE: 10 s). */
export const NOT_BEFORE_CUSHION_SECONDS = 10;

/** Milliseconds rounded down to a whole second (X.509 times have second precision). */
export const floorSec = (ms: number) => Math.floor(ms / 1000) * 1000;

/** A generation with its key material and the signers derived from it. */
export interface Generation {
  id: string;
  status: 'prepared' | 'active' | 'retired';
  notBefore: number;
  notAfter: number;
  caCert: Buffer;
  caKey: KeyObject;
  issuer: LeafIssuer;
  /** The same generation for the signing pool's workers. */
  poolIssuer: PoolIssuer;
  /** Certificates after the leaf in issued chains. */
  chainTail: Buffer[];
  jwtKid: string;
  jwtKey: KeyObject;
  jwtPublic: KeyObject;
  /** Latest notAfter of anything this generation signed (ms since epoch). */
  x509LastExpiry: number;
  jwtLastExpiry: number;
  x509Published: boolean;
  jwtPublished: boolean;
}

/** What a generation is made of, persisted or new: everything but what is derived from its keys. */
export type GenerationMaterial = Omit<Generation, 'issuer' | 'poolIssuer' | 'chainTail' | 'jwtPublic'>;

/** Derives a generation's issuers, issued-chain tail and JWT public key from its material. */
export function withSigners(g: GenerationMaterial, upstream: Upstream | undefined): Generation {
  const chainTail = upstream ? [g.caCert, ...upstream.extraChain] : [];
  return {
    ...g,
    issuer: new LeafIssuer(g.caCert, g.caKey),
    poolIssuer: poolIssuer(g.caCert, g.caKey),
    chainTail,
    jwtPublic: createPublicKey(g.jwtKey),
  };
}

/** Who the CA is, for making a generation. */
export interface GenerationParams {
  trustDomain: TrustDomain;
  keyType: KeyType;
  caTtlMs: number;
  upstream: Upstream | undefined;
}

/** A new prepared generation at `t`: fresh keys, a CA certificate (capped by the upstream's expiry). */
export function newGeneration(p: GenerationParams, t: number): Generation {
  const id = `gen-${randomBytes(8).toString('hex')}`;
  const notBefore = floorSec(t - NOT_BEFORE_CUSHION_SECONDS * 1000);
  let notAfter = floorSec(t + p.caTtlMs);
  const up = p.upstream;
  if (up && notAfter > up.notAfter) notAfter = up.notAfter;
  if (notAfter <= t) throw new CaError('ERR_CA_UPSTREAM_INVALID', 'the upstream CA certificate has expired');
  const caKey = generatePrivateKey(p.keyType);
  const subject = encodeName([
    ['C', 'US'],
    ['O', 'nevertrust'],
    ['CN', `${p.trustDomain.name} CA`],
    ['serialNumber', id.slice(4)],
  ]);
  const caCert = buildCaCertificate({
    subjectKey: caKey,
    subject,
    issuer: up ? up.subject : subject,
    ...(up ? { issuerKeyId: up.keyId } : {}),
    signingKey: up ? up.key : caKey,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    trustDomainId: p.trustDomain.idString(),
  });
  const jwtKey = generatePrivateKey(p.keyType);
  return withSigners(
    {
      id,
      status: 'prepared',
      notBefore,
      notAfter,
      caCert,
      caKey,
      jwtKid: randomBytes(16).toString('base64url'),
      jwtKey,
      x509LastExpiry: 0,
      jwtLastExpiry: 0,
      x509Published: true,
      jwtPublished: true,
    },
    p.upstream,
  );
}
