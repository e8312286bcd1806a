/**
 * The audit log in the server: an ingestion endpoint for batches from enforcement points, and the
 * admin API behind `nevertrust audit query|show|tail|verify|checkpoint`. Server-side happenings
 * (`ctx.events`: admin actions, issuance, attestation, decisions) are recorded through a
 * non-blocking recorder; every stored decision also feeds the anomaly detector.
 *
 * Routes:
 *   POST /v1/audit/events                      ingest `{events: [...]}` (admin bearer or `ingestToken`); 200 once committed;
 *                                              each event stamped `details.reported_by` (`token:…`, `svid:…`, `ingest-token`)
 *   POST /agent/v1/audit/events                the same on the agent port (`agentRoutes`), authenticated by the
 *                                              enforcement point's X.509-SVID: no token to hand out; each event
 *                                              is stamped with the SVID's ID as `details.reported_by`
 *   GET  /v1/admin/audit/events?source=…       query (source, target, outcome, kind, decision_id, since, until, limit, cursor;
 *                                              user, device, rule, reason: checked on rows, bounded, `scan_limited`)
 *   GET  /v1/admin/audit/events/<id|seq>       one event with its inclusion proof against the latest checkpoint
 *   GET  /v1/admin/audit/tail?last=N&follow=1  NDJSON stream of events, live with follow=1
 *   POST /v1/admin/audit/verify                recompute everything; body `{checkpoints?: [...]}` (external checkpoints)
 *   POST /v1/admin/audit/checkpoint            sign a checkpoint now
 *   GET  /v1/admin/audit/checkpoints           signed checkpoints and the public key
 *   GET  /v1/admin/audit/consistency?from=&to= consistency proof between two checkpoints
 *   POST /v1/admin/audit/seal                  seal events older than the hot window into segments now
 */
import { type AuditIngestResponse, auditIngestRequestSchema, MAX_INGEST_BATCH } from '../../api/audit-ingest.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { postJson } from '../../util/post-json.js';
import {
  AGENT_PORT_INGEST_PATH,
  type AnomalyConfig,
  AnomalyDetector,
  type AnomalySignal,
  type AuditEventInput,
  AuditEventError,
  AuditLog,
  type AuditLogOptions,
  AuditProofError,
  AuditRecorder,
  type ExternalCheckpoint,
  parseQueryParams,
  queryAuditLog,
  readAuditSince,
  sealSegments,
  type StoredAuditEvent,
  verifyLog,
  anomalyEvent,
} from '../../audit/index.js';
import { clipText } from '../../audit/clip.js';
import { REASON_MAX, SHORT_TEXT_MAX, SOURCE_LIMITS, TARGET_LIMITS } from '../../audit/event.js';
import type { RefusalAggregator } from '../../audit/refusals.js';
import type { ServerEvent } from '../events.js';
import { PeerSvidError, verifyPeerSvid } from '../peer-svid.js';
import { RateLimiter } from '../rate-limiter.js';
import { type Handler, HttpError, type RefusalNote, type Route, readBody, refusal, sendJson } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext, type ServerPlugin } from '../server.js';
import type { AgentPortRoute } from './agent-endpoint.js';
import type { CaHandle } from './ca.js';

/** The log's own options (KEK, checkpoints, sinks: see {@link AuditLogOptions}), and the plugin's. */
export interface AuditPluginOptions
  extends Pick<
    AuditLogOptions,
    'kek' | 'checkpointEvery' | 'checkpointIntervalMs' | 'checkpointFile' | 'checkpointWebhook' | 'sinks'
  > {
  /** Anomaly detection (default on, with defaults); `false` turns it off. */
  anomaly?: AnomalyConfig | false;
  /** Signals are also POSTed here as `{signal: …}`. */
  anomalyWebhook?: string;
  /** Seal events older than `hotWindowMs` into `dir` (default `<data_dir>/audit-segments`) every `intervalMs`. */
  retention?: { hotWindowMs: number; dir?: string; intervalMs?: number };
  /** Where the recorder spills (default `<data_dir>/audit-spill`). */
  spillDir?: string;
  /** A separate bearer token enforcement points may use for ingestion (admin tokens are accepted too). */
  ingestToken?: string;
  /** Largest ingestion body (default 16 MiB). */
  maxIngestBytes?: number;
  /**
   * The CA whose bundle authenticates enforcement points on `POST /agent/v1/audit/events` (pass
   * `agentRoutes` to `agentEndpointPlugin`); without it that route answers 503.
   */
  ca?: CaHandle;
  /** Events per second per reporting SVID on the agent port (default 50,000; bursts of 2 s, ≥ 10,000). */
  ingestRate?: number;
}

/**
 * Stamps the reporting enforcement point into an ingested event's `details` (overwriting any
 * `reported_by` it claims). Anything that is not an event object is left for validation to refuse.
 */
function stampReporter(e: unknown, reporter: string): unknown {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return e;
  const d = (e as { details?: unknown }).details;
  if (d !== undefined && (d === null || typeof d !== 'object' || Array.isArray(d))) return e;
  return { ...e, details: { ...(d as Record<string, unknown> | undefined), reported_by: reporter } };
}

/** What other parts of the server may use once the plugin is registered. */
export interface AuditHandle {
  log(): AuditLog;
  recorder(): AuditRecorder;
  /** Records an event (non-blocking). */
  record(event: AuditEventInput): void;
}

/**
 * A server-side event (or an enforcement point's decision) as an audit event input. Strings are
 * clipped to the schema's limits: what a hostile request brought (a 16 KB path) is recorded cut,
 * not refused.
 */
export function fromServerEvent(e: ServerEvent): AuditEventInput {
  const s = e.source;
  const source: NonNullable<AuditEventInput['source']> = {};
  if (s.id?.startsWith('spiffe://')) source.spiffe_id = s.id;
  else if (s.id) source.user = s.id;
  // An enforcement point's decision names the caller in the audit schema's own fields.
  if (s.spiffe_id !== undefined) source.spiffe_id = s.spiffe_id;
  if (s.user !== undefined) source.user = s.user;
  if (s.service !== undefined) source.service = s.service;
  if (s.ip) source.ip = s.ip;
  const target: NonNullable<AuditEventInput['target']> = {};
  const t = e.target;
  if (t.id?.startsWith('spiffe://')) target.spiffe_id = t.id;
  else if (t.id) target.resource = t.id;
  if (t.resource) target.resource = t.id ? `${t.id} ${t.resource}` : t.resource;
  if (t.spiffe_id !== undefined) target.spiffe_id = t.spiffe_id;
  if (t.service !== undefined) target.service = t.service;
  if (t.path !== undefined) target.path = t.path;
  if (t.method) target.method = t.method;
  return {
    kind: e.kind,
    outcome: e.outcome,
    decision_id: e.decision_id,
    source: Object.keys(source).length > 0 ? clipFields(source, SOURCE_LIMITS) : undefined,
    target: Object.keys(target).length > 0 ? clipFields(target, TARGET_LIMITS) : undefined,
    reason: clipText(e.reason, REASON_MAX),
    policy: clipText(e.policy, SHORT_TEXT_MAX),
    rule: clipText(e.rule, SHORT_TEXT_MAX),
    enforcer: clipText(e.enforcer, SHORT_TEXT_MAX) ?? 'server',
    details: e.details,
  };
}

/** Each string field of `o` within its schema limit. */
function clipFields<T extends Record<string, unknown>>(o: T, limits: Record<string, number>): T {
  const out: Record<string, unknown> = { ...o };
  for (const k of Object.keys(out)) {
    const v = out[k];
    const max = limits[k];
    if (typeof v === 'string' && max !== undefined) out[k] = clipText(v, max);
  }
  return out as T;
}

const TAIL_POLL_MS = 250;
/** Most events in one ingested batch (the ingestion contract's). */
const MAX_BATCH = MAX_INGEST_BATCH;

/** What the audit routes use. */
interface AuditRouteDeps {
  ctx: ServerContext;
  log: AuditLog;
  recorder: AuditRecorder;
  opts: AuditPluginOptions;
  /** Where sealed segments are (verify reads them, seal writes them). */
  segmentDir: string;
  /** Stops of the open `tail -f` streams, ended at close. */
  tails: Set<() => void>;
}

/** Stores a batch; `reporter` is stamped into each event, `limited` holds it to the per-reporter rate (SVIDs). */
type Ingest = (req: IncomingMessage, res: ServerResponse, reporter: string, limited?: boolean) => Promise<void>;

/** An ingestion refusal, recorded once by the router's refusal hook (a flood is one event per run with its count). */
function ingestRefusal(status: number, error: string, message: string, note: RefusalNote = {}): HttpError {
  return refusal(new HttpError(status, error, message), { ...note, context: 'audit ingestion refused' });
}

/** The ingestion of a batch `{events: [...]}`, shared by the admin/token route and the agent port. */
function ingestBatch({ log, opts }: AuditRouteDeps): Ingest {
  const rate = opts.ingestRate ?? 50_000;
  const perReporter = new RateLimiter(Math.max(2 * rate, MAX_BATCH), rate);
  return async (req, res, reporter, limited = false) => {
    const body = await readBody(req, opts.maxIngestBytes ?? 16 << 20);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (e) {
      return sendJson(res, 400, { error: 'malformed_json', message: `body is not JSON: ${(e as Error).message}` });
    }
    const envelope = auditIngestRequestSchema.safeParse(parsed);
    if (!envelope.success) {
      return sendJson(res, 400, { error: 'bad_request', message: 'expected {"events": [ … ]}' });
    }
    const { events } = envelope.data;
    if (events.length > MAX_BATCH) {
      return sendJson(res, 413, { error: 'too_many_events', message: 'at most 10,000 events per batch' });
    }
    if (limited && !perReporter.take(reporter, events.length)) {
      const message = `${reporter} is over ${rate} events/s (it retries; nothing is lost)`;
      throw ingestRefusal(429, 'rate_limited', message, { by: reporter, headers: { 'retry-after': '1' } });
    }
    try {
      const r = await log.appendInputs(events.map((e) => stampReporter(e, reporter)));
      const answer: AuditIngestResponse = { stored: r.stored, duplicates: r.duplicates, tree_size: r.treeSize };
      sendJson(res, 200, answer);
    } catch (e) {
      if (e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_AUDIT_EVENT')) {
        return sendJson(res, 400, { error: 'invalid_event', message: e.message });
      }
      throw e;
    }
  };
}

/** `POST /agent/v1/audit/events` on the agent port: the reporter is the peer's X.509-SVID. */
function ingestBySvid(
  { ctx, opts }: AuditRouteDeps,
  ingest: Ingest,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const ca = opts.ca;
  return async (req, res) => {
    if (!ca) return sendJson(res, 503, { error: 'no_ca', message: 'SVID ingestion needs the CA plugin' });
    let reporter: string;
    try {
      // Any workload of the trust domain may report decisions: enforcement points are workloads.
      reporter = verifyPeerSvid(req.socket as TLSSocket, ca.current().bundle()).spiffeId.toString();
    } catch (e) {
      if (!(e instanceof PeerSvidError)) throw e;
      throw ingestRefusal(401, 'unauthenticated', e.message);
    }
    // A banned agent's SVID stays valid until it expires; its reports are refused meanwhile.
    const agent = await ctx.store.agents.get(reporter);
    if (agent?.banned) throw ingestRefusal(403, 'agent_banned', `${reporter} is banned`, { by: reporter });
    return ingest(req, res, reporter, true);
  };
}

/** `POST /v1/audit/events`: the separate ingest token, else an admin bearer. */
function ingestByToken({ ctx, opts }: AuditRouteDeps, ingest: Ingest): Handler {
  const ingestHash = opts.ingestToken ? createHash('sha256').update(opts.ingestToken).digest() : undefined;
  const adminIngest = adminRoute(ctx, (req, res, _url, who) => ingest(req, res, who.id));
  return async (req, res, url) => {
    const m = /^Bearer\s+(\S+)\s*$/.exec(req.headers.authorization ?? '');
    if (ingestHash && m?.[1]) {
      const h = createHash('sha256').update(m[1]).digest();
      if (timingSafeEqual(h, ingestHash)) return ingest(req, res, 'ingest-token');
    }
    return adminIngest(req, res, url);
  };
}

/** `GET /v1/admin/audit/events?…`: a query. */
function queryEvents({ ctx }: AuditRouteDeps): AdminHandler {
  return async (_req, res, url) => {
    let q: ReturnType<typeof parseQueryParams>;
    try {
      q = parseQueryParams(url.searchParams);
    } catch (e) {
      const field = e instanceof AuditEventError ? e.path : undefined;
      return sendJson(res, 400, { error: 'bad_query', message: (e as Error).message, ...(field ? { field } : {}) });
    }
    sendJson(res, 200, await queryAuditLog(ctx.store, q));
  };
}

/** `GET /v1/admin/audit/events/<id|seq>`: one event with its inclusion proof. */
function showEvent({ log }: AuditRouteDeps): AdminHandler {
  return async (_req, res, url) => {
    const key = decodeURIComponent(url.pathname.slice('/v1/admin/audit/events/'.length));
    const event = await log.get(/^\d+$/.test(key) ? Number(key) : key);
    if (!event) return sendJson(res, 404, { error: 'not_found', message: `no audit event ${key}` });
    try {
      const inclusion = await log.inclusionProof(event.seq);
      sendJson(res, 200, { event, inclusion, public_key: log.signer.publicKeyPem });
    } catch (e) {
      if (e instanceof AuditProofError) return sendJson(res, 200, { event, inclusion: null, note: e.message });
      throw e;
    }
  };
}

/** `GET /v1/admin/audit/tail?last=N&follow=1`: NDJSON, live with follow. */
function tailEvents({ ctx, log, tails }: AuditRouteDeps): AdminHandler {
  return async (req, res, url) => {
    const last = Math.min(Number(url.searchParams.get('last') ?? 20) || 0, 10_000);
    const follow = ['1', 'true'].includes(url.searchParams.get('follow') ?? '');
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Headers now, so a follower with nothing to read yet is connected (tail -f).
    res.flushHeaders();
    let next = Math.max(0, log.treeSize - last);
    const head = await ctx.store.db.selectFrom('audit_head').select(['tree_size', 'sealed_size']).executeTakeFirst();
    next = Math.max(next, Number(head?.sealed_size ?? 0));
    const pump = async () => {
      for (;;) {
        const batch = await readAuditSince(ctx.store, next, 1000);
        for (const e of batch) res.write(`${JSON.stringify(e)}\n`);
        const lastEvent = batch[batch.length - 1];
        if (lastEvent) next = lastEvent.seq + 1;
        if (batch.length < 1000) return;
      }
    };
    await pump();
    if (!follow) return void res.end();
    // Local appends wake the stream at once; a poll catches appends by other servers.
    let busy = false;
    let again = false;
    const wake = () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      pump()
        .catch(() => res.destroy())
        .finally(() => {
          busy = false;
          if (again) {
            again = false;
            wake();
          }
        });
    };
    const off = log.onAppend(wake);
    const poll = setInterval(wake, TAIL_POLL_MS);
    const stop = () => {
      off();
      clearInterval(poll);
      tails.delete(stop);
      res.end();
    };
    tails.add(stop);
    req.on('close', stop);
    res.on('error', stop);
  };
}

/** `POST /v1/admin/audit/verify` `{checkpoints?}`: recompute everything. */
function verifyEvents({ ctx, recorder, segmentDir }: AuditRouteDeps): AdminHandler {
  return async (req, res) => {
    const body = await readBody(req, 64 << 20);
    let checkpoints: ExternalCheckpoint[] | undefined;
    if (body.length > 0) {
      try {
        checkpoints = (JSON.parse(body.toString('utf8')) as { checkpoints?: ExternalCheckpoint[] }).checkpoints;
      } catch {
        return sendJson(res, 400, { error: 'malformed_json', message: 'expected {"checkpoints": [ … ]}' });
      }
    }
    await recorder.flush();
    const report = await verifyLog(ctx.store, { externalCheckpoints: checkpoints, segmentDir });
    sendJson(res, 200, report);
  };
}

/** `POST /v1/admin/audit/checkpoint`: sign a checkpoint now. */
function checkpointNow({ log, recorder }: AuditRouteDeps): AdminHandler {
  return async (_req, res) => {
    await recorder.flush();
    sendJson(res, 200, await log.checkpoint());
  };
}

/** `GET /v1/admin/audit/checkpoints?limit=`: signed checkpoints and the public key. */
function listCheckpoints({ log }: AuditRouteDeps): AdminHandler {
  return async (_req, res, url) => {
    const limit = Math.min(Number(url.searchParams.get('limit') ?? 100) || 100, 10_000);
    sendJson(res, 200, {
      checkpoints: await log.checkpoints(limit),
      key_id: log.signer.keyId,
      public_key: log.signer.publicKeyPem,
    });
  };
}

/** `GET /v1/admin/audit/consistency?from=&to=`: a consistency proof between two checkpoints. */
function consistency({ log }: AuditRouteDeps): AdminHandler {
  return async (_req, res, url) => {
    const from = Number(url.searchParams.get('from'));
    const to = Number(url.searchParams.get('to'));
    if (!Number.isInteger(from) || !Number.isInteger(to)) {
      return sendJson(res, 400, { error: 'bad_query', message: 'from and to must be checkpoint tree sizes' });
    }
    try {
      sendJson(res, 200, await log.consistencyProof(from, to));
    } catch (e) {
      if (e instanceof AuditProofError) return sendJson(res, 404, { error: 'not_found', message: e.message });
      throw e;
    }
  };
}

/** `POST /v1/admin/audit/seal`: seal events older than the hot window into segments now. */
function sealNow({ log, recorder, opts, segmentDir }: AuditRouteDeps): AdminHandler {
  return async (_req, res) => {
    const r = opts.retention;
    if (!r) return sendJson(res, 409, { error: 'not_configured', message: 'audit retention is not configured' });
    await recorder.flush();
    const sealed = await sealSegments(log, { dir: segmentDir, hotWindowMs: r.hotWindowMs });
    sendJson(res, 200, { sealed });
  };
}

/** The audit plugin's routes on the server port (the agent port's are `agentRoutes`). */
function auditRoutes(deps: AuditRouteDeps, ingest: Ingest): Route[] {
  const admin = (h: AdminHandler) => adminRoute(deps.ctx, h);
  return [
    { method: 'POST', path: '/v1/audit/events', handler: ingestByToken(deps, ingest) },
    { method: 'GET', path: '/v1/admin/audit/events', handler: admin(queryEvents(deps)) },
    { method: 'GET', path: '/v1/admin/audit/events/', prefix: true, handler: admin(showEvent(deps)) },
    { method: 'GET', path: '/v1/admin/audit/tail', handler: admin(tailEvents(deps)) },
    { method: 'POST', path: '/v1/admin/audit/verify', handler: admin(verifyEvents(deps)) },
    { method: 'POST', path: '/v1/admin/audit/checkpoint', handler: admin(checkpointNow(deps)) },
    { method: 'GET', path: '/v1/admin/audit/checkpoints', handler: admin(listCheckpoints(deps)) },
    { method: 'GET', path: '/v1/admin/audit/consistency', handler: admin(consistency(deps)) },
    { method: 'POST', path: '/v1/admin/audit/seal', handler: admin(sealNow(deps)) },
  ];
}

/**
 * The audit server plugin.
 *
 * @example
 * const audit = auditPlugin({ checkpointFile: '/secure/audit-checkpoints.ndjson' });
 * await startServer({ config, logger, plugins: [audit] });
 * audit.handle.record({ kind: 'admin.action', outcome: 'allow' });
 */
export function auditPlugin(
  opts: AuditPluginOptions = {},
): ServerPlugin & { readonly handle: AuditHandle; readonly agentRoutes: readonly AgentPortRoute[] } {
  let log: AuditLog | undefined;
  let svidIngest: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
  let recorder: AuditRecorder | undefined;
  let detector: AnomalyDetector | undefined;
  let sealTimer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let stopEvents: (() => void) | undefined;
  let refusals: RefusalAggregator<ServerEvent> | undefined;
  const tails = new Set<() => void>();
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the audit plugin is not registered yet');
    return v;
  };
  const handle: AuditHandle = {
    log: () => need(log),
    recorder: () => need(recorder),
    record: (e) => need(recorder).record(e),
  };

  return {
    name: 'audit',
    // SVID ingestion verifies reporters against the CA's bundle.
    dependsOn: opts.ca ? ['ca'] : [],
    handle,
    agentRoutes: [
      {
        method: 'POST',
        path: AGENT_PORT_INGEST_PATH,
        handler: async (req, res) => {
          if (!svidIngest) return sendJson(res, 503, { error: 'starting', message: 'the audit log is not ready yet' });
          return svidIngest(req, res);
        },
      },
    ],
    async register(ctx: ServerContext) {
      const dataDir = ctx.config.data_dir;
      const theLog = await AuditLog.open(ctx.store, {
        dataDir,
        kek: opts.kek,
        checkpointEvery: opts.checkpointEvery,
        checkpointIntervalMs: opts.checkpointIntervalMs,
        checkpointFile: opts.checkpointFile,
        checkpointWebhook: opts.checkpointWebhook,
        sinks: opts.sinks,
        logger: ctx.logger,
      });
      log = theLog;
      const rec = new AuditRecorder({
        sink: theLog,
        spillDir: opts.spillDir ?? join(dataDir, 'audit-spill'),
        registry: ctx.metrics.registry,
        name: 'server',
        logger: ctx.logger,
      });
      recorder = rec;
      const onEvent = (e: ServerEvent) => rec.record(fromServerEvent(e));
      // subscribe(), not on(): what other plugins recorded while registering before us counts too.
      stopEvents = ctx.events.subscribe(onEvent);

      if (opts.anomaly !== false) {
        const d = new AnomalyDetector(opts.anomaly ?? {});
        detector = d;
        const saved = await ctx.store.kv.get('audit', 'anomaly_state');
        if (saved) d.restore(saved.value);
        unsubscribe = theLog.onAppend((events: StoredAuditEvent[]) => {
          const signals: AnomalySignal[] = [];
          for (const e of events) for (const s of d.observe(e)) signals.push(s);
          for (const s of signals) {
            ctx.logger.warn({ signal: s.signal, source: s.source, target: s.target }, s.why);
            rec.record(anomalyEvent(s));
            if (opts.anomalyWebhook) {
              postJson(opts.anomalyWebhook, { signal: s }).catch((err: unknown) =>
                ctx.logger.warn({ err }, 'anomaly webhook failed'),
              );
            }
          }
        });
      }

      if (opts.retention) {
        const r = opts.retention;
        const dir = r.dir ?? join(dataDir, 'audit-segments');
        sealTimer = setInterval(() => {
          sealSegments(theLog, { dir, hotWindowMs: r.hotWindowMs }).catch((err: unknown) =>
            ctx.logger.error({ err }, 'sealing audit segments failed'),
          );
        }, r.intervalMs ?? 3_600_000);
        sealTimer.unref();
      }

      // Refusals are thrown as `refusal(…)`: the router's refusal hook records them; flushed at close.
      refusals = ctx.events.refusals;
      const deps: AuditRouteDeps = {
        ctx,
        log: theLog,
        recorder: rec,
        opts,
        segmentDir: opts.retention?.dir ?? join(dataDir, 'audit-segments'),
        tails,
      };
      const ingest = ingestBatch(deps);
      svidIngest = ingestBySvid(deps, ingest);
      ctx.router.add(auditRoutes(deps, ingest));
    },
    async close() {
      svidIngest = undefined;
      // Refusals counted but not yet recorded are recorded now, while the recorder still listens.
      refusals?.flush();
      stopEvents?.();
      for (const stop of [...tails]) stop();
      if (sealTimer) clearInterval(sealTimer);
      await recorder?.close();
      unsubscribe?.();
      if (detector && log) {
        await log.store.kv.put('audit', 'anomaly_state', detector.snapshot()).catch(() => {});
      }
      await log?.close();
    },
  };
}
