/**
 * The trust domain's certificate authority inside the server: CA state in the store (sealed under
 * the KEK), a rotation timer, the public bundle endpoint, and admin signing endpoints.
 *
 * Several servers may share one PostgreSQL. Each save is a compare-and-set on the stored state; a
 * server that loses the race, or notices that another server rotated, reloads the CA from the store
 * rather than overwriting it, so every server signs with keys that are in the published bundle.
 */
import { join, resolve } from 'node:path';
import {
  CaError,
  CertificateAuthority,
  type CaStateStore,
  certificatesToPem,
  loadOrCreateKek,
  loadUpstreamAuthority,
  type SigningPool,
} from '../../ca/index.js';
import type { Config } from '../../config/index.js';
import { parseSpiffeId, reservedIdReason, type SpiffeId } from '../../spiffe/index.js';
import { StoreConflictError, type Store } from '../../store/index.js';
import { type Handler, HttpError, type Route, readJson, sendJson, sendText } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext, type ServerPlugin } from '../server.js';

const KV_NS = 'ca';

/** CA state in the store's kv table, saved with compare-and-set against the version last seen. */
export class KvCaStateStore implements CaStateStore {
  private version = 0;
  constructor(
    private readonly store: Store,
    private readonly key: string,
  ) {}

  async load(): Promise<string | null> {
    const e = await this.store.kv.get(KV_NS, this.key);
    this.version = e?.version ?? 0;
    return e?.value ?? null;
  }

  async save(state: string): Promise<void> {
    this.version = await this.store.kv.put(KV_NS, this.key, state, this.version);
  }

  /** True when another writer saved since we last loaded or saved. */
  async changedElsewhere(): Promise<boolean> {
    const e = await this.store.kv.get(KV_NS, this.key);
    return (e?.version ?? 0) !== this.version;
  }
}

/**
 * Everything needed to open the trust domain's CA from a configuration and a store: the KEK (from
 * NEVERTRUST_KEK or the KEK file, created on first use), the optional upstream CA, the state store.
 * Used by the server and by CLI commands that work on a data dir directly.
 */
export async function caOpener(config: Config, store: Store, clock?: () => Date, signingPool?: SigningPool | null) {
  const kekFile = resolve(config.ca.kek_file ?? join(config.data_dir, 'kek'));
  const loaded = await loadOrCreateKek({ file: kekFile });
  const upstream =
    config.ca.upstream_cert_file && config.ca.upstream_key_file
      ? await loadUpstreamAuthority(config.ca.upstream_cert_file, config.ca.upstream_key_file)
      : undefined;
  const stateStore = new KvCaStateStore(store, config.trust_domain);
  const open = () =>
    CertificateAuthority.open({
      trustDomain: config.trust_domain,
      store: stateStore,
      kek: loaded.kek,
      keyType: config.ca.key_type,
      caTtlSeconds: config.ca.ttl,
      x509SvidTtlSeconds: config.ca.x509_svid_ttl,
      jwtSvidTtlSeconds: config.ca.jwt_svid_ttl,
      upstream,
      clock,
      signingPool,
    });
  return { kekGenerated: loaded.generated, kekFile, stateStore, open };
}

/** A handle whose CA may be replaced (after a reload); callers always go through `current()`. */
export interface CaHandle {
  current(): CertificateAuthority;
  /** Subscribe to bundle changes (rotation, reload). */
  onBundleChange(fn: () => void): () => void;
}

export interface CaPluginOptions {
  /** How often to advance rotation and look for other servers' changes (default 5 s). */
  tickMs?: number;
  clock?: () => Date;
  /** The CA's signing workers (default the process-wide pool; see CertificateAuthorityOptions). */
  signingPool?: SigningPool | null;
}

/** What the CA routes use: the CA, where to record issuance, and how to announce a bundle change. */
interface CaRouteDeps {
  handle: CaHandle;
  events: ServerContext['events'];
  trustDomain: string;
  notify(): void;
}

/** A SPIFFE ID this server may issue for: well formed, in its own trust domain and not reserved. */
function memberId(text: string, trustDomain: string): SpiffeId {
  let id: SpiffeId;
  try {
    id = parseSpiffeId(text);
  } catch (e) {
    // A malformed ID in the request is the caller's fault, whatever its parser throws.
    throw new HttpError(400, 'invalid_request', `spiffe_id: ${(e as Error).message}`);
  }
  if (id.trustDomain.name !== trustDomain) {
    throw new HttpError(400, 'invalid_request', `${text} is not in this server's trust domain ${trustDomain}`);
  }
  // The server's and the agents' identities are minted only by the server, for itself and attested agents.
  const reserved = reservedIdReason(id);
  if (reserved !== undefined) throw new HttpError(403, 'reserved_spiffe_id', reserved);
  return id;
}

/** `GET /v1/bundle`: public by design (SPIFFE bundle endpoint), it holds only public keys. JWKS or `?format=pem`. */
function showBundle({ handle }: CaRouteDeps): Handler {
  return (_req, res, url) => {
    const bundle = handle.current().bundle();
    if (url.searchParams.get('format') === 'pem') return sendText(res, 200, bundle.toPem(), 'application/x-pem-file');
    sendJson(res, 200, bundle.toJwks());
  };
}

/**
 * Records a refused issuance (every refusal is audited) and returns the error for the caller to
 * rethrow: dispatch() answers it (the caller's error 4xx, ours 500 without details).
 */
function auditedRefusal(
  events: CaRouteDeps['events'],
  kind: 'svid.issued' | 'jwt.issued',
  who: string,
  spiffeId: string,
  e: unknown,
): unknown {
  events.record({
    kind,
    outcome: 'deny',
    source: { id: who },
    target: { id: spiffeId },
    reason: e instanceof Error ? e.message : String(e),
  });
  return e;
}

/** `POST /v1/admin/x509/sign` `{csr, spiffe_id, ttl?, dns_names?}`: an X.509-SVID for a member ID. */
function signX509({ handle, events, trustDomain }: CaRouteDeps): AdminHandler {
  return async (req, res, _url, who) => {
    const body = ((await readJson(req)) ?? {}) as {
      csr?: unknown;
      spiffe_id?: unknown;
      ttl?: unknown;
      dns_names?: unknown;
    };
    const spiffeId = typeof body.spiffe_id === 'string' ? body.spiffe_id : '';
    try {
      if (typeof body.csr !== 'string') throw new HttpError(400, 'invalid_request', 'csr (PEM) is required');
      const id = memberId(spiffeId, trustDomain);
      const dnsNames = Array.isArray(body.dns_names) ? body.dns_names.map(String) : [];
      const ttl = typeof body.ttl === 'number' ? body.ttl : undefined;
      const svid = await handle
        .current()
        .signX509SvidFromCsrAsync({ csr: body.csr, spiffeId: id, dnsNames, ttlSeconds: ttl });
      events.record({
        kind: 'svid.issued',
        outcome: 'allow',
        source: { id: who.id },
        target: { id: svid.spiffeId.toString() },
        reason: 'admin x509 mint',
        details: { serial: svid.serialHex, not_after: svid.notAfter.toISOString(), dns_names: dnsNames },
      });
      sendJson(res, 200, {
        spiffe_id: svid.spiffeId.toString(),
        chain_pem: certificatesToPem(svid.chain),
        bundle_pem: handle.current().bundle().toPem(),
        serial: svid.serialHex,
        not_after: svid.notAfter.toISOString(),
      });
    } catch (e) {
      throw auditedRefusal(events, 'svid.issued', who.id, spiffeId, e);
    }
  };
}

/** `POST /v1/admin/jwt/mint` `{spiffe_id, audience, ttl?}`: a JWT-SVID for a member ID. */
function mintJwt({ handle, events, trustDomain }: CaRouteDeps): AdminHandler {
  return async (req, res, _url, who) => {
    const body = ((await readJson(req)) ?? {}) as { spiffe_id?: unknown; audience?: unknown; ttl?: unknown };
    const spiffeId = typeof body.spiffe_id === 'string' ? body.spiffe_id : '';
    try {
      const audience = Array.isArray(body.audience) ? body.audience.map(String) : [];
      if (audience.length === 0 || audience.some((a) => a.length === 0)) {
        throw new HttpError(400, 'invalid_request', 'at least one non-empty audience is required');
      }
      const id = memberId(spiffeId, trustDomain);
      const ttl = typeof body.ttl === 'number' ? body.ttl : undefined;
      const jwt = await handle.current().mintJwtSvid({ spiffeId: id, audience, ttlSeconds: ttl });
      events.record({
        kind: 'jwt.issued',
        outcome: 'allow',
        source: { id: who.id },
        target: { id: jwt.spiffeId.toString() },
        reason: 'admin jwt mint',
        details: { audience, kid: jwt.kid, expires_at: jwt.expiresAt.toISOString() },
      });
      sendJson(res, 200, {
        token: jwt.token,
        spiffe_id: jwt.spiffeId.toString(),
        expires_at: jwt.expiresAt.toISOString(),
      });
    } catch (e) {
      throw auditedRefusal(events, 'jwt.issued', who.id, spiffeId, e);
    }
  };
}

/** `GET /v1/admin/ca`: the CA's state (authorities, sequence, schedule). */
function showCa({ handle }: CaRouteDeps): AdminHandler {
  return (_req, res) => sendJson(res, 200, handle.current().toJSON());
}

/**
 * `POST /v1/admin/ca/rotate`: forces the next step of the rotation schedule now (prepare, or
 * activate the prepared CA), e.g. after a suspected key compromise; the retired CA stays in the
 * bundle until its SVIDs expire.
 */
function rotateCa({ handle, events, notify }: CaRouteDeps): AdminHandler {
  return async (_req, res, _url, who) => {
    const changed = await handle.current().rotate();
    events.record({
      kind: 'admin.action',
      outcome: 'allow',
      source: { id: who.id },
      target: { resource: 'ca.rotate' },
      reason: changed ? 'CA rotated' : 'CA rotation: nothing to do',
      details: { sequence: handle.current().sequence },
    });
    if (changed) notify();
    sendJson(res, 200, { changed, ...handle.current().toJSON() });
  };
}

/** The CA plugin's routes: the public bundle, and admin signing, minting, state and rotation. */
function caRoutes(ctx: ServerContext, deps: CaRouteDeps): Route[] {
  return [
    { method: 'GET', path: '/v1/bundle', handler: showBundle(deps) },
    { method: 'POST', path: '/v1/admin/x509/sign', handler: adminRoute(ctx, signX509(deps)) },
    { method: 'POST', path: '/v1/admin/jwt/mint', handler: adminRoute(ctx, mintJwt(deps)) },
    { method: 'GET', path: '/v1/admin/ca', handler: adminRoute(ctx, showCa(deps)) },
    { method: 'POST', path: '/v1/admin/ca/rotate', handler: adminRoute(ctx, rotateCa(deps)) },
  ];
}

export function caPlugin(opts: CaPluginOptions = {}): ServerPlugin & { handle: CaHandle } {
  let ca: CertificateAuthority | undefined;
  let timer: NodeJS.Timeout | undefined;
  const listeners = new Set<() => void>();
  const handle: CaHandle = {
    current() {
      if (!ca) throw new CaError('ERR_CA_NO_ACTIVE_AUTHORITY', 'the CA is not open yet');
      return ca;
    },
    onBundleChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  const notify = () => {
    for (const fn of listeners) fn();
  };

  return {
    name: 'ca',
    handle,
    async register(ctx: ServerContext) {
      const { config, store, logger, router, events } = ctx;
      const { kekGenerated, kekFile, stateStore, open } = await caOpener(config, store, opts.clock, opts.signingPool);
      if (kekGenerated) {
        logger.warn(
          { kekFile },
          'generated a new key-encryption key for the CA keys: back it up (without it the CA cannot be restored)',
        );
      }
      const reopen = async () => {
        const before = ca?.sequence;
        ca = await open();
        if (ca.sequence !== before) notify();
      };
      for (let attempt = 0; ; attempt++) {
        try {
          ca = await open();
          break;
        } catch (e) {
          // Another server created or rotated the CA at the same moment: read theirs.
          if (!(e instanceof StoreConflictError) || attempt >= 4) throw e;
        }
      }
      const tick = async () => {
        try {
          if (await stateStore.changedElsewhere()) return await reopen();
          if (await handle.current().tick()) {
            logger.info({ sequence: handle.current().sequence }, 'trust bundle changed (CA rotation)');
            notify();
          }
        } catch (e) {
          if (e instanceof StoreConflictError)
            await reopen().catch((err: unknown) => logger.error({ err }, 'CA reload failed'));
          else logger.error({ err: e }, 'CA rotation failed');
        }
      };
      timer = setInterval(() => void tick(), opts.tickMs ?? 5000);
      timer.unref();

      router.add(caRoutes(ctx, { handle, events, trustDomain: config.trust_domain, notify }));
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
