/**
 * The node agent: attests to the server once with a join token, then keeps its own SVID renewed
 * over mTLS, streams the registration entries it is authorized for, generates each workload's key
 * here (keys never leave the node), gets SVIDs by CSR, rotates them at half-life with jitter, and
 * serves them on the SPIFFE Workload API.
 *
 * When the server is unreachable, the agent keeps serving what it has until it expires, and
 * reconnects with exponential backoff. Its SVID and key live on disk (mode 0600), so a restart
 * needs no new token.
 */
import { type CompileOptions, compile, type Policy, type PolicySnapshot } from '../policy/index.js';
import { type KeyObject, randomInt, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCsr, csrToPem, generatePrivateKey } from '../ca/index.js';
import { selectorsMatch } from '../registration/selector.js';
import { type SpiffeJwks, TrustBundle } from '../spiffe/index.js';
import type { Logger } from '../util/logger.js';
import { leafNotAfter, ServerCallError, ServerClient } from './server-client.js';
import type { Selector } from './unix-attestor.js';
import { type WorkloadIdentity, type WorkloadResolver, WorkloadApiServer } from './workload-api.js';
import { requirePeerCredentials } from './peercred.js';
import { NevertrustError } from '../errors.js';

export interface NodeAgentOptions {
  /** Agent port of the server, `https://127.0.0.1:8081`. */
  serverUrl: string;
  trustDomain: string;
  /** Bootstrap trust: PEM CA certificates of the trust domain (`nevertrust bundle show`). */
  trustBundlePem: string;
  /** One-time token; needed only when the agent has no SVID on disk yet. */
  joinToken?: string;
  /** Where the agent keeps its SVID, key and last bundle (mode 0700). */
  dir: string;
  /** Workload API socket path. */
  socketPath: string;
  logger: Logger;
  /** Max reconnect delay, ms (default 30 s). */
  maxBackoffMs?: number;
}

interface EntryView {
  id: string;
  spiffe_id: string;
  selectors: string[];
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  hint: string;
  revision: number;
}

interface HeldSvid {
  entryId: string;
  revision: number;
  chain: Buffer[];
  key: KeyObject;
  pkcs8: Buffer;
  notBefore: number;
  notAfter: number;
  /** When to rotate: half-life with up to 10% jitter so agents do not renew in lockstep. */
  rotateAt: number;
}

/** CSRs per signing request. */
const SIGN_BATCH = 200;

export class AgentError extends NevertrustError<'ERR_AGENT'> {
  override readonly name = 'AgentError';
  readonly code = 'ERR_AGENT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { status: 500, cause: options?.cause });
  }
}

const pemToDers = (pem: string): Buffer[] =>
  [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/g)].map((m) =>
    Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'),
  );

function rotateTime(notBefore: number, notAfter: number): number {
  const life = notAfter - notBefore;
  return notBefore + life / 2 - randomInt(0, Math.max(1, Math.floor(life / 10)));
}

function writePrivate(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}

export class NodeAgent
  extends EventEmitter<{ change: []; revoked: [string]; policy: [PolicySnapshot | undefined] }>
  implements WorkloadResolver
{
  readonly serverId: string;
  private agentCert = '';
  private agentKey = '';
  private agentId = '';
  private bundle: TrustBundle;
  private client: ServerClient | undefined;
  private entries: EntryView[] = [];
  private policy: PolicySnapshot | undefined;
  private readonly svids = new Map<string, HeldSvid>();
  private readonly jwts = new Map<string, { token: string; exp: number; issued: number }>();
  private api: WorkloadApiServer | undefined;
  private abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncing: Promise<void> | undefined;
  private reconciling: Promise<void> | undefined;
  connected = false;

  constructor(private readonly opts: NodeAgentOptions) {
    super();
    this.serverId = `spiffe://${opts.trustDomain}/nevertrust/server`;
    this.bundle = TrustBundle.fromPem(opts.trustDomain, opts.trustBundlePem);
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  }

  get id(): string {
    return this.agentId;
  }

  /** The policy snapshot streamed from the server (undefined: none yet, or none configured — deny). */
  policySnapshot(): PolicySnapshot | undefined {
    return this.policy;
  }

  /** The trust bundle in force (forwarded certificates in local decisions are verified against it). */
  trustBundle(): TrustBundle {
    return this.bundle;
  }

  /**
   * POSTs `body` to `path` on the server's agent port over the agent's own mTLS connection (its
   * current SVID, the server's SPIFFE ID checked), for other parts of the node such as its decision
   * shipper. Throws `ServerCallError` with the status on a refusal.
   */
  postToServer<T>(path: string, body: unknown): Promise<T> {
    return this.server().call<T>('POST', path, body);
  }

  /** Attests (or loads the SVID from disk), starts syncing and serves the Workload API. */
  async start(): Promise<void> {
    // Without SO_PEERCRED no workload can be attested: say so now, not as denials later.
    requirePeerCredentials();
    this.loadFromDisk();
    if (!this.agentCert) {
      if (!this.opts.joinToken) {
        throw new AgentError(
          `no agent SVID in ${this.opts.dir} and no --join-token: generate one with \`nevertrust token generate\``,
        );
      }
      await this.attest(this.opts.joinToken);
    } else if (leafNotAfter(this.agentCert) <= Date.now()) {
      if (!this.opts.joinToken)
        throw new AgentError(`the agent SVID in ${this.opts.dir} has expired: attest again with a new --join-token`);
      await this.attest(this.opts.joinToken);
    }
    this.api = new WorkloadApiServer({
      socketPath: this.opts.socketPath,
      resolver: this,
      onError: (err, method) => this.opts.logger.error({ err, method }, 'workload API handler failed'),
    });
    await this.api.start();
    this.syncing = this.syncLoop();
    this.timer = setInterval(() => void this.maintain(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
    await this.api?.close();
    await this.syncing?.catch(() => {});
    await this.client?.close().catch(() => {});
  }

  // --- own identity ----------------------------------------------------------------------------

  private paths() {
    return {
      cert: join(this.opts.dir, 'agent-svid.pem'),
      key: join(this.opts.dir, 'agent-svid.key'),
      bundle: join(this.opts.dir, 'bundle.json'),
    };
  }

  private loadFromDisk(): void {
    const p = this.paths();
    if (existsSync(p.cert) && existsSync(p.key)) {
      this.agentCert = readFileSync(p.cert, 'utf8');
      this.agentKey = readFileSync(p.key, 'utf8');
      this.agentId = new X509Certificate(this.agentCert).subjectAltName?.match(/URI:([^,\s]+)/)?.[1] ?? '';
    }
    if (existsSync(p.bundle)) {
      try {
        this.bundle = TrustBundle.fromJwks(this.opts.trustDomain, readFileSync(p.bundle, 'utf8'));
      } catch (e) {
        this.opts.logger.warn({ err: e }, 'ignoring unreadable cached bundle; using the bootstrap bundle');
      }
    }
  }

  private setBundle(jwks: unknown): void {
    const next = TrustBundle.fromJwks(this.opts.trustDomain, jwks as SpiffeJwks);
    if (JSON.stringify(next.toJwks()) === JSON.stringify(this.bundle.toJwks())) return;
    this.bundle = next;
    writePrivate(this.paths().bundle, JSON.stringify(next.toJwks()));
    this.resetClient();
    this.emit('change');
  }

  private resetClient(): void {
    const old = this.client;
    this.client = new ServerClient({
      url: this.opts.serverUrl,
      caPem: this.bundle.toPem(),
      serverId: this.serverId,
      cert: this.agentCert || undefined,
      key: this.agentKey || undefined,
    });
    void old?.close().catch(() => {});
  }

  private server(): ServerClient {
    if (!this.client) this.resetClient();
    return this.client as ServerClient;
  }

  private async attest(token: string): Promise<void> {
    const key = generatePrivateKey('ec-p256');
    const r = await this.server()
      .call<{ spiffe_id: string; chain_pem: string; bundle: unknown }>('POST', '/agent/v1/attest', {
        join_token: token,
        csr: csrToPem(createCsr(key)),
      })
      .catch((e: unknown) => {
        throw new AgentError(`attestation refused: ${(e as Error).message}`);
      });
    this.saveAgentSvid(r.chain_pem, key, r.spiffe_id);
    this.setBundle(r.bundle);
    this.opts.logger.info({ agent_id: r.spiffe_id }, 'attested');
  }

  private saveAgentSvid(chainPem: string, key: KeyObject, id: string): void {
    this.agentCert = chainPem;
    this.agentKey = key.export({ format: 'pem', type: 'pkcs8' }) as string;
    this.agentId = id;
    writePrivate(this.paths().key, this.agentKey);
    writePrivate(this.paths().cert, this.agentCert);
    this.resetClient();
  }

  private async renewIfDue(): Promise<void> {
    const cert = new X509Certificate(this.agentCert);
    const nb = new Date(cert.validFrom).getTime();
    const na = new Date(cert.validTo).getTime();
    if (Date.now() < nb + (na - nb) / 2) return;
    const key = generatePrivateKey('ec-p256');
    const r = await this.server().call<{ chain_pem: string; bundle: unknown }>('POST', '/agent/v1/renew', {
      csr: csrToPem(createCsr(key)),
    });
    this.saveAgentSvid(r.chain_pem, key, this.agentId);
    this.setBundle(r.bundle);
    this.opts.logger.info({ agent_id: this.agentId }, 'agent SVID renewed');
  }

  // --- sync ------------------------------------------------------------------------------------

  private async syncLoop(): Promise<void> {
    let backoff = 250;
    const max = this.opts.maxBackoffMs ?? 30_000;
    while (!this.stopped) {
      try {
        for await (const msg of this.server().stream('/agent/v1/sync', this.abort.signal)) {
          if (!this.connected) this.opts.logger.info('connected to the server');
          this.connected = true;
          backoff = 250;
          if (msg.type === 'state') {
            this.setBundle(msg.bundle);
            this.entries = msg.entries as EntryView[];
            await this.reconcile();
          } else if (msg.type === 'policy') {
            this.setPolicy(msg.policy);
          } else if (msg.type === 'revoked') {
            this.revoke(String(msg.reason));
            return;
          }
        }
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof ServerCallError && (e.error === 'agent_banned' || e.error === 'unknown_agent')) {
          this.revoke(e.message);
          return;
        }
        this.opts.logger.warn(
          { err: (e as Error).message, retry_ms: backoff },
          'server unreachable; serving cached SVIDs',
        );
      }
      this.connected = false;
      await new Promise((r) => setTimeout(r, backoff + randomInt(0, backoff / 2 + 1)));
      backoff = Math.min(max, backoff * 2);
    }
  }

  /**
   * Compiles the snapshot the server sent and swaps it in atomically. The compiled version must be
   * the one the server announced (same content hash); anything else keeps the last good snapshot.
   */
  private setPolicy(msg: unknown): void {
    if (msg === null) {
      this.policy = undefined;
      this.opts.logger.warn('the server has no policies: every local decision denies');
      this.emit('policy', undefined);
      return;
    }
    const m = msg as { version?: unknown; policies?: unknown; options?: unknown };
    try {
      if (!Array.isArray(m.policies)) throw new Error('policies: expected an array');
      const snap = compile(m.policies as Policy[], (m.options ?? {}) as CompileOptions);
      if (snap.version !== m.version)
        throw new Error(`version mismatch: got ${snap.version}, announced ${String(m.version)}`);
      this.policy = snap;
      this.opts.logger.info({ version: snap.version, rules: snap.ruleCount }, 'policy snapshot received');
      this.emit('policy', snap);
    } catch (e) {
      this.opts.logger.error(
        { err: (e as Error).message },
        'policy snapshot from the server refused; the last good one stays',
      );
    }
  }

  /** Banned or deleted: drop every identity at once (zero trust: no grace period). */
  private revoke(reason: string): void {
    this.opts.logger.error({ reason }, 'agent revoked by the server: dropping all identities');
    this.entries = [];
    this.policy = undefined;
    this.svids.clear();
    this.jwts.clear();
    this.emit('change');
    this.emit('revoked', reason);
  }

  private async maintain(): Promise<void> {
    try {
      await this.renewIfDue();
    } catch (e) {
      this.opts.logger.warn({ err: (e as Error).message }, 'agent SVID renewal failed; will retry');
    }
    const now = Date.now();
    let expired = false;
    for (const [id, s] of this.svids) {
      if (s.notAfter <= now) {
        this.svids.delete(id);
        expired = true;
      }
    }
    if (expired) this.emit('change');
    if (this.connected && [...this.svids.values()].some((s) => s.rotateAt <= now)) await this.reconcile();
  }

  /** Brings SVIDs in line with entries: new ones signed, due ones rotated, removed ones dropped. */
  private reconcile(): Promise<void> {
    this.reconciling = (this.reconciling ?? Promise.resolve())
      .then(() => this.doReconcile())
      .catch((e: unknown) => {
        this.opts.logger.warn({ err: (e as Error).message }, 'SVID signing failed; will retry');
      });
    return this.reconciling;
  }

  private async doReconcile(): Promise<void> {
    const now = Date.now();
    let changed = false;
    const wanted = new Map(this.entries.map((e) => [e.id, e]));
    for (const id of this.svids.keys()) {
      if (!wanted.has(id)) {
        this.svids.delete(id);
        changed = true;
      }
    }
    const due = this.entries.filter((e) => {
      const s = this.svids.get(e.id);
      return !s || s.rotateAt <= now || s.revision !== e.revision;
    });
    // Batches keep each request small and let workloads get their SVIDs while the rest are signed.
    for (let i = 0; i < due.length; i += SIGN_BATCH) {
      const batch = due.slice(i, i + SIGN_BATCH);
      const keys = new Map(batch.map((e) => [e.id, generatePrivateKey('ec-p256')]));
      const { results } = await this.server().call<{
        results: { entry_id: string; chain_pem?: string; error?: string }[];
      }>('POST', '/agent/v1/sign', {
        requests: batch.map((e) => ({ entry_id: e.id, csr: csrToPem(createCsr(keys.get(e.id) as KeyObject)) })),
      });
      for (const r of results) {
        const key = keys.get(r.entry_id);
        const entry = wanted.get(r.entry_id);
        if (!r.chain_pem || !key || !entry) {
          this.opts.logger.warn({ entry_id: r.entry_id, error: r.error }, 'SVID not issued');
          continue;
        }
        const leaf = new X509Certificate(r.chain_pem);
        const nb = new Date(leaf.validFrom).getTime();
        const na = new Date(leaf.validTo).getTime();
        this.svids.set(r.entry_id, {
          entryId: r.entry_id,
          revision: entry.revision,
          chain: pemToDers(r.chain_pem),
          key,
          pkcs8: key.export({ format: 'der', type: 'pkcs8' }) as Buffer,
          notBefore: nb,
          notAfter: na,
          rotateAt: rotateTime(nb, na),
        });
        changed = true;
      }
      if (changed && i + SIGN_BATCH < due.length) {
        this.emit('change');
        changed = false;
      }
    }
    if (changed) this.emit('change');
  }

  // --- WorkloadResolver ------------------------------------------------------------------------

  identitiesFor(selectors: readonly Selector[]): readonly WorkloadIdentity[] {
    const caller = new Set(selectors.map((s) => `${s.type}:${s.value}`));
    const now = Date.now();
    const out: WorkloadIdentity[] = [];
    for (const e of this.entries) {
      const s = this.svids.get(e.id);
      if (!s || s.notAfter <= now || !selectorsMatch(e.selectors, caller)) continue;
      out.push({ spiffeId: e.spiffe_id, x509Chain: s.chain, privateKeyPkcs8: s.pkcs8, hint: e.hint || undefined });
    }
    return out;
  }

  bundles(): readonly TrustBundle[] {
    return [this.bundle];
  }

  async mintJwtSvid(spiffeId: string, audience: readonly string[]): Promise<string> {
    const entry = this.entries.find((e) => e.spiffe_id === spiffeId && this.svids.has(e.id));
    if (!entry) throw new AgentError(`no identity ${spiffeId} on this agent`);
    const cacheKey = `${entry.id}|${[...audience].sort().join(' ')}`;
    const cached = this.jwts.get(cacheKey);
    const now = Date.now();
    // Refresh at half of the token's life, so callers never get a token about to expire.
    if (cached && now < cached.issued + (cached.exp - cached.issued) / 2) return cached.token;
    const r = await this.server().call<{ token: string; expires_at: string }>('POST', '/agent/v1/jwt', {
      entry_id: entry.id,
      audience,
    });
    this.jwts.set(cacheKey, { token: r.token, exp: Date.parse(r.expires_at), issued: now });
    if (this.jwts.size > 10_000) this.jwts.delete(this.jwts.keys().next().value as string);
    return r.token;
  }
}
