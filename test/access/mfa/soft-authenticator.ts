/**
 * A software WebAuthn authenticator for tests: a P-256 key from node:crypto, authenticator data,
 * clientDataJSON and a `none` attestation object built by hand (with a minimal CBOR encoder), so
 * every field an attacker controls can be set wrong on purpose.
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';

type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor>;

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Minimal CBOR (RFC 8949): integers, byte and text strings, arrays, maps. */
export function cbor(v: Cbor): Buffer {
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'string') {
    const t = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, t.length), t]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([head(2, v.length), v]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  const parts: Buffer[] = [head(5, v.size)];
  for (const [k, x] of v) parts.push(cbor(k), cbor(x));
  return Buffer.concat(parts);
}

const b64u = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();

export interface Ceremony {
  origin?: string;
  rpId?: string;
  /** User verified (default true). */
  uv?: boolean;
  /** User present (default true). */
  up?: boolean;
  type?: string;
  /** The counter to report; default: the next value. */
  counter?: number;
  /** Sign with this other authenticator's key (a forged assertion). */
  signWith?: SoftAuthenticator;
}

export class SoftAuthenticator {
  readonly credentialId = randomBytes(32);
  readonly #key: KeyObject;
  readonly #publicJwk: { x: string; y: string };
  counter = 0;

  constructor(readonly defaults: { origin: string; rpId: string; backedUp?: boolean; counterStep?: number }) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#key = privateKey;
    this.#publicJwk = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  }

  get id(): string {
    return b64u(this.credentialId);
  }

  #flags(c: Ceremony, attested: boolean): number {
    let f = 0;
    if (c.up !== false) f |= 0x01;
    if (c.uv !== false) f |= 0x04;
    if (this.defaults.backedUp) f |= 0x08 | 0x10;
    if (attested) f |= 0x40;
    return f;
  }

  #authData(c: Ceremony, counter: number, attested?: Buffer): Buffer {
    const ctr = Buffer.alloc(4);
    ctr.writeUInt32BE(counter);
    return Buffer.concat([
      sha256(c.rpId ?? this.defaults.rpId),
      Buffer.from([this.#flags(c, attested !== undefined)]),
      ctr,
      ...(attested ? [attested] : []),
    ]);
  }

  #clientData(type: string, challenge: string, c: Ceremony): Buffer {
    return Buffer.from(
      JSON.stringify({ type: c.type ?? type, challenge, origin: c.origin ?? this.defaults.origin, crossOrigin: false }),
    );
  }

  /** A `navigator.credentials.create()` answer to registration options. */
  register(options: { challenge: string }, c: Ceremony = {}): Record<string, unknown> {
    const cose = cbor(
      new Map<number, Cbor>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(this.#publicJwk.x, 'base64url')],
        [-3, Buffer.from(this.#publicJwk.y, 'base64url')],
      ]),
    );
    const idLen = Buffer.alloc(2);
    idLen.writeUInt16BE(this.credentialId.length);
    const attested = Buffer.concat([Buffer.alloc(16), idLen, this.credentialId, cose]);
    const authData = this.#authData(c, c.counter ?? this.counter, attested);
    const attestationObject = cbor(
      new Map<string, Cbor>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: {
        clientDataJSON: b64u(this.#clientData('webauthn.create', options.challenge, c)),
        attestationObject: b64u(attestationObject),
        transports: ['internal'],
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /** A `navigator.credentials.get()` answer; the counter moves on unless `c.counter` says otherwise. */
  assert(options: { challenge: string }, c: Ceremony = {}): Record<string, unknown> {
    if (c.counter === undefined) this.counter += this.defaults.counterStep ?? 1;
    const counter = c.counter ?? this.counter;
    const authData = this.#authData(c, counter);
    const clientData = this.#clientData('webauthn.get', options.challenge, c);
    const signer = c.signWith ?? this;
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientData)]), signer.#key);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientData),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
      },
      clientExtensionResults: {},
    };
  }
}
