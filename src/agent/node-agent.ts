/**
 * The node agent: attests to the server once with a join token, then keeps its own SVID renewed
 * over mTLS, streams the registration entries it is authorized for, generates each workload's key
 * here (keys never leave the node), gets SVIDs by CSR, rotates them at half-life with jitter, and
 * serves them on the SPIFFE Workload API.
 *
 * When the server is unreachable, the agent keeps serving what it has until it expires, and
 * reconnects with exponential backoff. Its SVID and key live on disk (mode 0600), so a restart
 * needs no new token; the entries, workload SVIDs with their keys and the last policy snapshot are
 * cached there too (`agent-cache.ts`), so a restart while the server is down still serves them.
 */
import { compile } from '../policy/compile.js';
import type { Policy } from '../policy/model.js';
import type { CompileOptions, PolicySnapshot } from '../policy/snapshot.js';
import { type KeyObject, randomInt, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCsr, csrToPem, generatePrivateKey } from '../ca/index.js';
import { selectorsMatch } from '../registration/selector.js';
import { certificatesFromPem, serverSpiffeId, TrustBundle } from '../spiffe/index.js';
import type { Logger } from '../util/logger.js';
import type { z } from 'zod';
import { agentSvidSchema, jwtSvidSchema, signResponseSchema } from '../api/attest.js';
import { CRL_PATH, crlSetSchema } from '../api/ca.js';
import type { EntryView } from '../api/entries.js';
import type { JwksWire } from '../api/fields.js';
import { parseWire, WireFormatError } from '../api/parse.js';
import { type PolicyWire, policyWireSchema, type SyncMessage, syncMessageSchema } from '../api/sync.js';
import {
  agentCachePath,
  type CachedSvid,
  loadAgentCache,
  removeAgentCache,
  saveAgentCache,
  writePrivateFile,
} from './agent-cache.js';
import { leafNotAfter, ServerCallError, ServerClient } from '../api/server-client.js';
import type { Selector } from './unix-attestor.js';
import { type WorkloadIdentity, type WorkloadResolver, WorkloadApiServer } from './workload-api.js';
import { requirePeerCredentials } from './peercred.js';
import { NevertrustError } from '../errors.js';
import { followSignals, type SignalFollower } from '../signals/follow.js';
import { RevocationState } from '../signals/state.js';

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
  /** Workload API connection limits (config `agent.workload_api`); defaults in {@link GrpcServerOptions}. */
  workloadApi?: WorkloadApiLimits;
  /** How often the agent fetches the CRL of revoked SVIDs for the Workload API's `crl` fields (default 5 s). */
  crlRefreshMs?: number;
}

/** Per-uid limits of the Workload API (see `GrpcServerOptions`). */
export interface WorkloadApiLimits {
  maxConnectionsPerPeer?: number;
  maxCallsPerPeer?: number;
  handshakeTimeoutMs?: number;
}

/** A workload SVID as the cache keeps it, and when to rotate it. */
interface HeldSvid extends CachedSvid {
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

function rotateTime(notBefore: number, notAfter: number): number {
  const life = notAfter - notBefore;
  return notBefore + life / 2 - randomInt(0, Math.max(1, Math.floor(life / 10)));
}

/** Coalesces cache writes: a burst of changes (a signing batch, a sync) is one write. */
const CACHE_WRITE_DELAY_MS = 100;

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
  /** The policy message the snapshot was compiled from, as cached on disk (null: none). */
  private policyMsg: unknown = null;
  private cacheTimer: NodeJS.Timeout | undefined;
  private revoked = false;
  private readonly svids = new Map<string, HeldSvid>();
  private readonly jwts = new Map<string, { token: string; exp: number; issued: number }>();
  private api: WorkloadApiServer | undefined;
  private abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncing: Promise<void> | undefined;
  private reconciling: Promise<void> | undefined;
  /** The CRLs served in the Workload API's `crl` fields, and the number of the newest fetched. */
  private crlDers: Uint8Array[] = [];
  private crlNumber = -1n;
  private crlFetchedAt = 0;
  /** What the signals followed over the agent port say (issue #23), for the decision listener. */
  readonly revocations = new RevocationState();
  private signals: SignalFollower | undefined;
  connected = false;

  constructor(private readonly opts: NodeAgentOptions) {
    super();
    this.serverId = serverSpiffeId(opts.trustDomain);
    this.bundle = TrustBundle.fromPem(opts.trustDomain, opts.trustBundlePem);
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // It holds private keys: whatever made the directory, only the agent may enter it.
    chmodSync(opts.dir, 0o700);
    this.on('change', () => this.scheduleCacheWrite());
    this.on('policy', () => this.scheduleCacheWrite());
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
   * shipper. Throws `ServerCallError` with the status on a refusal, `WireFormatError` when the
   * answer does not fit `schema`.
   */
  postToServer<S extends z.ZodType>(path: string, body: unknown, schema: S): Promise<z.output<S>> {
    return this.server().call('POST', path, body, schema);
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
    this.loadCache();
    this.api = new WorkloadApiServer({
      socketPath: this.opts.socketPath,
      resolver: this,
      ...this.opts.workloadApi,
      onError: (err, method) => this.opts.logger.error({ err, method }, 'workload API handler failed'),
      onLimit: (reason) => this.opts.logger.warn({ reason }, 'workload API connection refused'),
    });
    await this.api.start();
    this.syncing = this.syncLoop();
    this.signals = this.followSignals();
    this.timer = setInterval(() => void this.maintain(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
    await this.signals?.stop();
    await this.api?.close();
    await this.syncing?.catch(() => {});
    await this.client?.close().catch(() => {});
    if (this.cacheTimer) this.writeCache();
  }

  // --- cache across restarts (agent-cache.ts) --------------------------------------------------

  /** Loads what the last run cached; serves only what is still valid and verifies. */
  private loadCache(): void {
    const file = agentCachePath(this.opts.dir);
    const r = loadAgentCache(this.opts.dir, this.agentId, this.bundle);
    if (r.kind === 'missing') return;
    if (r.kind === 'corrupt') {
      this.opts.logger.warn(
        { file, reason: r.reason },
        'ignoring the agent cache: it is corrupt or not ours; nothing is served from it',
      );
      return;
    }
    let policy: PolicySnapshot | undefined;
    if (r.policy !== null) {
      try {
        policy = this.compilePolicy(r.policy);
      } catch (e) {
        this.opts.logger.warn(
          { file, reason: `policy: ${(e as Error).message}` },
          'ignoring the agent cache: it is corrupt or not ours; nothing is served from it',
        );
        return;
      }
    }
    this.entries = r.entries;
    for (const s of r.svids) this.svids.set(s.entryId, { ...s, rotateAt: rotateTime(s.notBefore, s.notAfter) });
    this.policy = policy;
    this.policyMsg = policy ? r.policy : null;
    this.opts.logger.info(
      {
        file,
        svids: r.svids.length,
        expired: r.expired,
        stale: r.stale,
        entries: r.entries.length,
        policy: policy?.version,
      },
      'loaded the agent cache (expired SVIDs are not served)',
    );
  }

  private scheduleCacheWrite(): void {
    if (this.cacheTimer || this.stopped || this.revoked) return;
    this.cacheTimer = setTimeout(() => this.writeCache(), CACHE_WRITE_DELAY_MS);
    this.cacheTimer.unref();
  }

  private writeCache(): void {
    if (this.cacheTimer) clearTimeout(this.cacheTimer);
    this.cacheTimer = undefined;
    try {
      saveAgentCache(this.opts.dir, {
        agentId: this.agentId,
        entries: this.entries,
        svids: this.svids.values(),
        policy: this.policyMsg,
      });
    } catch (e) {
      this.opts.logger.error(
        { err: (e as Error).message },
        'could not write the agent cache; a restart without the server will serve less',
      );
    }
  }

  /** What the agent serves right now: the number of valid SVIDs and when the first of them expires. */
  private servingSummary(): { count: number; until: number } {
    const now = Date.now();
    let count = 0;
    let until = Number.POSITIVE_INFINITY;
    for (const s of this.svids.values()) {
      if (s.notAfter <= now) continue;
      count++;
      until = Math.min(until, s.notAfter);
    }
    return { count, until };
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

  private setBundle(jwks: JwksWire): void {
    const next = TrustBundle.fromJwks(this.opts.trustDomain, jwks);
    if (JSON.stringify(next.toJwks()) === JSON.stringify(this.bundle.toJwks())) return;
    this.bundle = next;
    writePrivateFile(this.paths().bundle, JSON.stringify(next.toJwks()));
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
      .call('POST', '/agent/v1/attest', { join_token: token, csr: csrToPem(createCsr(key)) }, agentSvidSchema)
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
    writePrivateFile(this.paths().key, this.agentKey);
    writePrivateFile(this.paths().cert, this.agentCert);
    this.resetClient();
  }

  private async renewIfDue(): Promise<void> {
    const cert = new X509Certificate(this.agentCert);
    const nb = new Date(cert.validFrom).getTime();
    const na = new Date(cert.validTo).getTime();
    if (Date.now() < nb + (na - nb) / 2) return;
    const key = generatePrivateKey('ec-p256');
    const r = await this.server().call('POST', '/agent/v1/renew', { csr: csrToPem(createCsr(key)) }, agentSvidSchema);
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
        for await (const raw of this.server().stream('/agent/v1/sync', this.abort.signal)) {
          if (!this.connected) this.opts.logger.info('connected to the server');
          this.connected = true;
          backoff = 250;
          const msg = this.syncMessage(raw);
          if (msg?.type === 'state') {
            this.setBundle(msg.bundle);
            this.entries = msg.entries;
            await this.reconcile();
          } else if (msg?.type === 'policy') {
            this.setPolicy(msg.policy);
          } else if (msg?.type === 'revoked') {
            this.revoke(msg.reason);
            return;
          }
        }
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof ServerCallError && (e.error === 'agent_banned' || e.error === 'unknown_agent')) {
          this.revoke(e.message);
          return;
        }
        // Say what is really served: the count and expiry of the SVIDs held, or nothing.
        const { count, until } = this.servingSummary();
        const dir = this.opts.dir;
        if (count > 0) {
          const t = new Date(until).toISOString();
          this.opts.logger.warn(
            { err: (e as Error).message, retry_ms: backoff, svids: count, valid_until: t, dir },
            `server unreachable; serving ${count} cached SVIDs valid until ${t} from ${dir}`,
          );
        } else {
          this.opts.logger.warn(
            { err: (e as Error).message, retry_ms: backoff, svids: 0, dir },
            'server unreachable; no cached SVIDs: serving nothing until the server answers',
          );
        }
      }
      this.connected = false;
      await new Promise((r) => setTimeout(r, backoff + randomInt(0, backoff / 2 + 1)));
      backoff = Math.min(max, backoff * 2);
    }
  }

  /**
   * A line of the sync stream checked against its contract (src/api/sync.ts). A message that does
   * not fit is refused, naming the field, and changes nothing: the entries, SVIDs and policy held
   * (and cached) stay as they were. A message of a type this agent does not know is ignored.
   */
  private syncMessage(raw: unknown): SyncMessage | undefined {
    try {
      return parseWire(syncMessageSchema, raw, 'sync message');
    } catch (e) {
      if (!(e instanceof WireFormatError)) throw e;
      const type = (raw as { type?: unknown } | null)?.type;
      if (e.field === 'type' && typeof type === 'string') return undefined;
      this.opts.logger.error(
        { err: e.message, field: e.field },
        `${e.message}; refused, what the agent holds stays as it was`,
      );
      return undefined;
    }
  }

  /**
   * Compiles the snapshot the server sent and swaps it in atomically. The compiled version must be
   * the one the server announced (same content hash); anything else keeps the last good snapshot.
   */
  private setPolicy(msg: PolicyWire | null): void {
    if (msg === null) {
      this.policy = undefined;
      this.policyMsg = null;
      this.opts.logger.warn('the server has no policies: every local decision denies');
      this.emit('policy', undefined);
      return;
    }
    try {
      const snap = this.compilePolicy(msg);
      this.policy = snap;
      this.policyMsg = msg;
      this.opts.logger.info({ version: snap.version, rules: snap.ruleCount }, 'policy snapshot received');
      this.emit('policy', snap);
    } catch (e) {
      this.opts.logger.error(
        { err: (e as Error).message },
        'policy snapshot from the server refused; the last good one stays',
      );
    }
  }

  /**
   * A policy of the sync stream (or the cache) → its snapshot; throws unless it compiles to the
   * announced version. The documents are trusted only through that check: the version is the
   * content hash of what compiles, so a document the compiler reads differently cannot pass.
   */
  private compilePolicy(msg: unknown): PolicySnapshot {
    const m = parseWire(policyWireSchema, msg, 'policy');
    const snap = compile(m.policies as readonly Policy[], (m.options ?? {}) as CompileOptions);
    if (snap.version !== m.version) throw new Error(`version mismatch: got ${snap.version}, announced ${m.version}`);
    return snap;
  }

  /** Banned or deleted: drop every identity at once (zero trust: no grace period). */
  private revoke(reason: string): void {
    this.opts.logger.error({ reason }, 'agent revoked by the server: dropping all identities');
    // Also on disk, and nothing cached again: a restart while the server is away must not bring them back.
    this.revoked = true;
    // The server refuses a banned agent's stream: retrying it every 5 s would only fill the log.
    void this.signals?.stop();
    if (this.cacheTimer) clearTimeout(this.cacheTimer);
    this.cacheTimer = undefined;
    try {
      removeAgentCache(this.opts.dir);
    } catch (e) {
      this.opts.logger.error({ err: (e as Error).message }, 'could not remove the agent cache');
    }
    this.entries = [];
    this.policy = undefined;
    this.policyMsg = null;
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
    if (now - this.crlFetchedAt >= (this.opts.crlRefreshMs ?? 5000)) {
      this.crlFetchedAt = now;
      await this.refreshCrl().catch((e: unknown) =>
        this.opts.logger.warn({ err: (e as Error).message }, 'CRL fetch failed; serving the last one'),
      );
    }
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
      const { results } = await this.server().call(
        'POST',
        '/agent/v1/sign',
        {
          requests: batch.map((e) => ({ entry_id: e.id, csr: csrToPem(createCsr(keys.get(e.id) as KeyObject)) })),
        },
        signResponseSchema,
      );
      for (const r of results) {
        const key = keys.get(r.entry_id);
        const entry = wanted.get(r.entry_id);
        if ('error' in r || !key || !entry) {
          this.opts.logger.warn({ entry_id: r.entry_id, error: 'error' in r ? r.error : undefined }, 'SVID not issued');
          continue;
        }
        const leaf = new X509Certificate(r.chain_pem);
        const nb = new Date(leaf.validFrom).getTime();
        const na = new Date(leaf.validTo).getTime();
        this.svids.set(r.entry_id, {
          entryId: r.entry_id,
          revision: entry.revision,
          chain: certificatesFromPem(r.chain_pem),
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

  crls(): readonly Uint8Array[] {
    return this.crlDers;
  }

  /**
   * Follows the server's signal stream with the agent's own SVID (read again on every connect, so
   * renewal needs nothing), into `revocations`. An `svid.revoked` fetches the CRL at once, so the
   * Workload API's `crl` fields do not wait for the next periodic refresh.
   */
  private followSignals(): SignalFollower {
    const log = this.opts.logger;
    return followSignals({
      url: this.opts.serverUrl,
      serverId: this.serverId,
      tls: () => ({ cert: this.agentCert, key: this.agentKey, ca: this.bundle.toPem() }),
      after: this.revocations.lastSeq,
      onSignal: async (m) => {
        this.revocations.apply(m.seq, m.signal, m.received_at);
        if (m.signal.kind !== 'svid.revoked') return;
        this.crlFetchedAt = Date.now();
        // A failed fetch is retried by the periodic refresh; the signal itself is already applied.
        await this.refreshCrl().catch((e: unknown) =>
          log.warn({ err: (e as Error).message }, 'CRL fetch after a revocation failed; serving the last one'),
        );
      },
      onGap: (g) => log.warn({ ...g }, 'signals were lost before this agent saw them (pruned or another store)'),
      log: { info: (o, msg) => log.info(o, msg), warn: (o, msg) => log.warn(o, msg) },
    });
  }

  /**
   * Fetches the server's CRLs (over the agent's mTLS connection, the server's ID checked). A CRL
   * number lower than the one held is a replay or a lagging server: ignored, never a rollback.
   */
  private async refreshCrl(): Promise<void> {
    const r = await this.server().call('GET', `${CRL_PATH}?format=json`, undefined, crlSetSchema);
    const n = BigInt(r.crl_number);
    if (n <= this.crlNumber) return;
    this.crlNumber = n;
    this.crlDers = r.crls.map((c) => new Uint8Array(Buffer.from(c, 'base64')));
    this.emit('change');
  }

  async mintJwtSvid(spiffeId: string, audience: readonly string[]): Promise<string> {
    const entry = this.entries.find((e) => e.spiffe_id === spiffeId && this.svids.has(e.id));
    if (!entry) throw new AgentError(`no identity ${spiffeId} on this agent`);
    const cacheKey = `${entry.id}|${[...audience].sort().join(' ')}`;
    const cached = this.jwts.get(cacheKey);
    const now = Date.now();
    // Refresh at half of the token's life, so callers never get a token about to expire.
    if (cached && now < cached.issued + (cached.exp - cached.issued) / 2) return cached.token;
    const r = await this.server().call(
      'POST',
      '/agent/v1/jwt',
      { entry_id: entry.id, audience: [...audience] },
      jwtSvidSchema,
    );
    this.jwts.set(cacheKey, { token: r.token, exp: Date.parse(r.expires_at), issued: now });
    if (this.jwts.size > 10_000) this.jwts.delete(this.jwts.keys().next().value as string);
    return r.token;
  }
}
