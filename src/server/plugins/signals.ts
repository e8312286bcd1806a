/**
 * Signals on the server (issue #23): every revocation, risk score and posture signal is kept in the
 * store with a sequence number, audited (event kind `signal`), and streamed in order to every
 * enforcement point that follows `GET /v1/signals/stream?after=<seq>`.
 *
 *   SignalsHandle.raise(signal)        other plugins (SSF receiver…) raise a signal; returns its seq
 *   ServerEvents with details.signal   raised too (devices: device.revoke, device.non_compliant;
 *                                      registration: entry deleted, agent banned; users: disabled…)
 *   GET  /v1/signals/stream            agent port: mTLS, any X.509-SVID of the trust domain
 *                                      (each reads every signal: user, device and session IDs,
 *                                      reasons; documented in docs/signals.md);
 *                                      API port: the admin token (for tools)
 *   POST /v1/admin/revoke              {session|user|device|svid, reason?}
 *   POST /v1/admin/risk                {user|device, score, reason?}
 *   GET  /v1/admin/signals             ?after=&limit=
 *
 * `session.revoked` and the `user.*` kinds also end the sessions in the store, so a proxy that
 * restarts (or never followed the stream) refuses them too. Signals older than `signals.retention`
 * are pruned; the newest is always kept so numbering never goes back.
 *
 * @example
 * ```ts
 * const signals = signalsPlugin({ ca: ca.handle });
 * startServer({ config, logger, plugins: [ca, signals, agentEndpointPlugin({ ca: ca.handle, routes: signals.agentRoutes })] });
 * const seq = await signals.handle.raise({ kind: 'session.revoked', sessionId, reason: 'stolen', source: 'admin', at });
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { firstIssue } from '../../api/parse.js';
import {
  type RaisedSignalWire,
  revokeRequestSchema,
  riskRequestSchema,
  type SequencedSignal,
  type Signal,
  type SignalListWire,
  type SignalStreamMessage,
  signalSchema,
  signalSubject,
} from '../../api/signals.js';
import { SIGNAL_STREAM_PATH } from '../../signals/follow.js';
import type { AdminPrincipal } from '../admin-auth.js';
import type { ServerEvent } from '../events.js';
import { PeerSvidError, verifyPeerSvid } from '../peer-svid.js';
import { type Handler, HttpError, readJson, refusal, sendJson } from '../router.js';
import { adminRoute, type ServerContext, type ServerPlugin } from '../server.js';
import type { AgentPortRoute } from './agent-endpoint.js';
import type { CaHandle } from './ca.js';

/** What other plugins use to raise a signal. */
export interface SignalsHandle {
  /**
   * Validates, keeps (numbered), audits and streams a signal; ends the sessions it names in the store.
   * Returns its seq. Throws on a signal that does not fit the model (nothing kept) or a store failure.
   */
  raise(signal: Signal): Promise<number>;
  /** Called after each signal this server kept (e.g. to transmit it as a SET); returns unsubscribe. */
  onKept(listener: (m: SequencedSignal) => void): () => void;
}

export interface SignalsPluginOptions {
  /** The CA whose bundle verifies followers' SVIDs on the agent port. */
  ca: CaHandle;
  /** How often to look for signals kept by other servers on a shared store (default 200 ms). */
  pollMs?: number;
  /** A `ping` to every stream this often (default 5 s), so followers notice a dead connection. */
  pingMs?: number;
  /** How often to prune signals older than `signals.retention` (default 60 s). */
  pruneIntervalMs?: number;
}

/** Signals read from the store per query while a stream catches up. */
const PAGE = 500;
/** `GET /v1/admin/signals` answers this many unless `limit` says otherwise (at most 1000). */
const LIST_DEFAULT = 100;

interface StreamClient {
  res: ServerResponse;
  cursor: number;
  pumping: boolean;
  again: boolean;
  closed: boolean;
  expiry?: NodeJS.Timeout;
}

const line = (m: SignalStreamMessage) => `${JSON.stringify(m)}\n`;

export function signalsPlugin(opts: SignalsPluginOptions): ServerPlugin & {
  readonly handle: SignalsHandle;
  readonly agentRoutes: readonly AgentPortRoute[];
} {
  let ctx: ServerContext | undefined;
  const clients = new Set<StreamClient>();
  const keptListeners = new Set<(m: SequencedSignal) => void>();
  let knownHead = 0;
  const timers: NodeJS.Timeout[] = [];
  let unsubscribe: (() => void) | undefined;

  const need = (): ServerContext => {
    if (!ctx) throw new HttpError(503, 'starting', 'the signals plugin is not ready yet');
    return ctx;
  };

  /** Writes every kept signal after the client's cursor, in order; one pump per client at a time. */
  const pump = async (c: StreamClient): Promise<void> => {
    if (c.pumping) {
      c.again = true;
      return;
    }
    c.pumping = true;
    try {
      const { store } = need();
      for (;;) {
        c.again = false;
        const page = await store.signals.after(c.cursor, PAGE);
        for (const m of page) {
          if (c.closed) return;
          const ok = c.res.write(line({ type: 'signal', ...m }));
          c.cursor = m.seq;
          if (!ok) await drained(c.res);
        }
        if (page.length < PAGE && !c.again) return;
      }
    } catch (e) {
      ctx?.logger.error({ err: e }, 'signal stream: reading the store failed; ending the stream');
      c.res.destroy();
    } finally {
      c.pumping = false;
    }
  };

  const wakeAll = () => {
    for (const c of clients) void pump(c);
  };

  const raiseFull = async (input: Signal): Promise<Raised> => {
    const c = need();
    const signal = signalSchema.parse(input);
    const seq = await c.store.signals.append(signal);
    knownHead = Math.max(knownHead, seq);
    const ended = await endSessions(c, signal);
    const subject = signalSubject(signal);
    c.events.record({
      kind: 'signal',
      outcome: 'allow',
      source: { id: signal.origin },
      target: { id: subject },
      reason: `${signal.kind}: ${signal.reason}`,
      details: {
        seq,
        kind: signal.kind,
        subject,
        source: signal.source,
        reason: signal.reason,
        ...(signal.origin !== undefined && { origin: signal.origin }),
        ...(ended.length > 0 && { ended_sessions: ended.length }),
      },
    });
    wakeAll();
    const kept: SequencedSignal = { seq, signal, received_at: new Date().toISOString() };
    for (const l of keptListeners) {
      try {
        l(kept);
      } catch (e) {
        c.logger.error({ err: e, seq }, 'a signal listener failed');
      }
    }
    return { seq, ended: ended.length };
  };
  const raise = async (input: Signal): Promise<number> => (await raiseFull(input)).seq;

  /** Raises the signal an event carries (devices, registration, users); failures are logged and audited. */
  const onEvent = (e: ServerEvent) => {
    if (e.kind === 'signal') return;
    const carried = e.details?.signal;
    if (carried === undefined) return;
    const parsed = signalSchema.safeParse(carried);
    if (!parsed.success) {
      ctx?.logger.warn(
        { event: e.kind, problem: firstIssue(parsed.error) },
        'an event carried a signal that does not fit the model',
      );
      return;
    }
    raise(parsed.data).catch((err: unknown) => {
      ctx?.logger.error({ err, event: e.kind }, 'raising a signal failed');
      ctx?.events.record({
        kind: 'signal',
        outcome: 'error',
        source: { id: parsed.data.origin },
        target: { id: signalSubject(parsed.data) },
        reason: `${parsed.data.kind} not kept: ${(err as Error).message}`,
      });
    });
  };

  /** The stream itself, once the caller is authenticated. */
  const stream = async (req: IncomingMessage, res: ServerResponse, url: URL, notAfter?: number) => {
    const { store } = need();
    const afterText = url.searchParams.get('after') ?? '0';
    if (!/^\d{1,15}$/.test(afterText))
      throw new HttpError(400, 'invalid_request', 'after: a sequence number (an integer ≥ 0)');
    const after = Number(afterText);
    const [head, oldest] = [await store.signals.head(), await store.signals.oldest()];
    knownHead = Math.max(knownHead, head);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.write(line({ type: 'hello', head, oldest }));
    const c: StreamClient = { res, cursor: after, pumping: false, again: false, closed: false };
    if (notAfter !== undefined) {
      // The SVID that opened the stream expires: end it, the follower reconnects with its new one.
      c.expiry = setTimeout(() => res.end(), Math.max(0, Math.min(notAfter - Date.now(), 2 ** 31 - 1)));
      c.expiry.unref();
    }
    clients.add(c);
    const gone = () => {
      c.closed = true;
      if (c.expiry) clearTimeout(c.expiry);
      clients.delete(c);
    };
    req.on('close', gone);
    res.on('close', gone);
    await pump(c);
  };

  /** Agent port: any X.509-SVID of the trust domain, verified on this request against the bundle in force. */
  const streamBySvid: Handler = async (req, res, url) => {
    const c = need();
    const socket = req.socket as TLSSocket;
    let follower: string;
    try {
      follower = verifyPeerSvid(socket, opts.ca.current().bundle()).spiffeId.toString();
    } catch (e) {
      if (!(e instanceof PeerSvidError)) throw e;
      throw refusal(new HttpError(401, 'unauthenticated', e.message), { context: 'signal stream refused' });
    }
    // A banned agent's SVID stays valid until it expires; it follows nothing meanwhile.
    if ((await c.store.agents.get(follower))?.banned)
      throw refusal(new HttpError(403, 'agent_banned', `${follower} is banned`), {
        by: follower,
        context: 'signal stream refused',
      });
    const leaf = socket.getPeerX509Certificate();
    await stream(req, res, url, leaf ? Date.parse(leaf.validTo) : undefined);
  };

  return {
    name: 'signals',
    dependsOn: ['ca'],
    handle: {
      raise,
      onKept(l) {
        keptListeners.add(l);
        return () => keptListeners.delete(l);
      },
    },
    agentRoutes: [{ method: 'GET', path: SIGNAL_STREAM_PATH, handler: streamBySvid }],
    async register(c: ServerContext) {
      ctx = c;
      knownHead = await c.store.signals.head();
      const { router } = c;
      router.on(
        'GET',
        SIGNAL_STREAM_PATH,
        adminRoute(c, (req, res, url) => stream(req, res, url)),
      );
      router.on(
        'POST',
        '/v1/admin/revoke',
        adminRoute(c, (req, res, _url, who) => revoke(c, raiseFull, req, res, who)),
      );
      router.on(
        'POST',
        '/v1/admin/risk',
        adminRoute(c, (req, res, _url, who) => risk(raiseFull, req, res, who)),
      );
      router.on(
        'GET',
        '/v1/admin/signals',
        adminRoute(c, (_req, res, url) => list(c, res, url)),
      );
      unsubscribe = c.events.subscribe(onEvent);

      // Signals kept by other servers on a shared store: look for a newer head while anyone follows.
      const poll = setInterval(async () => {
        if (clients.size === 0) return;
        try {
          const head = await c.store.signals.head();
          if (head > knownHead) {
            knownHead = head;
            wakeAll();
          }
        } catch (e) {
          c.logger.error({ err: e }, 'signal poll failed');
        }
      }, opts.pollMs ?? 200);
      const ping = setInterval(() => {
        for (const cl of clients) if (!cl.pumping) cl.res.write(line({ type: 'ping', head: knownHead }));
      }, opts.pingMs ?? 5_000);
      const retentionMs = c.config.signals.retention * 1000;
      const prune = setInterval(async () => {
        try {
          const n = await c.store.signals.prune(Date.now() - retentionMs);
          if (n > 0) c.logger.info({ pruned: n }, 'signals past retention pruned');
        } catch (e) {
          c.logger.error({ err: e }, 'signal pruning failed');
        }
      }, opts.pruneIntervalMs ?? 60_000);
      for (const t of [poll, ping, prune]) {
        t.unref();
        timers.push(t);
      }
    },
    close() {
      for (const t of timers) clearInterval(t);
      unsubscribe?.();
      for (const c of clients) {
        c.closed = true;
        if (c.expiry) clearTimeout(c.expiry);
        c.res.end();
      }
      clients.clear();
    },
  };
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((r) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      r();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Ends the store's sessions a signal names: one session, or every session of a person. */
async function endSessions(ctx: ServerContext, s: Signal): Promise<string[]> {
  const why = `${s.kind}: ${s.reason}`.slice(0, 512);
  switch (s.kind) {
    case 'session.revoked':
      return (await ctx.store.accessSessions.end(s.sessionId, why)) ? [s.sessionId] : [];
    case 'user.disabled':
    case 'user.logged-out':
    case 'user.credentials-changed': {
      const u = s.user;
      const subjects = u.issuer !== undefined && u.sub !== undefined ? [{ issuer: u.issuer, sub: u.sub }] : [];
      return ctx.store.accessSessions.endByUser(u.user, subjects, why);
    }
    default:
      return [];
  }
}

/** A bad admin request: recorded as a refusal, answered 400, nothing changed. */
function badRequest(error: unknown, what: string, who: AdminPrincipal): HttpError {
  const { field, message } = firstIssue(error as Parameters<typeof firstIssue>[0]);
  return refusal(new HttpError(400, 'invalid_request', `${field || 'body'}: ${message}`), {
    by: who.id,
    context: `${what} refused`,
  });
}

/** A kept signal's seq and how many sessions the store ended because of it. */
interface Raised {
  seq: number;
  ended: number;
}
type Raise = (s: Signal) => Promise<Raised>;

/** `POST /v1/admin/revoke` `{session|user|device|svid, reason?}`. */
async function revoke(
  ctx: ServerContext,
  raise: Raise,
  req: IncomingMessage,
  res: ServerResponse,
  who: AdminPrincipal,
): Promise<void> {
  const parsed = revokeRequestSchema.safeParse((await readJson(req, 16 * 1024)) ?? {});
  if (!parsed.success) throw badRequest(parsed.error, 'revoke', who);
  const r = parsed.data;
  const common = {
    source: 'admin' as const,
    at: new Date().toISOString(),
    origin: `admin:${who.id}`,
  };
  let signal: Signal;
  if (r.session !== undefined) {
    signal = { kind: 'session.revoked', sessionId: r.session, reason: r.reason ?? 'revoked by an admin', ...common };
  } else if (r.user !== undefined) {
    signal = {
      kind: 'user.logged-out',
      user: { user: r.user },
      reason: r.reason ?? 'signed out everywhere by an admin',
      ...common,
    };
  } else if (r.device !== undefined) {
    // The device table says so too, as `nevertrust device revoke` does.
    const device = await ctx.store.devices.get(r.device);
    if (!device)
      throw refusal(new HttpError(404, 'device_unknown', `no device ${r.device}`), {
        by: who.id,
        context: 'revoke refused',
      });
    if (device.revokedAt === null) await ctx.store.devices.revoke(r.device, r.reason ?? null, Date.now());
    signal = { kind: 'device.revoked', deviceId: r.device, reason: r.reason ?? 'revoked by an admin', ...common };
  } else {
    signal = {
      kind: 'svid.revoked',
      serial: (r.svid as string).toLowerCase(),
      reason: r.reason ?? 'revoked by an admin',
      ...common,
    };
  }
  const { seq, ended } = await raise(signal);
  const answer: RaisedSignalWire = { seq, kind: signal.kind, subject: signalSubject(signal), ended_sessions: ended };
  sendJson(res, 200, answer);
}

/** `POST /v1/admin/risk` `{user|device, score, reason?}`. */
async function risk(raise: Raise, req: IncomingMessage, res: ServerResponse, who: AdminPrincipal): Promise<void> {
  const parsed = riskRequestSchema.safeParse((await readJson(req, 16 * 1024)) ?? {});
  if (!parsed.success) throw badRequest(parsed.error, 'risk', who);
  const r = parsed.data;
  const signal: Signal = {
    kind: 'risk.set',
    target:
      r.user !== undefined
        ? { type: 'user', user: { user: r.user } }
        : { type: 'device', deviceId: r.device as string },
    score: r.score,
    reason: r.reason ?? `risk set to ${r.score} by an admin`,
    source: 'admin',
    at: new Date().toISOString(),
    origin: `admin:${who.id}`,
  };
  const { seq } = await raise(signal);
  const answer: RaisedSignalWire = { seq, kind: signal.kind, subject: signalSubject(signal), ended_sessions: 0 };
  sendJson(res, 200, answer);
}

/** `GET /v1/admin/signals?after=&limit=`: kept signals after a seq, oldest first. */
async function list(ctx: ServerContext, res: ServerResponse, url: URL): Promise<void> {
  const after = url.searchParams.get('after') ?? '0';
  const limit = url.searchParams.get('limit') ?? String(LIST_DEFAULT);
  if (!/^\d{1,15}$/.test(after))
    throw new HttpError(400, 'invalid_request', 'after: a sequence number (an integer ≥ 0)');
  if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000)
    throw new HttpError(400, 'invalid_request', 'limit: an integer from 1 to 1000');
  const answer: SignalListWire = {
    signals: await ctx.store.signals.after(Number(after), Number(limit)),
    head: await ctx.store.signals.head(),
    oldest: await ctx.store.signals.oldest(),
  };
  sendJson(res, 200, answer);
}
