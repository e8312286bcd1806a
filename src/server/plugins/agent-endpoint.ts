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
import { certificatesToPem, type IssuedX509Svid } from '../../ca/index.js';
import type { RegistrationEntry } from '../../registration/entry.js';
import { agentSpiffeId, parseSpiffeId, serverSpiffeId } from '../../spiffe/index.js';
import { verifyPeerSvid } from '../peer-svid.js';
import { isNevertrustError } from '../../errors.js';
import { refusalRecorder } from '../refusal-hook.js';
import { dispatch, type Handler, HttpError, readJson, Router, sendJson } from '../router.js';
import { type ServerSvid, serverSvidSource } from '../server-svid.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { CaHandle } from './ca.js';
import type { PolicyHandle } from './policy.js';
import { entryJson } from './registration.js';
import { RateLimiter } from '../rate-limiter.js';

export { SERVER_SVID_PATH } from '../server-svid.js';

/** Entries an agent is authorized for: children of the agent, and of those entries, transitively. */
export function entriesForAgent(
  all: readonly RegistrationEntry[],
  agentId: string,
  now = Date.now(),
): RegistrationEntry[] {
  const live = all.filter((e) => e.expiresAt === null || e.expiresAt > now);
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
      const { config, store, logger, events } = ctx;
      const td = config.trust_domain;
      const serverId = serverSpiffeId(td);
      const limiter = new RateLimiter(opts.attestBurst ?? 10, (opts.attestPerMinute ?? 10) / 60);
      const router = new Router().onRefusal(refusalRecorder(ctx));
      for (const r of opts.routes ?? []) router.on(r.method, r.path, r.handler);

      // The server's own SVID for this port, re-minted at half-life and on every bundle change.
      serverSvid = serverSvidSource(opts.ca, td);
      const tlsMaterial = () => ({
        cert: (serverSvid as ServerSvid).source.svid.certChainPem,
        key: (serverSvid as ServerSvid).source.svid.privateKeyPem,
      });
      serverSvid.source.on('update', () => https?.setSecureContext(tlsMaterial()));
      const current = tlsMaterial();

      const authenticateAgent = async (req: IncomingMessage) => {
        const verified = verifyPeerSvid(req.socket as TLSSocket, opts.ca.current().bundle());
        const agentId = verified.spiffeId.toString();
        const rec = await store.agents.get(agentId);
        if (!rec) throw new HttpError(403, 'unknown_agent', `${agentId} is not an attested agent`);
        if (rec.banned) throw new HttpError(403, 'agent_banned', `${agentId} is banned`);
        const leaf = (req.socket as TLSSocket).getPeerX509Certificate();
        if (
          !leaf ||
          leaf.serialNumber.toLowerCase().replace(/^0+/, '') !== rec.serial.toLowerCase().replace(/^0+/, '')
        ) {
          throw new HttpError(
            403,
            'stale_agent_svid',
            `${agentId} presented an SVID that is no longer its current one`,
          );
        }
        return { agentId, rec };
      };

      // The entry list, re-read only when the store's change mark moved (one cheap aggregate query
      // per call instead of every row): exact, since every create, update and delete moves the mark.
      let entryCache: { mark: string; entries: RegistrationEntry[] } | undefined;
      const allEntries = async (): Promise<RegistrationEntry[]> => {
        const mark = await store.entries.changeMark();
        if (entryCache?.mark !== mark) entryCache = { mark, entries: await store.entries.list() };
        return entryCache.entries;
      };

      const issue = async (csr: string, spiffeId: string, dnsNames: string[], ttl: number): Promise<IssuedX509Svid> =>
        opts.ca.current().signX509SvidFromCsrAsync({ csr, spiffeId, dnsNames, ttlSeconds: ttl });

      const svidJson = (s: IssuedX509Svid) => ({
        spiffe_id: s.spiffeId.toString(),
        chain_pem: certificatesToPem(s.chain),
        serial: s.serialHex,
        expires_at: s.notAfter.toISOString(),
      });

      router.on('POST', '/agent/v1/attest', async (req, res) => {
        const ip = req.socket.remoteAddress ?? 'unknown';
        const deny = (status: number, error: string, reason: string, agentId?: string) => {
          events.record({
            kind: 'agent.attested',
            outcome: 'deny',
            source: { ip, id: agentId },
            target: { resource: 'join_token' },
            reason,
          });
          throw new HttpError(status, error, reason);
        };
        if (!limiter.take(ip)) deny(429, 'rate_limited', `too many attestation attempts from ${ip}; wait a minute`);
        const body = ((await readJson(req, 64 * 1024)) ?? {}) as { join_token?: unknown; csr?: unknown };
        if (typeof body.join_token !== 'string' || !/^[0-9a-f]{32}$/.test(body.join_token)) {
          deny(400, 'invalid_token', 'join_token must be the 32-hex-digit token from `nevertrust token generate`');
        }
        if (typeof body.csr !== 'string') deny(400, 'invalid_request', 'csr (PEM) is required');
        const token = body.join_token as string;
        const agentId = agentSpiffeId(td, 'join_token', token);
        const redeemed = await store.joinTokens.redeem(token, agentId);
        if (!redeemed.ok) {
          const why = { unknown: 'unknown join token', used: 'join token already used', expired: 'join token expired' }[
            redeemed.reason
          ];
          deny(403, `token_${redeemed.reason}`, why, agentId);
        }
        let svid: IssuedX509Svid;
        try {
          svid = await issue(body.csr as string, agentId, [], config.ca.x509_svid_ttl);
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
        sendJson(res, 200, { ...svidJson(svid), bundle: opts.ca.current().bundle().toJwks() });
      });

      const agentRoute =
        (fn: (req: IncomingMessage, res: ServerResponse, agent: { agentId: string }) => Promise<void>) =>
        async (req: IncomingMessage, res: ServerResponse) => {
          let agent: { agentId: string };
          try {
            agent = await authenticateAgent(req);
          } catch (e) {
            const reason = (e as Error).message;
            events.record({
              kind: 'agent.attested',
              outcome: 'deny',
              source: { ip: req.socket.remoteAddress },
              target: { resource: req.url },
              reason,
            });
            if (e instanceof HttpError) throw e;
            throw new HttpError(401, 'unauthenticated', reason);
          }
          await fn(req, res, agent);
        };

      router.on(
        'POST',
        '/agent/v1/renew',
        agentRoute(async (req, res, { agentId }) => {
          const body = ((await readJson(req, 64 * 1024)) ?? {}) as { csr?: unknown };
          if (typeof body.csr !== 'string') throw new HttpError(400, 'invalid_request', 'csr (PEM) is required');
          const rec = await store.agents.get(agentId);
          const svid = await issue(body.csr, agentId, [], config.ca.x509_svid_ttl);
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
          sendJson(res, 200, { ...svidJson(svid), bundle: opts.ca.current().bundle().toJwks() });
        }),
      );

      router.on(
        'POST',
        '/agent/v1/sign',
        agentRoute(async (req, res, { agentId }) => {
          const body = ((await readJson(req, 4 << 20)) ?? {}) as { requests?: unknown };
          if (!Array.isArray(body.requests) || body.requests.length > 1000) {
            throw new HttpError(400, 'invalid_request', 'requests: an array of at most 1000 {entry_id, csr}');
          }
          const authorized = new Map(entriesForAgent(await allEntries(), agentId).map((e) => [e.id, e]));
          const requests = body.requests as { entry_id?: unknown; csr?: unknown }[];
          const entryOf = (r: (typeof requests)[number]) =>
            typeof r.entry_id === 'string' ? authorized.get(r.entry_id) : undefined;
          // All authorized CSRs go to the CA at once, so its worker threads sign the batch in parallel;
          // results and events keep the request order.
          const issued = requests.map((r) => {
            const entry = entryOf(r);
            if (!entry || typeof r.csr !== 'string') return undefined;
            return issue(r.csr, entry.spiffeId, entry.dnsNames, entry.x509SvidTtl).then(
              (svid) => ({ svid }),
              (e: Error) => ({ error: e }),
            );
          });
          const results = [];
          for (const [i, r] of requests.entries()) {
            const entry = entryOf(r);
            const outcome = await issued[i];
            if (!entry || !outcome) {
              const reason = `entry ${String(r.entry_id)} is not authorized for ${agentId}`;
              events.record({
                kind: 'svid.issued',
                outcome: 'deny',
                source: { id: agentId },
                target: { id: String(r.entry_id) },
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
              results.push({ entry_id: entry.id, ...svidJson(svid) });
            } else {
              results.push({ entry_id: entry.id, error: outcome.error.message });
            }
          }
          sendJson(res, 200, { results });
        }),
      );

      router.on(
        'POST',
        '/agent/v1/jwt',
        agentRoute(async (req, res, { agentId }) => {
          const body = ((await readJson(req, 64 * 1024)) ?? {}) as { entry_id?: unknown; audience?: unknown };
          const entry = entriesForAgent(await allEntries(), agentId).find((e) => e.id === body.entry_id);
          const audience = Array.isArray(body.audience) ? body.audience.map(String).filter((a) => a.length > 0) : [];
          if (!entry)
            throw new HttpError(
              403,
              'not_authorized',
              `entry ${String(body.entry_id)} is not authorized for ${agentId}`,
            );
          if (audience.length === 0) throw new HttpError(400, 'invalid_request', 'at least one audience is required');
          const jwt = await opts.ca
            .current()
            .mintJwtSvid({ spiffeId: entry.spiffeId, audience, ttlSeconds: entry.jwtSvidTtl });
          events.record({
            kind: 'jwt.issued',
            outcome: 'allow',
            source: { id: agentId },
            target: { id: entry.spiffeId },
            reason: `entry ${entry.id}`,
            details: { audience },
          });
          sendJson(res, 200, { token: jwt.token, expires_at: jwt.expiresAt.toISOString() });
        }),
      );

      const stateFor = async (agentId: string) => ({
        type: 'state',
        entries: entriesForAgent(await allEntries(), agentId).map(entryJson),
        bundle: opts.ca.current().bundle().toJwks(),
      });
      // The policy snapshot travels as its own message, sent on connect and whenever its version
      // changes: agents compile it and decide locally (`null`: no policies, so they deny everything).
      const policyMessage = () => {
        const snap = opts.policy?.current();
        return `${JSON.stringify({
          type: 'policy',
          policy: snap ? { version: snap.version, policies: snap.policies, options: snap.options } : null,
        })}\n`;
      };
      let policyVersion = opts.policy?.current()?.version;
      const pushPolicy = () => {
        const msg = policyMessage();
        for (const c of clients) c.res.write(msg);
      };
      const push = async () => {
        for (const c of clients) {
          try {
            const rec = await store.agents.get(c.agentId);
            if (!rec || rec.banned) {
              c.res.end(`${JSON.stringify({ type: 'revoked', reason: rec ? 'agent banned' : 'agent deleted' })}\n`);
              clients.delete(c);
              continue;
            }
            c.res.write(`${JSON.stringify(await stateFor(c.agentId))}\n`);
          } catch (e) {
            logger.error({ err: e, agent: c.agentId }, 'sync push failed');
          }
        }
      };

      router.on(
        'GET',
        '/agent/v1/sync',
        agentRoute(async (req, res, { agentId }) => {
          res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
          res.write(`${JSON.stringify(await stateFor(agentId))}\n`);
          if (opts.policy) res.write(policyMessage());
          const client = { agentId, res };
          clients.add(client);
          req.on('close', () => clients.delete(client));
        }),
      );

      // One change mark covers entries changed by any server on the shared store, and bans.
      let mark = '';
      poll = setInterval(async () => {
        const v = opts.policy?.current()?.version;
        if (v !== policyVersion) {
          policyVersion = v;
          pushPolicy();
        }
        try {
          const agentsMark = (await store.agents.list()).filter((a) => a.banned).length;
          const m = `${await store.entries.changeMark()}/${agentsMark}`;
          if (m !== mark) {
            const first = mark === '';
            mark = m;
            if (!first) await push();
          }
        } catch (e) {
          logger.error({ err: e }, 'entry change poll failed');
        }
      }, opts.pollMs ?? 500);
      poll.unref();
      heartbeat = setInterval(() => {
        for (const c of clients) c.res.write(`${JSON.stringify({ type: 'ping' })}\n`);
      }, 15_000);
      heartbeat.unref();
      unsubscribe = opts.ca.onBundleChange(() => void push());

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
