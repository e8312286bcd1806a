/**
 * The CA's persisted state document: its generations as JSON, private keys sealed under the KEK
 * (bound to trust domain, generation and key), and its reading back, refusing a document that is
 * corrupt, of another trust domain or made in the other mode. Where the text is kept is a
 * `CaStateStore`'s job (`state.ts`).
 */
import { createPrivateKey } from 'node:crypto';
import { parseCert } from '../spiffe/cert.js';
import { spkiOf } from './certificate.js';
import { CaError } from './errors.js';
import type { Generation, GenerationMaterial } from './generation.js';
import type { Kek, SealedKey } from './kek.js';
import { exportPkcs8 } from './keys.js';

interface PersistedGeneration {
  id: string;
  status: Generation['status'];
  notBefore: string;
  notAfter: string;
  caCert: string;
  caKey: SealedKey;
  jwtKid: string;
  jwtKey: SealedKey;
  x509LastExpiry: number;
  jwtLastExpiry: number;
  x509Published: boolean;
  jwtPublished: boolean;
}

interface PersistedState {
  version: 1;
  trustDomain: string;
  mode: 'self-signed' | 'upstream';
  sequence: number;
  generations: PersistedGeneration[];
}

/** Whose state it is (checked on load) and the KEK that seals its keys. */
export interface StateOwner {
  trustDomain: string;
  mode: PersistedState['mode'];
  kek: Kek;
}

/** The additional data a generation's sealed key is bound to. */
function aad(owner: StateOwner, g: { id: string }, what: 'x509' | 'jwt'): string {
  return `nevertrust-ca/${owner.trustDomain}/${g.id}/${what}`;
}

/** The state document of `gens` at `sequence`, keys sealed. */
export function encodeState(owner: StateOwner, sequence: number, gens: readonly Generation[]): string {
  const state: PersistedState = {
    version: 1,
    trustDomain: owner.trustDomain,
    mode: owner.mode,
    sequence,
    generations: gens.map((g) => ({
      id: g.id,
      status: g.status,
      notBefore: new Date(g.notBefore).toISOString(),
      notAfter: new Date(g.notAfter).toISOString(),
      caCert: g.caCert.toString('base64'),
      caKey: owner.kek.seal(exportPkcs8(g.caKey), aad(owner, g, 'x509')),
      jwtKid: g.jwtKid,
      jwtKey: owner.kek.seal(exportPkcs8(g.jwtKey), aad(owner, g, 'jwt')),
      x509LastExpiry: g.x509LastExpiry,
      jwtLastExpiry: g.jwtLastExpiry,
      x509Published: g.x509Published,
      jwtPublished: g.jwtPublished,
    })),
  };
  return JSON.stringify(state, null, 2);
}

/**
 * Reads a state document back: its sequence and generations, keys opened and checked against their
 * certificates. The active generation's expiries are taken as its own expiry, the worst case.
 *
 * @throws {CaError} ERR_CA_STATE_CORRUPT / ERR_CA_STATE_MISMATCH; {@link KekError} when the KEK does not open a key
 */
export function decodeState(owner: StateOwner, text: string): { sequence: number; generations: GenerationMaterial[] } {
  let s: PersistedState;
  try {
    s = JSON.parse(text) as PersistedState;
  } catch {
    throw new CaError('ERR_CA_STATE_CORRUPT', 'the CA state is not valid JSON');
  }
  if (s?.version !== 1 || !Array.isArray(s.generations) || typeof s.sequence !== 'number') {
    throw new CaError('ERR_CA_STATE_CORRUPT', 'the CA state has an unknown format');
  }
  if (s.trustDomain !== owner.trustDomain) {
    throw new CaError(
      'ERR_CA_STATE_MISMATCH',
      `the CA state belongs to trust domain ${s.trustDomain}, not ${owner.trustDomain}`,
    );
  }
  if (s.mode !== owner.mode) {
    throw new CaError(
      'ERR_CA_STATE_MISMATCH',
      `the CA state was made in ${s.mode} mode but the CA is configured for ${owner.mode}`,
    );
  }
  const generations = s.generations.map((p): GenerationMaterial => {
    const caKey = createPrivateKey({
      key: owner.kek.open(p.caKey, aad(owner, p, 'x509')),
      format: 'der',
      type: 'pkcs8',
    });
    const jwtKey = createPrivateKey({
      key: owner.kek.open(p.jwtKey, aad(owner, p, 'jwt')),
      format: 'der',
      type: 'pkcs8',
    });
    const caCert = Buffer.from(p.caCert, 'base64');
    if (!spkiOf(caKey).equals(spkiOf(parseCert(caCert).node.publicKey))) {
      throw new CaError('ERR_CA_STATE_CORRUPT', `generation ${p.id}: the CA key does not match its certificate`);
    }
    const notAfter = Date.parse(p.notAfter);
    // The active generation may have signed more after the last save: assume the worst (its own expiry).
    const conservative = (v: number) => (p.status === 'active' ? Math.max(v, notAfter) : v);
    return {
      id: p.id,
      status: p.status,
      notBefore: Date.parse(p.notBefore),
      notAfter,
      caCert,
      caKey,
      jwtKid: p.jwtKid,
      jwtKey,
      x509LastExpiry: conservative(p.x509LastExpiry),
      jwtLastExpiry: conservative(p.jwtLastExpiry),
      x509Published: p.x509Published,
      jwtPublished: p.jwtPublished,
    };
  });
  return { sequence: s.sequence, generations };
}
