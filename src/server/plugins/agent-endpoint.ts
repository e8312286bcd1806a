/**
 * The agent port (127.0.0.1:8081 by default): node attestation with one-time join tokens, agent SVID
 * renewal, the entry sync stream, and signing of workload CSRs — all over TLS with the server's own
 * SVID, and all but attestation over mTLS with the agent's SVID, verified on every request against
 * the bundle in force.
 *
 * An agent may only obtain SVIDs for entries whose parent is the agent, or (transitively) an entry
 * under the agent. Keys never come here: agents send CSRs.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen } from '../../util/listen.js';
import type { TLSSocket } from 'node:tls';
import type { ZodError } from 'zod';
import {
  type AgentSvidWire,
  attestRequestSchema,
  jwtRequestSchema,
  jwtSvidToWire,
  MAX_SIGN_REQUESTS,
  renewRequestSchema,
  signRequestSchema,
  type SignResponse,
  svidToWire,
} from '../../api/attest.js';
import type { RegistrationEntry } from '../../api/entries.js';
import { entryToWire } from '../../api/entries.js';
import { firstIssue } from '../../api/parse.js';
import { type SyncMessage, syncLine } from '../../api/sync.js';
import type { IssuedX509Svid } from '../../ca/index.js';
import {
  agentSpiffeId,
  parseSpiffeId,
  reservedIdReason,
  SpiffeIdError,
  serialText,
  serverSpiffeId,
  tryParseSpiffeId,
} from '../../spiffe/index.js';
import { verifyPeerSvid } from '../peer-svid.js';
import { isNevertrustError } from '../../errors.js';
import { refusalRecorder } from '../refusal-hook.js';
import { dispatch, type Handler, HttpError, readJson, Router, sendJson } from '../router.js';
import { type ServerSvid, serverSvidSource } from '../server-svid.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { CaHandle } from './ca.js';
import type { PolicyHandle } from './policy.js';
import { RateLimiter } from '../rate-limiter.js';

export { SERVER_SVID_PATH } from '../server-svid.js';

/** Whether a workload may be issued `spiffeId`: well formed and not reserved for the server's own issuance. */
function mayBeIssued(spiffeId: string): boolean {
  const id = tryParseSpiffeId(spiffeId);
  return !(id instanceof SpiffeIdError) && reservedIdReason(id) === undefined;
}

/** Entries an agent is authorized for: children of the agent, and of those entries, transitively. */
export function entriesForAgent(
  all: readonly RegistrationEntry[],
  agentId: string,
  now = Date.now(),
): RegistrationEntry[] {
  // Entries with a reserved ID (the server's, agents', devices') are never handed out or signed,
  // even if one was stored before such IDs were refused at registration.
  const live = all.filter((e) => (e.expiresAt === null || e.expiresAt > now) && mayBeIssued(e.spiffeId));
  const byParent = new Map<string, RegistrationEntry[]>();
  for (const e of live) byParent.set(e.parentId, [...(byParent.get(e.parentId) ?? []), e]);
  const out: RegistrationEntry[] = [];
  const seenIds = new Set<string>([agentId]);
  const queue = [agentId];
  while (queue.length) {
    const parent = queue.shift() as string;
    for (const e of byParent.get(parent) ?? []) {
      out.push(e);
      if (!seenIds.has(e.spiffeId)) {
        seenIds.add(e.spiffeId);
        queue.push(e.spiffeId);
      }
    }
  }
  return out;
}

/** A route another plugin serves on the agent port (mTLS; the handler authenticates the peer itself). */
export interface AgentPortRoute {
  method: 'GET' | 'POST';
  path: string;
  handler: Handler;
}

export interface AgentEndpointOptions {
  ca: CaHandle;
  /** Routes of other plugins on this port, e.g. `assertionKeysPlugin(…).agentRoutes`. */
  routes?: readonly AgentPortRoute[];
  /** Attempts per address: burst and refill per minute (default 10 and 10). */
  attestBurst?: number;
  attestPerMinute?: number;
  /** How often to look for entry changes made by any server (default 500 ms). */
  pollMs?: number;
  /** The policy snapshot in force: streamed to agents so they decide locally. */
  policy?: PolicyHandle;
}

interface SyncClient {
  agentId: string;
  res: ServerResponse;
}

/** What the handlers of the agent port share: the server, the options, and the open sync streams. */
interface Port {
  ctx: ServerContext;
  opts: AgentEndpointOptions;
  limiter: RateLimiter;
  clients: Set<SyncClient>;
  /** The entry list, re-read only when the store's change mark moved. */
  entryCache?: { mark: string; entries: RegistrationEntry[] };
}

type AgentHandler = (p: Port, req: IncomingMessage, res: ServerResponse, agent: { agentId: string }) => Promise<void>;

/** The first problem of a request that does not fit its contract, as a 400. */
function invalidRequest(error: ZodError, expected: string): HttpError {
  const { field, message } = firstIssue(error);
  return new HttpError(400, 'invalid_request', `${field}: ${message} (expected ${expected})`);
}

/** The agent's SVID verified against the bundle in force, attested, not banned, and its current one. */
async function authenticateAgent(p: Port, req: IncomingMessage): Promise<{ agentId: string }> {
  const verified = verifyPeerSvid(req.socket as TLSSocket, p.opts.ca.current().bundle());
  const agentId = verified.spiffeId.toString();
  const rec = await p.ctx.store.agents.get(agentId);
  if (!rec) throw new HttpError(403, 'unknown_agent', `${agentId} is not an attested agent`);
  if (rec.banned) throw new HttpError(403, 'agent_banned', `${agentId} is banned`);
  const leaf = (req.socket as TLSSocket).getPeerX509Certificate();
  if (!leaf || serialText(leaf.serialNumber) !== serialText(rec.serial)) {
    throw new HttpError(403, 'stale_agent_svid', `${agentId} presented an SVID that is no longer its current one`);
  }
  return { agentId };
}

/** Wraps a handler of an mTLS route: the agent is authenticated first, a refusal recorded. */
function agentRoute(p: Port, fn: AgentHandler): Handler {
  return async (req, res) => {
    let agent: { agentId: string };
    try {
      agent = await authenticateAgent(p, req);
    } catch (e) {
      const reason = (e as Error).message;
      p.ctx.events.record({
        kind: 'agent.attested',
        outcome: 'deny',
        source: { ip: req.socket.remoteAddress },
        target: { resource: req.url },
        reason,
      });
      if (e instanceof HttpError) throw e;
      throw new HttpError(401, 'unauthenticated', reason);
    }
    await fn(p, req, res, agent);
  };
}

// The entry list, re-read only when the store's change mark moved (one cheap aggregate query per
// call instead of every row): exact, since every create, update and delete moves the mark.
async function allEntries(p: Port): Promise<RegistrationEntry[]> {
  const mark = await p.ctx.store.entries.changeMark();
  if (p.entryCache?.mark !== mark) p.entryCache = { mark, entries: await p.ctx.store.entries.list() };
  return p.entryCache.entries;
}

function issue(p: Port, csr: string, spiffeId: string, dnsNames: string[], ttl: number): Promise<IssuedX509Svid> {
  return p.opts.ca.current().signX509SvidFromCsrAsync({ csr, spiffeId, dnsNames, ttlSeconds: ttl });
}

/** `POST /agent/v1/attest` `{join_token, csr}` (TLS, no client certificate): a one-time join token. */
async function attest(p: Port, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { store, events, config } = p.ctx;
  const ip = req.socket.remoteAddress ?? 'unknown';
  const deny = (status: number, error: string, reason: string, agentId?: string): never => {
    events.record({
      kind: 'agent.attested',
      outcome: 'deny',
      source: { ip, id: agentId },
      target: { resource: 'join_token' },
      reason,
    });
    throw new HttpError(status, error, reason);
  };
  if (!p.limiter.take(ip)) deny(429, 'rate_limited', `too many attestation attempts from ${ip}; wait a minute`);
  const parsed = attestRequestSchema.safeParse((await readJson(req, 64 * 1024)) ?? {});
  if (!parsed.success) {
    const { field } = firstIssue(parsed.error);
    if (field === 'csr') deny(400, 'invalid_request', 'csr (PEM) is required');
    deny(400, 'invalid_token', 'join_token must be the 32-hex-digit token from `nevertrust token generate`');
    return;
  }
  const { join_token: token, csr } = parsed.data;
  const agentId = agentSpiffeId(config.trust_domain, 'join_token', token);
  const redeemed = await store.joinTokens.redeem(token, agentId);
  if (!redeemed.ok) {
    const why = { unknown: 'unknown join token', used: 'join token already used', expired: 'join token expired' }[
      redeemed.reason
    ];
    deny(403, `token_${redeemed.reason}`, why, agentId);
    return;
  }
  let svid: IssuedX509Svid;
  try {
    svid = await issue(p, csr, agentId, [], config.ca.x509_svid_ttl);
  } catch (e) {
    // A CSR the CA refuses is the caller's fault; a CA that cannot sign is ours (dispatch() answers 500).
    if (isNevertrustError(e) && e.expose) return deny(400, 'invalid_csr', e.message, agentId);
    throw e;
  }
  await store.agents.create({
    spiffeId: agentId,
    attestation: 'join_token',
    serial: svid.serialHex,
    svidExpiresAt: svid.notAfter.getTime(),
    attestedAt: Date.now(),
    remoteAddr: ip,
  });
  events.record({
    kind: 'agent.attested',
    outcome: 'allow',
    source: { ip, id: agentId },
    target: { id: agentId },
    reason: 'join token redeemed',
  });
  sendJson(res, 200, agentSvidAnswer(p, svid));
}

/** The answer to attest and renew: the SVID and the bundle in force. */
function agentSvidAnswer(p: Port, svid: IssuedX509Svid): AgentSvidWire {
  return { ...svidToWire(svid), bundle: p.opts.ca.current().bundle().toJwks() };
}

/** `POST /agent/v1/renew` `{csr}`: a new SVID for the agent itself. */
const renew: AgentHandler = async (p, req, res, { agentId }) => {
  const { store, events, config } = p.ctx;
  const parsed = renewRequestSchema.safeParse((await readJson(req, 64 * 1024)) ?? {});
  if (!parsed.success) throw new HttpError(400, 'invalid_request', 'csr (PEM) is required');
  const rec = await store.agents.get(agentId);
  const svid = await issue(p, parsed.data.csr, agentId, [], config.ca.x509_svid_ttl);
  if (!rec || !(await store.agents.renew(agentId, rec.serial, svid.serialHex, svid.notAfter.getTime()))) {
    throw new HttpError(409, 'conflict', 'the agent was renewed or banned concurrently');
  }
  events.record({
    kind: 'svid.issued',
    outcome: 'allow',
    source: { id: agentId },
    target: { id: agentId },
    reason: 'agent SVID renewed',
    details: { serial: svid.serialHex },
  });
  sendJson(res, 200, agentSvidAnswer(p, svid));
};

/** `POST /agent/v1/sign` `{requests: [{entry_id, csr}]}`: workload SVIDs for entries under the agent. */
const sign: AgentHandler = async (p, req, res, { agentId }) => {
  const { events } = p.ctx;
  const parsed = signRequestSchema.safeParse((await readJson(req, 4 << 20)) ?? {});
  if (!parsed.success)
    throw invalidRequest(parsed.error, `requests: an array of at most ${MAX_SIGN_REQUESTS} {entry_id, csr}`);
  const { requests } = parsed.data;
  const authorized = new Map(entriesForAgent(await allEntries(p), agentId).map((e) => [e.id, e]));
  // All authorized CSRs go to the CA at once, so its worker threads sign the batch in parallel;
  // results and events keep the request order.
  const issued = requests.map((r) => {
    const entry = authorized.get(r.entry_id);
    if (!entry) return undefined;
    return issue(p, r.csr, entry.spiffeId, entry.dnsNames, entry.x509SvidTtl).then(
      (svid) => ({ svid }),
      (e: Error) => ({ error: e }),
    );
  });
  const results: SignResponse['results'] = [];
  for (const [i, r] of requests.entries()) {
    const entry = authorized.get(r.entry_id);
    const outcome = await issued[i];
    if (!entry || !outcome) {
      const reason = `entry ${r.entry_id} is not authorized for ${agentId}`;
      events.record({
        kind: 'svid.issued',
        outcome: 'deny',
        source: { id: agentId },
        target: { id: r.entry_id },
        reason,
      });
      results.push({ entry_id: r.entry_id, error: reason });
      continue;
    }
    if ('svid' in outcome) {
      const { svid } = outcome;
      events.record({
        kind: 'svid.issued',
        outcome: 'allow',
        source: { id: agentId },
        target: { id: entry.spiffeId },
        reason: `entry ${entry.id}`,
        details: { serial: svid.serialHex, not_after: svid.notAfter.toISOString() },
      });
      results.push({ entry_id: entry.id, ...svidToWire(svid) });
    } else {
      results.push({ entry_id: entry.id, error: outcome.error.message });
    }
  }
  sendJson(res, 200, { results });
};

/** `POST /agent/v1/jwt` `{entry_id, audience}`: a JWT-SVID for an entry under the agent. */
const jwt: AgentHandler = async (p, req, res, { agentId }) => {
  const parsed = jwtRequestSchema.safeParse((await readJson(req, 64 * 1024)) ?? {});
  if (!parsed.success) throw invalidRequest(parsed.error, '{entry_id, audience: [non-empty strings]}');
  const { entry_id, audience } = parsed.data;
  const entry = entriesForAgent(await allEntries(p), agentId).find((e) => e.id === entry_id);
  if (!entry) throw new HttpError(403, 'not_authorized', `entry ${entry_id} is not authorized for ${agentId}`);
  const minted = await p.opts.ca
    .current()
    .mintJwtSvid({ spiffeId: entry.spiffeId, audience, ttlSeconds: entry.jwtSvidTtl });
  p.ctx.events.record({
    kind: 'jwt.issued',
    outcome: 'allow',
    source: { id: agentId },
    target: { id: entry.spiffeId },
    reason: `entry ${entry.id}`,
    details: { audience },
  });
  sendJson(res, 200, jwtSvidToWire(minted));
};

/** The `state` message of one agent: its entries and the bundle. */
async function stateFor(p: Port, agentId: string): Promise<SyncMessage> {
  return {
    type: 'state',
    entries: entriesForAgent(await allEntries(p), agentId).map(entryToWire),
    bundle: p.opts.ca.current().bundle().toJwks(),
  };
}

// The policy snapshot travels as its own message, sent on connect and whenever its version
// changes: agents compile it and decide locally (`null`: no policies, so they deny everything).
function policyMessage(p: Port): string {
  const snap = p.opts.policy?.current();
  return syncLine({
    type: 'policy',
    policy: snap ? { version: snap.version, policies: snap.policies, options: snap.options } : null,
  });
}

/** The current state to every open stream; a banned or deleted agent's stream ends with `revoked`. */
async function push(p: Port): Promise<void> {
  for (const c of p.clients) {
    try {
      const rec = await p.ctx.store.agents.get(c.agentId);
      if (!rec || rec.banned) {
        c.res.end(syncLine({ type: 'revoked', reason: rec ? 'agent banned' : 'agent deleted' }));
        p.clients.delete(c);
        continue;
      }
      c.res.write(syncLine(await stateFor(p, c.agentId)));
    } catch (e) {
      p.ctx.logger.error({ err: e, agent: c.agentId }, 'sync push failed');
    }
  }
}

/** `GET /agent/v1/sync`: the NDJSON stream of src/api/sync.ts. */
const sync: AgentHandler = async (p, req, res, { agentId }) => {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.write(syncLine(await stateFor(p, agentId)));
  if (p.opts.policy) res.write(policyMessage(p));
  const client = { agentId, res };
  p.clients.add(client);
  req.on('close', () => p.clients.delete(client));
};

/**
 * Watches for changes made through any server: the policy version, and one change mark covering
 * entries changed on the shared store and bans. Returns the timer.
 */
function watchChanges(p: Port): NodeJS.Timeout {
  let policyVersion = p.opts.policy?.current()?.version;
  let mark = '';
  const timer = setInterval(async () => {
    const v = p.opts.policy?.current()?.version;
    if (v !== policyVersion) {
      policyVersion = v;
      const msg = policyMessage(p);
      for (const c of p.clients) c.res.write(msg);
    }
    try {
      const agentsMark = (await p.ctx.store.agents.list()).filter((a) => a.banned).length;
      const m = `${await p.ctx.store.entries.changeMark()}/${agentsMark}`;
      if (m !== mark) {
        const first = mark === '';
        mark = m;
        if (!first) await push(p);
      }
    } catch (e) {
      p.ctx.logger.error({ err: e }, 'entry change poll failed');
    }
  }, p.opts.pollMs ?? 500);
  timer.unref();
  return timer;
}

export function agentEndpointPlugin(opts: AgentEndpointOptions): ServerPlugin & { address(): AddressInfo | undefined } {
  let https: Server | undefined;
  let serverSvid: ServerSvid | undefined;
  let poll: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  const clients = new Set<SyncClient>();

  return {
    name: 'agent-endpoint',
    dependsOn: ['ca'],
    address: () => (https?.address() as AddressInfo | null) ?? undefined,
    async register(ctx: ServerContext) {
      const { config, logger } = ctx;
      const td = config.trust_domain;
      const serverId = serverSpiffeId(td);
      const limiter = new RateLimiter(opts.attestBurst ?? 10, (opts.attestPerMinute ?? 10) / 60);
      const p: Port = { ctx, opts, limiter, clients };
      const router = new Router().onRefusal(refusalRecorder(ctx));
      for (const r of opts.routes ?? []) router.on(r.method, r.path, r.handler);
      router.on('POST', '/agent/v1/attest', (req, res) => attest(p, req, res));
      router.on('POST', '/agent/v1/renew', agentRoute(p, renew));
      router.on('POST', '/agent/v1/sign', agentRoute(p, sign));
      router.on('POST', '/agent/v1/jwt', agentRoute(p, jwt));
      router.on('GET', '/agent/v1/sync', agentRoute(p, sync));

      // The server's own SVID for this port, re-minted at half-life and on every bundle change.
      serverSvid = serverSvidSource(opts.ca, td);
      const tlsMaterial = () => ({
        cert: (serverSvid as ServerSvid).source.svid.certChainPem,
        key: (serverSvid as ServerSvid).source.svid.privateKeyPem,
      });
      serverSvid.source.on('update', () => https?.setSecureContext(tlsMaterial()));
      const current = tlsMaterial();

      poll = watchChanges(p);
      heartbeat = setInterval(() => {
        for (const c of clients) c.res.write(syncLine({ type: 'ping' }));
      }, 15_000);
      heartbeat.unref();
      unsubscribe = opts.ca.onBundleChange(() => void push(p));

      https = createServer(
        { cert: current.cert, key: current.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
        // The same one error mapping as the API port: 413 for an oversized body, internals logged only.
        (req, res) =>
          void dispatch(router, req, res, (err, path) => logger.error({ err, path }, 'agent endpoint error')),
      );
      let agentPort: number;
      try {
        agentPort = await listen(https, { host: config.server.host, port: config.server.agent_port });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
        throw new Error(
          `agent port ${config.server.host}:${config.server.agent_port} is already in use: pick another with --agent-port`,
        );
      }
      logger.info({ agent_port: agentPort, server_id: serverId }, 'agent endpoint listening');
      ctx.announce('agent port', `https://${config.server.host}:${agentPort}   (mTLS, server ID ${serverId})`);
      // Make sure the parse of our own ID is valid once, at start.
      parseSpiffeId(serverId);
    },
    async close() {
      if (poll) clearInterval(poll);
      if (heartbeat) clearInterval(heartbeat);
      unsubscribe?.();
      serverSvid?.stop();
      for (const c of clients) c.res.end();
      clients.clear();
      const closed = new Promise<void>((r) => (https ? https.close(() => r()) : r()));
      https?.closeAllConnections();
      await closed;
    },
  };
}
