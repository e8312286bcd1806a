/**
 * The registry of identity-assertion keys: sidecars register the public half of their ephemeral
 * signing keys on the agent port (mTLS, authenticated by their X.509-SVID), and apps fetch them as a
 * JWKS from the API port to verify the assertions those sidecars forward (`nevertrust/assertion`).
 *
 * A key is bound to the SPIFFE ID that registered it and published under it (JWK member
 * `spiffe_id`, and `?issuer=` selects one workload's keys), so a workload can only ever vouch as
 * itself. The server computes the kid (RFC 7638 thumbprint) and accepts nothing but an EC P-256
 * public key: a private member is refused, never stored, never echoed. Lifetimes are capped, each
 * workload holds a bounded number of keys (the soonest to expire are dropped beyond it), expired keys
 * are purged. State lives in the store's kv table, one document per SPIFFE ID, written with
 * compare-and-set so several servers on one PostgreSQL cannot lose each other's keys.
 */
import { createPublicKey } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { calculateJwkThumbprint } from 'jose';
import {
  ASSERTION_JWKS_PATH,
  ASSERTION_KEYS_PATH,
  type AssertionJwk,
  type AssertionKeyRecord,
  type AssertionKeyResponse,
  assertionKeyRequestSchema,
  assertionKeyToJwk,
  PRIVATE_JWK_MEMBERS,
} from '../../api/assertion-keys.js';
import { parseSpiffeId, SpiffeIdError } from '../../spiffe/index.js';
import { StoreConflictError } from '../../store/index.js';
import { PeerSvidError, verifyPeerSvid } from '../peer-svid.js';
import { BodyError } from '../../util/http-body.js';
import { HttpError, readJson, sendJson } from '../router.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { AgentPortRoute } from './agent-endpoint.js';
import type { CaHandle } from './ca.js';
import { RateLimiter } from '../rate-limiter.js';
import { ASSERTION_KEYS_KV_NS, parseKeyDoc } from '../assertion-key-store.js';

const KV_NS = ASSERTION_KEYS_KV_NS;
const MAX_BODY_BYTES = 8 * 1024;
const CAS_ATTEMPTS = 5;

/** Options of {@link assertionKeysPlugin}. */
export interface AssertionKeysOptions {
  ca: CaHandle;
  /**
   * Keys one SPIFFE ID may hold (default 16). A signer holds at most two at a time (current, and the
   * previous one until its last token expires), but replicas of one service share their SPIFFE ID,
   * hence more than the few one process needs. Beyond it, the keys that expire soonest are dropped.
   */
  maxKeysPerIdentity?: number;
  /** Longest accepted key lifetime, seconds (default 25 h). */
  maxLifetimeSeconds?: number;
  /** `cache-control: max-age` of the JWKS (default 60 s): shorter than the signer's prepublish time. */
  jwksMaxAgeSeconds?: number;
  /** How often expired keys are removed from the store (default 5 min). */
  purgeIntervalMs?: number;
  /** Registrations per SPIFFE ID: burst and refill per minute (default 30 and 30). */
  registerBurst?: number;
  registerPerMinute?: number;
}

type StoredKey = AssertionKeyRecord;

/**
 * The assertion-key registry: `POST /workload/v1/assertion-keys` on the agent port (pass
 * `agentRoutes` to `agentEndpointPlugin`) and `GET /v1/assertion-keys/jwks.json` on the API port.
 * Register it before the agent endpoint.
 *
 * @example
 * ```ts
 * const ca = caPlugin();
 * const keys = assertionKeysPlugin({ ca: ca.handle });
 * startServer({ config, logger, plugins: [ca, keys, agentEndpointPlugin({ ca: ca.handle, routes: keys.agentRoutes })] });
 * ```
 */
export function assertionKeysPlugin(opts: AssertionKeysOptions): ServerPlugin & {
  readonly agentRoutes: readonly AgentPortRoute[];
} {
  const maxKeys = opts.maxKeysPerIdentity ?? 16;
  const maxLifetimeMs = (opts.maxLifetimeSeconds ?? 25 * 3600) * 1000;
  const maxAge = opts.jwksMaxAgeSeconds ?? 60;
  const limiter = new RateLimiter(opts.registerBurst ?? 30, (opts.registerPerMinute ?? 30) / 60);
  let ctx: ServerContext | undefined;
  let purgeTimer: NodeJS.Timeout | undefined;

  const register = async (req: IncomingMessage, res: ServerResponse) => {
    if (!ctx) throw new HttpError(503, 'starting', 'the assertion key registry is not ready yet');
    const { store, events } = ctx;
    const ip = req.socket.remoteAddress;
    let owner: string | undefined;
    const refuse: (status: number, error: string, reason: string, details?: Record<string, unknown>) => never = (
      status,
      error,
      reason,
      details,
    ) => {
      events.record({
        kind: 'admin.action',
        outcome: 'deny',
        source: { id: owner, ip },
        target: { resource: ASSERTION_KEYS_PATH, method: 'POST' },
        reason: `assertion key refused: ${reason}`,
        ...(details ? { details } : {}),
      });
      throw new HttpError(status, error, reason);
    };

    try {
      // Any workload of the trust domain (the bundle in force is only ours): no agent record needed.
      owner = verifyPeerSvid(req.socket as TLSSocket, opts.ca.current().bundle()).spiffeId.toString();
    } catch (e) {
      if (e instanceof PeerSvidError) refuse(401, 'unauthenticated', e.message);
      throw e;
    }
    if (!limiter.take(owner)) refuse(429, 'rate_limited', `too many key registrations for ${owner}; wait a minute`);

    let raw: unknown;
    try {
      raw = await readJson(req, MAX_BODY_BYTES);
    } catch (e) {
      if (e instanceof BodyError && e.status === 413)
        refuse(413, 'body_too_large', `request body over ${MAX_BODY_BYTES} bytes`);
      if (e instanceof HttpError) refuse(e.status, e.error, e.message);
      throw e;
    }
    const jwkIn = (raw as { jwk?: unknown } | undefined)?.jwk;
    if (jwkIn && typeof jwkIn === 'object') {
      const present = PRIVATE_JWK_MEMBERS.filter((m) => Object.hasOwn(jwkIn, m));
      if (present.length > 0)
        refuse(
          400,
          'private_key_refused',
          `jwk must be a public key: private member ${present.join(', ')} refused (the key was not stored)`,
        );
    }
    const parsed = assertionKeyRequestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      refuse(
        400,
        'invalid_request',
        `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'} (expected {jwk: {kty: "EC", crv: "P-256", x, y}, expires_at})`,
      );
    }
    const { jwk, expires_at } = parsed.data;
    try {
      // Refuses coordinates that are not a point on P-256 (an invalid-curve key).
      createPublicKey({ key: jwk, format: 'jwk' });
    } catch {
      refuse(400, 'invalid_jwk', 'jwk: x and y are not a point on P-256');
    }
    const now = Date.now();
    const expiresAt = Date.parse(expires_at);
    if (!(expiresAt > now)) refuse(400, 'invalid_expiry', 'expires_at must be in the future');
    if (expiresAt - now > maxLifetimeMs)
      refuse(400, 'invalid_expiry', `expires_at must be at most ${maxLifetimeMs / 3_600_000} h from now`);
    const kid = await calculateJwkThumbprint(jwk, 'sha256');

    let outcome: { created: boolean; dropped: string[] } | undefined;
    for (let attempt = 0; attempt < CAS_ATTEMPTS && !outcome; attempt++) {
      // A kid names one owner: another workload re-registering a published public key is refused.
      for (const doc of await store.kv.list(KV_NS)) {
        if (doc.key !== owner && parseKeyDoc(doc.value, doc.key).some((k) => k.kid === kid && k.expires_at > now))
          refuse(409, 'kid_in_use', `kid ${kid} is registered by another workload`, { kid });
      }
      const entry = await store.kv.get(KV_NS, owner);
      const live = parseKeyDoc(entry?.value, owner).filter((k) => k.expires_at > now);
      // The same key again (a retry after a lost answer) only moves its expiry.
      const created = !live.some((k) => k.kid === kid);
      const keys = live.filter((k) => k.kid !== kid);
      const mine: StoredKey = { kid, x: jwk.x, y: jwk.y, expires_at: expiresAt, registered_at: now };
      // Beyond the cap, drop the keys that expire soonest (their tokens are the likeliest gone
      // already); the key being registered is always kept.
      keys.sort((a, b) => b.expires_at - a.expires_at);
      const dropped = keys.splice(Math.max(0, maxKeys - 1)).map((k) => k.kid);
      try {
        await store.kv.put(KV_NS, owner, JSON.stringify({ keys: [mine, ...keys] }), entry?.version ?? 0);
        outcome = { created, dropped };
      } catch (e) {
        if (!(e instanceof StoreConflictError)) throw e;
      }
    }
    if (!outcome) return refuse(409, 'conflict', 'the keys of this workload changed concurrently; retry');
    const { created, dropped } = outcome;
    events.record({
      kind: 'admin.action',
      outcome: 'allow',
      source: { id: owner, ip },
      target: { id: kid, resource: ASSERTION_KEYS_PATH, method: 'POST' },
      reason: created ? 'assertion key registered' : 'assertion key re-registered',
      details: { kid, expires_at: new Date(expiresAt).toISOString(), ...(dropped.length ? { dropped } : {}) },
    });
    const answer: AssertionKeyResponse = { kid, spiffe_id: owner, expires_at: new Date(expiresAt).toISOString() };
    sendJson(res, created ? 201 : 200, answer);
  };

  const jwks = async (_req: IncomingMessage, res: ServerResponse, url: URL) => {
    const store = (ctx as ServerContext).store;
    const issuers = url.searchParams.getAll('issuer');
    if (issuers.length > 1) throw new HttpError(400, 'invalid_issuer', 'give at most one issuer');
    const now = Date.now();
    const docs: { owner: string; value: string }[] = [];
    if (issuers.length === 1) {
      let owner: string;
      try {
        owner = parseSpiffeId(issuers[0] as string).toString();
      } catch (e) {
        const code = e instanceof SpiffeIdError ? e.code : 'invalid';
        throw new HttpError(400, 'invalid_issuer', `issuer must be a SPIFFE ID (${code})`);
      }
      const entry = await store.kv.get(KV_NS, owner);
      if (entry) docs.push({ owner, value: entry.value });
    } else {
      for (const d of await store.kv.list(KV_NS)) docs.push({ owner: d.key, value: d.value });
    }
    const keys: AssertionJwk[] = docs.flatMap((d) =>
      parseKeyDoc(d.value, d.owner)
        .filter((k) => k.expires_at > now)
        .map((k) => assertionKeyToJwk(d.owner, k)),
    );
    sendJson(res, 200, { keys }, { 'cache-control': `public, max-age=${maxAge}` });
  };

  /** Removes expired keys (and documents left empty), compare-and-set: a concurrent write wins. */
  const purge = async () => {
    if (!ctx) return;
    const { store } = ctx;
    const now = Date.now();
    for (const d of await store.kv.list(KV_NS)) {
      let keys: StoredKey[];
      try {
        keys = parseKeyDoc(d.value, d.key);
      } catch (e) {
        ctx.logger.error({ err: e, owner: d.key }, 'assertion keys: malformed document');
        continue;
      }
      const live = keys.filter((k) => k.expires_at > now);
      if (live.length === keys.length) continue;
      try {
        if (live.length === 0) await store.kv.deleteIf(KV_NS, d.key, d.version);
        else await store.kv.put(KV_NS, d.key, JSON.stringify({ keys: live }), d.version);
      } catch (e) {
        if (!(e instanceof StoreConflictError)) throw e;
      }
    }
  };

  return {
    name: 'assertion-keys',
    agentRoutes: [{ method: 'POST', path: ASSERTION_KEYS_PATH, handler: register }],
    async register(c: ServerContext) {
      ctx = c;
      c.router.on('GET', ASSERTION_JWKS_PATH, jwks);
      purgeTimer = setInterval(
        () => {
          purge().catch((e: unknown) => c.logger.error({ err: e }, 'assertion key purge failed'));
        },
        opts.purgeIntervalMs ?? 5 * 60_000,
      );
      purgeTimer.unref();
    },
    close() {
      clearInterval(purgeTimer);
    },
  };
}
