/**
 * The transmitter side of SSF: nevertrust's own revocations as signed SETs for other receivers, and
 * the transmitter metadata served at `/.well-known/ssf-configuration`. Pure: no endpoints or streams
 * here (they come with the rest of #23). Keys follow the CAEP interoperability profile: RS256 with
 * an RSA key of at least 2048 bits, or ES256 on P-256 when configured.
 *
 * @example
 * ```ts
 * const signer = createSetSigner({ issuer: 'https://nt.example', key: privateKey, kid: 'k1' });
 * const set = setForSignal(signal);
 * if (set) await signSet(signer, { audience: 'https://rp.example', ...set });
 * ```
 */
import { createPublicKey, KeyObject, randomUUID, type webcrypto } from 'node:crypto';
import { exportJWK, type JWK, SignJWT } from 'jose';
import type { Signal, UserRef } from '../../api/signals.js';
import { CAEP, RISC } from './events.js';
import { SsfError } from './errors.js';
import { SET_TYP, SUBJECT_EMAIL_PATTERN, type SubjectId } from './set.js';

/** Algorithms our transmitter signs with. */
export type SetSigningAlg = 'RS256' | 'ES256';
/** Smallest RSA modulus accepted for RS256 (CAEP interoperability profile). */
export const MIN_RSA_BITS = 2048;

/** A configured SET signer. */
export interface SetSigner {
  readonly issuer: string;
  readonly alg: SetSigningAlg;
  readonly kid: string;
  readonly privateKey: KeyObject;
  /** The public key as a JWK (`kid`, `alg`, `use: sig`), for the transmitter's `jwks_uri`. */
  publicJwk(): Promise<JWK>;
}

export interface SetSignerOptions {
  /** Our transmitter's issuer (`iss` of every SET). */
  issuer: string;
  /** The private key: a node KeyObject or a WebCrypto CryptoKey. */
  key: KeyObject | webcrypto.CryptoKey;
  /** The key id published in the JWKS. */
  kid: string;
  /** Default RS256. */
  alg?: SetSigningAlg;
}

function badKey(message: string): never {
  throw new SsfError('ERR_SSF_SIGNING_KEY', message);
}

/** Checks the key against the alg (RSA ≥ 2048 bits for RS256, P-256 for ES256) and builds a signer. */
export function createSetSigner(options: SetSignerOptions): SetSigner {
  const alg = options.alg ?? 'RS256';
  if (!URL.canParse(options.issuer)) throw new SsfError('ERR_SSF_BAD_CONFIG', 'issuer must be a URL');
  if (options.kid.length === 0) badKey('kid must not be empty');
  const key = options.key instanceof KeyObject ? options.key : KeyObject.from(options.key);
  if (key.type !== 'private') badKey('the SET signing key must be a private key');
  const details = key.asymmetricKeyDetails ?? {};
  if (alg === 'RS256') {
    if (key.asymmetricKeyType !== 'rsa') badKey('RS256 needs an RSA key');
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS) badKey(`RS256 needs an RSA key of at least ${MIN_RSA_BITS} bits`);
  } else if (alg === 'ES256') {
    if (key.asymmetricKeyType !== 'ec' || details.namedCurve !== 'prime256v1') badKey('ES256 needs a P-256 key');
  } else {
    badKey(`alg ${String(alg)} is not RS256 or ES256`);
  }
  const publicKey = createPublicKey(key);
  return {
    issuer: options.issuer,
    alg,
    kid: options.kid,
    privateKey: key,
    async publicJwk() {
      const jwk = await exportJWK(publicKey);
      return { ...jwk, kid: options.kid, alg, use: 'sig' };
    },
  };
}

/** What to sign: the subject and events of one SET. */
export interface SetContent {
  subject: SubjectId;
  /** Event-type URI → payload. */
  events: Record<string, Record<string, unknown>>;
}

export interface SignSetOptions extends SetContent {
  /** The receiver (`aud`). */
  audience: string | string[];
  /** Default a random UUID. */
  jti?: string;
  /** Default now. */
  issuedAt?: Date;
  /** RFC 8417 `txn`, to tie SETs of one transaction together. */
  txn?: string;
}

/** Signs a SET: `typ: secevent+jwt`, `iss`, `aud`, `iat`, `jti`, `sub_id` (SSF 1.0), `events`; no `exp`. */
export async function signSet(signer: SetSigner, options: SignSetOptions): Promise<string> {
  if (Object.keys(options.events).length === 0) throw new SsfError('ERR_SSF_BAD_CONFIG', 'a SET needs an event');
  const jwt = new SignJWT({
    sub_id: options.subject,
    events: options.events,
    ...(options.txn === undefined ? {} : { txn: options.txn }),
  })
    .setProtectedHeader({ alg: signer.alg, typ: SET_TYP, kid: signer.kid })
    .setIssuer(signer.issuer)
    .setAudience(options.audience)
    .setJti(options.jti ?? randomUUID())
    .setIssuedAt(options.issuedAt ?? new Date());
  return jwt.sign(signer.privateKey);
}

/** How a person is named to other receivers: `iss_sub` when known, else `email`, else `opaque`. */
function subjectOfUser(user: UserRef): SubjectId {
  if (user.issuer !== undefined && user.sub !== undefined)
    return { format: 'iss_sub', iss: user.issuer, sub: user.sub };
  if (SUBJECT_EMAIL_PATTERN.test(user.user)) return { format: 'email', email: user.user };
  return { format: 'opaque', id: user.user };
}

/** CAEP `risk-level-change` level of a score. */
export function riskLevelOf(score: number): 'LOW' | 'MEDIUM' | 'HIGH' {
  return score >= 0.7 ? 'HIGH' : score >= 0.3 ? 'MEDIUM' : 'LOW';
}

/**
 * The SET content that tells other receivers about one of our signals, or undefined for signals
 * that stay inside nevertrust (workload entries, agents and SVIDs have no SSF event type).
 * Person signals: disabled → RISC `account-disabled`; logged out and credentials changed → CAEP
 * `session-revoked` for the person (we do not know which credential, and CAEP's
 * `credential-change` requires its type). Device revoked, lost or non-compliant → CAEP
 * `device-compliance-change` to `not-compliant`.
 */
export function setForSignal(signal: Signal): SetContent | undefined {
  const common = {
    event_timestamp: Math.floor(Date.parse(signal.at) / 1000),
    reason_admin: { en: signal.reason },
  };
  switch (signal.kind) {
    case 'session.revoked':
      return { subject: { format: 'opaque', id: signal.sessionId }, events: { [CAEP.sessionRevoked]: common } };
    case 'user.logged-out':
    case 'user.credentials-changed':
      return { subject: subjectOfUser(signal.user), events: { [CAEP.sessionRevoked]: common } };
    case 'user.disabled':
      return { subject: subjectOfUser(signal.user), events: { [RISC.accountDisabled]: common } };
    case 'device.revoked':
    case 'device.lost':
    case 'device.non-compliant':
      return {
        subject: { format: 'opaque', id: signal.deviceId },
        events: {
          [CAEP.deviceComplianceChange]: { ...common, previous_status: 'compliant', current_status: 'not-compliant' },
        },
      };
    case 'risk.set': {
      const target = signal.target;
      const subject =
        target.type === 'user' ? subjectOfUser(target.user) : { format: 'opaque' as const, id: target.deviceId };
      const principal = target.type === 'user' ? 'USER' : 'DEVICE';
      return {
        subject,
        events: { [CAEP.riskLevelChange]: { ...common, principal, current_level: riskLevelOf(signal.score) } },
      };
    }
    case 'workload.entry-deleted':
    case 'agent.banned':
    case 'svid.revoked':
      return undefined;
  }
}

/** SSF delivery method URNs. */
export const SSF_DELIVERY_PUSH = 'urn:ietf:rfc:8935';
export const SSF_DELIVERY_POLL = 'urn:ietf:rfc:8936';

/** Endpoint paths under the issuer, when not given (where the server will serve them). */
export const SSF_DEFAULT_PATHS = {
  jwks: '/ssf/jwks.json',
  configuration: '/ssf/stream',
  status: '/ssf/status',
  addSubject: '/ssf/subjects:add',
  removeSubject: '/ssf/subjects:remove',
  verification: '/ssf/verify',
} as const;

export interface SsfConfigurationOptions {
  /** Our transmitter's issuer: an https URL (http only for localhost). */
  issuer: string;
  /** Absolute endpoint URLs; each defaults to {@link SSF_DEFAULT_PATHS} under the issuer. */
  jwksUri?: string;
  configurationEndpoint?: string;
  statusEndpoint?: string;
  addSubjectEndpoint?: string;
  removeSubjectEndpoint?: string;
  verificationEndpoint?: string;
}

/** The transmitter metadata (SSF 1.0 §7.1) served at `/.well-known/ssf-configuration`. */
export interface SsfConfiguration {
  spec_version: '1_0';
  issuer: string;
  jwks_uri: string;
  delivery_methods_supported: string[];
  configuration_endpoint: string;
  status_endpoint: string;
  add_subject_endpoint: string;
  remove_subject_endpoint: string;
  verification_endpoint: string;
  authorization_schemes: Array<{ spec_urn: string }>;
}

function httpsUrl(name: string, value: string): string {
  if (!URL.canParse(value)) throw new SsfError('ERR_SSF_BAD_CONFIG', `${name}: not a URL`);
  const u = new URL(value);
  const local = u.hostname === 'localhost' || u.hostname === '127.0.0.1' || u.hostname === '[::1]';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && local)) {
    throw new SsfError('ERR_SSF_BAD_CONFIG', `${name}: must be https (http only for localhost)`);
  }
  if (u.search || u.hash) throw new SsfError('ERR_SSF_BAD_CONFIG', `${name}: no query or fragment`);
  return value;
}

/**
 * Builds the transmitter metadata document. Pure; the server serves it next session.
 *
 * @example
 * ```ts
 * ssfConfiguration({ issuer: 'https://nt.example' }).jwks_uri; // 'https://nt.example/ssf/jwks.json'
 * ```
 */
export function ssfConfiguration(options: SsfConfigurationOptions): SsfConfiguration {
  const issuer = httpsUrl('issuer', options.issuer);
  const base = issuer.replace(/\/+$/, '');
  const at = (name: string, given: string | undefined, path: string) => httpsUrl(name, given ?? `${base}${path}`);
  return {
    spec_version: '1_0',
    issuer,
    jwks_uri: at('jwksUri', options.jwksUri, SSF_DEFAULT_PATHS.jwks),
    delivery_methods_supported: [SSF_DELIVERY_PUSH, SSF_DELIVERY_POLL],
    configuration_endpoint: at('configurationEndpoint', options.configurationEndpoint, SSF_DEFAULT_PATHS.configuration),
    status_endpoint: at('statusEndpoint', options.statusEndpoint, SSF_DEFAULT_PATHS.status),
    add_subject_endpoint: at('addSubjectEndpoint', options.addSubjectEndpoint, SSF_DEFAULT_PATHS.addSubject),
    remove_subject_endpoint: at(
      'removeSubjectEndpoint',
      options.removeSubjectEndpoint,
      SSF_DEFAULT_PATHS.removeSubject,
    ),
    verification_endpoint: at('verificationEndpoint', options.verificationEndpoint, SSF_DEFAULT_PATHS.verification),
    // The stream management API is OAuth-protected (CAEP interoperability profile).
    authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6749' }],
  };
}
