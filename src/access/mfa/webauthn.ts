/**
 * WebAuthn with @simplewebauthn/server 13: options for the browser and verification of its answers,
 * with the product's fixed choices (attestation `none`, user verification required, ES256/EdDSA/RS256)
 * and a short reason for every refusal (audit and the page; never the library's text with values).
 */
import { createHash } from 'node:crypto';
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { z } from 'zod';

/** The relying party of a proxy: RP ID, the origins allowed under it, and its display name. */
export interface RelyingParty {
  id: string;
  origins: string[];
  name: string;
}

/** Challenges live 5 minutes. */
export const WEBAUTHN_TIMEOUT_MS = 5 * 60 * 1000;

const b64url = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^[A-Za-z0-9_-]+$/, 'base64url');
const transports = z.array(z.string().max(32)).max(8).optional();

/** The shape of a registration answer (what the browser library posts); the library checks the rest. */
const registrationSchema = z.object({
  id: b64url,
  rawId: b64url,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: b64url,
    attestationObject: z
      .string()
      .min(1)
      .max(65536)
      .regex(/^[A-Za-z0-9_-]+$/),
    transports,
  }),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});

const authenticationSchema = z.object({
  id: b64url,
  rawId: b64url,
  type: z.literal('public-key'),
  response: z.object({
    clientDataJSON: b64url,
    authenticatorData: b64url,
    signature: b64url,
    userHandle: z.string().max(512).optional(),
  }),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});

export function parseRegistrationResponse(v: unknown): RegistrationResponseJSON | undefined {
  const r = registrationSchema.safeParse(v);
  return r.success ? (r.data as RegistrationResponseJSON) : undefined;
}

export function parseAuthenticationResponse(v: unknown): AuthenticationResponseJSON | undefined {
  const r = authenticationSchema.safeParse(v);
  return r.success ? (r.data as AuthenticationResponseJSON) : undefined;
}

/** A short, value-free reason for a refusal thrown by the library. */
export function webauthnReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  // Matched on the library's fixed words only: its messages go on to quote the values received.
  if (/^Unexpected \w+ response origin/.test(m)) return 'wrong_origin';
  if (/^Unexpected RP ID hash/.test(m)) return 'wrong_rp_id';
  if (/^Unexpected \w+ response challenge|^Custom challenge verifier/.test(m)) return 'wrong_challenge';
  if (/^User verification/.test(m)) return 'user_not_verified';
  if (/^User (presence was required|not present)/.test(m)) return 'user_not_present';
  if (/^Response counter value/.test(m)) return 'counter';
  if (/^Unexpected \w+ response type/.test(m)) return 'wrong_type';
  if (/^Unexpected public key alg/.test(m)) return 'unsupported_algorithm';
  return 'invalid_response';
}

/**
 * The WebAuthn user handle of a person: a hash, so that the provider's subject never reaches an
 * authenticator (and two providers' `sub` values cannot collide).
 */
export function webauthnUserId(issuer: string, sub: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`nevertrust-webauthn\0${issuer}\0${sub}`).digest());
}

export interface KnownCredential {
  id: string;
  transports: string[];
}

export async function registrationOptions(args: {
  rp: RelyingParty;
  userId: Uint8Array;
  userName: string;
  exclude: KnownCredential[];
}): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: args.rp.name,
    rpID: args.rp.id,
    userID: Uint8Array.from(args.userId),
    userName: args.userName,
    userDisplayName: args.userName,
    timeout: WEBAUTHN_TIMEOUT_MS,
    attestationType: 'none',
    excludeCredentials: args.exclude.map((c) => ({ id: c.id, transports: c.transports as never })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
  });
}

export async function authenticationOptions(args: {
  rp: RelyingParty;
  allow: KnownCredential[];
}): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({
    rpID: args.rp.id,
    allowCredentials: args.allow.map((c) => ({ id: c.id, transports: c.transports as never })),
    userVerification: 'required',
    timeout: WEBAUTHN_TIMEOUT_MS,
  });
}

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface NewCredential {
  id: string;
  publicKey: string;
  counter: number;
  transports: string[];
  aaguid: string;
  backedUp: boolean;
  userVerified: boolean;
}

/** Verifies a registration against the challenge and the relying party (UV required). */
export async function verifyRegistration(
  response: RegistrationResponseJSON,
  challenge: string,
  rp: RelyingParty,
): Promise<Checked<NewCredential>> {
  try {
    const v = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: rp.origins,
      expectedRPID: rp.id,
      requireUserPresence: true,
      requireUserVerification: true,
    });
    if (!v.verified) return { ok: false, reason: 'invalid_response' };
    const info = v.registrationInfo;
    return {
      ok: true,
      value: {
        id: info.credential.id,
        publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
        counter: info.credential.counter,
        transports: info.credential.transports ?? response.response.transports ?? [],
        aaguid: info.aaguid,
        backedUp: info.credentialBackedUp,
        userVerified: info.userVerified,
      },
    };
  } catch (e) {
    return { ok: false, reason: webauthnReason(e) };
  }
}

export interface Assertion {
  newCounter: number;
  backedUp: boolean;
  userVerified: boolean;
}

/**
 * Verifies an assertion with a stored credential (UV required). The counter rule is enforced here
 * as well as in the library: a counter that does not increase, when either side is non-zero, is a
 * cloned authenticator or a replay.
 */
export async function verifyAssertion(
  response: AuthenticationResponseJSON,
  challenge: string,
  rp: RelyingParty,
  credential: { id: string; publicKey: string; counter: number; transports: string[] },
): Promise<Checked<Assertion>> {
  try {
    const v = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: rp.origins,
      expectedRPID: rp.id,
      credential: {
        id: credential.id,
        publicKey: new Uint8Array(Buffer.from(credential.publicKey, 'base64url')),
        counter: credential.counter,
        transports: credential.transports as never,
      },
      requireUserVerification: true,
    });
    if (!v.verified) return { ok: false, reason: 'bad_signature' };
    const info = v.authenticationInfo;
    if (!info.userVerified) return { ok: false, reason: 'user_not_verified' };
    if ((info.newCounter > 0 || credential.counter > 0) && info.newCounter <= credential.counter) {
      return { ok: false, reason: 'counter' };
    }
    return {
      ok: true,
      value: { newCounter: info.newCounter, backedUp: info.credentialBackedUp, userVerified: info.userVerified },
    };
  } catch (e) {
    return { ok: false, reason: webauthnReason(e) };
  }
}

/** amr (RFC 8176) of a WebAuthn success: `hwk` device-bound, `swk` synced passkey; `user` with UV. */
export function webauthnMethods(a: { backedUp: boolean; userVerified: boolean }): string[] {
  return [a.backedUp ? 'swk' : 'hwk', ...(a.userVerified ? ['user'] : [])];
}
