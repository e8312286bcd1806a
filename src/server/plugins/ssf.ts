/**
 * OpenID Shared Signals (SSF 1.0) in the server, from `signals.ssf` (docs/signals.md).
 *
 * Receivers: for each configured transmitter, its metadata is discovered at
 * `/.well-known/ssf-configuration` (in the background, retried: a transmitter that is down does not
 * stop the control plane; until its keys are known its SETs are answered 503), our stream is
 * created (or read) at its `configuration_endpoint` and its status read; SETs arrive at
 * `POST /v1/ssf/push/<name>` (RFC 8935: 202, or 400 with `{err, description}`) or by polling
 * (RFC 8936, with acks). Each SET is verified, mapped, and its signals raised through the signals
 * handle. Replay protection is in memory (per receiver): a restart forgets seen `jti`s, and a SET
 * replayed within its `max_age` after a restart raises its signals again (which only takes away
 * what was already taken away).
 *
 * Transmitter: our metadata, JWKS, stream management (one stream per configured receiver,
 * authenticated by that receiver's bearer token), push delivery of our signals in seq order and an
 * RFC 8936 poll endpoint. Signals received over SSF are not sent on (no echo between two
 * transmitters that receive from each other).
 */
import { createPrivateKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, exportJWK, type JWTVerifyGetKey } from 'jose';
import type { SsfReceiverConfig, SsfStreamConfig } from '../../config/ssf.js';
import { ensureStream, pollSets, streamStatus } from '../../signals/ssf/client.js';
import { discoverTransmitter, ssfWellKnownUrl, type TransmitterMetadata } from '../../signals/ssf/discovery.js';
import { SsfError } from '../../signals/ssf/errors.js';
import { createSetReceiver } from '../../signals/ssf/receiver.js';
import { createMemorySeenSet, SET_MAX_BYTES } from '../../signals/ssf/set.js';
import { createSetSigner, type SetSigningAlg, ssfConfiguration } from '../../signals/ssf/transmit.js';
import {
  pollRequestSchema,
  SsfStreamError,
  SsfTransmitter,
  type StreamStatus,
  streamRequestSchema,
} from '../../signals/ssf/transmitter.js';
import { sha256Hex } from '../../store/access-sessions.js';
import { readBody, readJson, sendJson } from '../router.js';
import type { ServerContext, ServerPlugin } from '../server.js';
import type { SignalsHandle } from './signals.js';

/** The push endpoint of a receiver. */
export const ssfPushPath = (name: string): string => `/v1/ssf/push/${name}`;

/** Reads a bearer token (or header) file: not readable by group or others, not empty. */
function readSecretFile(file: string, field: string): string {
  const path = resolve(file);
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (e) {
    throw new SsfError('ERR_SSF_BAD_CONFIG', `${field} ${path}: ${(e as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new SsfError(
      'ERR_SSF_BAD_CONFIG',
      `${field} ${path}: mode ${(mode & 0o777).toString(8)} lets group or others read it; run chmod 600 ${path}`,
    );
  const value = readFileSync(path, 'utf8').trim();
  if (value.length === 0) throw new SsfError('ERR_SSF_BAD_CONFIG', `${field} ${path}: the file is empty`);
  return value;
}

/** The bearer token of a request, or undefined. */
function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  return m?.[1];
}

/** Constant time, length included: the digests are compared, never the tokens. */
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(Buffer.from(sha256Hex(a)), Buffer.from(sha256Hex(b)));
}

/** RFC 8935 §2.3 error answer. */
function pushError(
  res: ServerResponse,
  status: number,
  err: string,
  description: string,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { err, description }, headers);
}

// ---------------------------------------------------------------------------------------------
// Receivers

interface RunningReceiver {
  stop(): Promise<void>;
}

function startReceiver(ctx: ServerContext, r: SsfReceiverConfig, signals: SignalsHandle): RunningReceiver {
  const log = ctx.logger.child({ ssf_receiver: r.name });
  const token = r.token_file ? readSecretFile(r.token_file, `signals.ssf.receivers[${r.name}].token_file`) : undefined;
  const pushToken = r.push_token_file
    ? readSecretFile(r.push_token_file, `signals.ssf.receivers[${r.name}].push_token_file`)
    : undefined;
  let keys: JWTVerifyGetKey | undefined;
  if (r.jwks_file) {
    const file = resolve(r.jwks_file);
    try {
      keys = createLocalJWKSet(JSON.parse(readFileSync(file, 'utf8')));
    } catch (e) {
      throw new SsfError(
        'ERR_SSF_BAD_CONFIG',
        `signals.ssf.receivers[${r.name}].jwks_file ${file}: ${(e as Error).message}`,
      );
    }
  }
  const receiver = createSetReceiver({
    issuer: r.issuer,
    audience: r.audience,
    keys: () => keys,
    maxAgeSeconds: r.max_age,
    seen: createMemorySeenSet(),
    sink: signals,
  });

  ctx.router.on('POST', ssfPushPath(r.name), async (req, res, url) => {
    if (r.delivery !== 'push') return pushError(res, 404, 'invalid_request', 'this receiver polls: no push endpoint');
    const refuse = (e: SsfError) => {
      ctx.router.refused(req, url, e, { context: `SSF push to ${r.name} refused` }, (err) =>
        log.error({ err }, 'refusal hook failed'),
      );
      pushError(res, e.status, e.err, e.message, e.status === 401 ? { 'www-authenticate': 'Bearer' } : {});
    };
    if (pushToken !== undefined) {
      const given = bearer(req);
      if (given === undefined || !sameSecret(given, pushToken))
        return refuse(new SsfError('ERR_SSF_UNAUTHENTICATED', 'a valid bearer token is required'));
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/secevent+jwt')
      return refuse(new SsfError('ERR_SSF_MALFORMED', 'content-type must be application/secevent+jwt'));
    const body = (await readBody(req, SET_MAX_BYTES + 1)).toString('utf8');
    try {
      const got = await receiver.receive(body);
      log.info({ jti: got.jti, seqs: got.seqs, ignored: got.ignored }, 'SSF SET received (push)');
      res.writeHead(202, { 'content-length': 0 });
      res.end();
    } catch (e) {
      if (e instanceof SsfError && e.status < 500) return refuse(e);
      log.error({ err: e }, 'SSF SET not handled');
      // Ours (keys unavailable, store down): 503 so the transmitter sends it again.
      pushError(res, 503, 'invalid_request', 'the SET could not be handled now; try again', { 'retry-after': '5' });
    }
  });
  ctx.announce(
    `SSF receiver ${r.name}`,
    `${r.issuer} (${r.delivery}${r.delivery === 'push' ? ` at ${ssfPushPath(r.name)}` : ''})`,
  );

  // Discovery, stream and polling in the background, retried with backoff.
  let stopped = false;
  let stopPoll: (() => Promise<void>) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const attempt = async (): Promise<void> => {
    const meta: TransmitterMetadata = await discoverTransmitter(r.issuer);
    if (!keys) {
      if (!meta.jwks_uri) throw new SsfError('ERR_SSF_DISCOVERY', `${r.issuer} publishes no jwks_uri`);
      keys = createRemoteJWKSet(new URL(meta.jwks_uri));
    }
    if (!r.create_stream) return;
    const stream = await ensureStream(meta, {
      token,
      method: r.delivery,
      pushUrl: r.push_url,
      pushAuthorization: pushToken === undefined ? undefined : `Bearer ${pushToken}`,
    });
    const status = meta.status_endpoint ? await streamStatus(meta, token, stream.stream_id) : 'unknown';
    log.info({ stream_id: stream.stream_id, status, events: stream.events_delivered }, 'SSF stream ready');
    if (r.delivery === 'poll' && !stopped) {
      const pollUrl = stream.delivery.endpoint_url;
      if (!pollUrl || !URL.canParse(pollUrl))
        throw new SsfError('ERR_SSF_TRANSMITTER', `${r.issuer}: the stream names no poll endpoint_url`);
      stopPoll = pollSets({ url: pollUrl, token, receiver, intervalMs: r.poll_interval * 1000, log });
    }
  };
  const run = (delayMs: number) => {
    timer = setTimeout(() => {
      attempt().catch((e: unknown) => {
        if (stopped) return;
        const next = Math.min(delayMs * 2 || 1000, 60_000);
        log.warn({ err: (e as Error).message, retryInMs: next }, 'SSF transmitter not reachable; trying again');
        run(next);
      });
    }, delayMs);
    timer.unref();
  };
  run(0);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await stopPoll?.();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Transmitter

function readSigningKey(file: string): { key: KeyObject; alg: SetSigningAlg } {
  const pem = readSecretFile(file, 'signals.ssf.transmitter.key_file');
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new SsfError('ERR_SSF_SIGNING_KEY', `signals.ssf.transmitter.key_file ${file}: ${(e as Error).message}`);
  }
  return { key, alg: key.asymmetricKeyType === 'ec' ? 'ES256' : 'RS256' };
}

async function startTransmitter(
  ctx: ServerContext,
  signals: SignalsHandle,
  cfg: { issuer: string; key_file: string; kid?: string; receivers: SsfStreamConfig[] },
): Promise<{ tx: SsfTransmitter; stop(): void }> {
  const log = ctx.logger.child({ ssf: 'transmitter' });
  const { key, alg } = readSigningKey(cfg.key_file);
  const kid = cfg.kid ?? (await calculateJwkThumbprint(await exportJWK(key)));
  const signer = createSetSigner({ issuer: cfg.issuer, key, kid, alg });
  const meta = ssfConfiguration({ issuer: cfg.issuer });
  const base = cfg.issuer.replace(/\/+$/, '');
  const pollUrl = `${base}/ssf/poll`;
  const tokens = cfg.receivers.map((r) => ({
    name: r.name,
    token: readSecretFile(r.token_file, `signals.ssf.transmitter.receivers[${r.name}].token_file`),
  }));
  const tx = new SsfTransmitter({
    signer,
    pollUrl,
    log,
    streams: cfg.receivers.map((r) => ({
      name: r.name,
      audience: r.audience,
      delivery: r.delivery,
      endpointUrl: r.endpoint_url,
      authorization: r.authorization_file
        ? readSecretFile(r.authorization_file, `signals.ssf.transmitter.receivers[${r.name}].authorization_file`)
        : undefined,
    })),
  });
  const jwks = { keys: [await signer.publicJwk()] };
  const path = (u: string) => new URL(u).pathname;
  const router = ctx.router;

  /** The receiver a request's bearer token belongs to, or a 401 refusal. */
  const who = (req: IncomingMessage): string => {
    const given = bearer(req);
    // Every token is compared (no early exit), so timing says nothing about which one was close.
    let found: string | undefined;
    for (const t of tokens) if (given !== undefined && sameSecret(given, t.token)) found = t.name;
    if (found === undefined) throw new SsfError('ERR_SSF_UNAUTHENTICATED', 'a receiver bearer token is required');
    return found;
  };
  type Body = Record<string, unknown>;
  const authed =
    (h: (name: string, url: URL, body: unknown, res: ServerResponse) => void | Promise<void>, withBody: boolean) =>
    async (req: IncomingMessage, res: ServerResponse, url: URL) => {
      let name: string;
      try {
        name = who(req);
      } catch (e) {
        if (!(e instanceof SsfError)) throw e;
        router.refused(req, url, e, { context: 'SSF stream management refused' }, (err) => log.error({ err }));
        return sendJson(
          res,
          401,
          { error: 'authentication_failed', message: e.message },
          { 'www-authenticate': 'Bearer' },
        );
      }
      const body = withBody ? await readJson(req, 64 * 1024) : undefined;
      await h(name, url, body, res);
    };
  const parse = <T>(
    schema: {
      safeParse(
        v: unknown,
      ): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } };
    },
    v: unknown,
  ): T => {
    const r = schema.safeParse(v ?? {});
    if (r.success) return r.data;
    const i = r.error.issues[0];
    throw new SsfStreamError(400, 'invalid_request', `${i?.path.join('.') || 'body'}: ${i?.message}`);
  };
  const sid = (url: URL, body?: unknown): string | undefined =>
    url.searchParams.get('stream_id') ??
    (typeof (body as Body | undefined)?.stream_id === 'string' ? ((body as Body).stream_id as string) : undefined);

  router.on('GET', new URL(ssfWellKnownUrl(cfg.issuer)).pathname, (_req, res) => sendJson(res, 200, meta));
  router.on('GET', path(meta.jwks_uri), (_req, res) => sendJson(res, 200, jwks));
  const conf = path(meta.configuration_endpoint);
  router.on(
    'POST',
    conf,
    authed((n, _u, b, res) => sendJson(res, 201, tx.create(n, parse(streamRequestSchema, b))), true),
  );
  router.on(
    'GET',
    conf,
    authed((n, u, _b, res) => sendJson(res, 200, tx.read(n, sid(u))), false),
  );
  for (const m of ['PATCH', 'PUT'])
    router.on(
      m,
      conf,
      authed((n, _u, b, res) => sendJson(res, 200, tx.update(n, parse(streamRequestSchema, b))), true),
    );
  router.on(
    'DELETE',
    conf,
    authed((n, u, _b, res) => {
      tx.delete(n, sid(u));
      res.writeHead(204).end();
    }, false),
  );
  const status = path(meta.status_endpoint);
  router.on(
    'GET',
    status,
    authed((n, u, _b, res) => sendJson(res, 200, tx.status(n, sid(u))), false),
  );
  router.on(
    'POST',
    status,
    authed((n, u, b, res) => {
      const s = (b as Body | undefined)?.status;
      if (s !== 'enabled' && s !== 'paused' && s !== 'disabled')
        throw new SsfStreamError(400, 'invalid_request', 'status must be enabled, paused or disabled');
      sendJson(res, 200, tx.setStatus(n, sid(u, b), s as StreamStatus));
    }, true),
  );
  router.on(
    'POST',
    path(meta.verification_endpoint),
    authed(async (n, u, b, res) => {
      const state = (b as Body | undefined)?.state;
      await tx.verify(n, sid(u, b), typeof state === 'string' ? state.slice(0, 1024) : undefined);
      res.writeHead(204).end();
    }, true),
  );
  // Every subject is in every stream: per-subject streams are not implemented (501, documented).
  for (const p of [meta.add_subject_endpoint, meta.remove_subject_endpoint])
    router.on(
      'POST',
      path(p),
      authed(
        (_n, _u, _b, res) =>
          sendJson(res, 501, { error: 'not_implemented', message: 'every subject is in every stream' }),
        false,
      ),
    );
  router.on(
    'POST',
    path(pollUrl),
    authed((n, _u, b, res) => sendJson(res, 200, tx.poll(n, parse(pollRequestSchema, b))), true),
  );

  // Our signals, in seq order, read from the store after each one this server keeps (the store's
  // order, not the order the listeners happen to run in).
  let cursor = await ctx.store.signals.head();
  let chain: Promise<void> = Promise.resolve();
  const drain = async () => {
    for (;;) {
      const batch = await ctx.store.signals.after(cursor, 500);
      if (batch.length === 0) return;
      for (const s of batch) {
        cursor = s.seq;
        // Received over SSF: not sent on (two transmitters receiving from each other would echo).
        if (s.signal.source !== 'ssf') await tx.publish(s.signal, s.seq);
      }
    }
  };
  const unsubscribe = signals.onKept(() => {
    chain = chain.then(drain).catch((err: unknown) => log.error({ err }, 'publishing signals over SSF failed'));
  });
  ctx.announce('SSF transmitter', `${cfg.issuer} (${cfg.receivers.length} receivers)`);
  return {
    tx,
    stop() {
      unsubscribe();
      tx.close();
    },
  };
}

/**
 * The SSF plugin. `signals` is the server's signals handle: received SETs are raised through it,
 * and what it keeps is transmitted.
 *
 * @example
 * ```ts
 * const signals = signalsPlugin({ ca: ca.handle });
 * const plugins = [ca, signals, ..., ssfPlugin({ signals: signals.handle })];
 * ```
 */
export function ssfPlugin(opts: {
  signals: SignalsHandle;
}): ServerPlugin & { transmitter(): SsfTransmitter | undefined } {
  const receivers: RunningReceiver[] = [];
  let transmitter: { tx: SsfTransmitter; stop(): void } | undefined;
  return {
    name: 'ssf',
    dependsOn: ['signals'],
    transmitter: () => transmitter?.tx,
    async register(ctx) {
      const cfg = ctx.config.signals.ssf;
      for (const r of cfg.receivers) receivers.push(startReceiver(ctx, r, opts.signals));
      if (cfg.transmitter) transmitter = await startTransmitter(ctx, opts.signals, cfg.transmitter);
    },
    async close() {
      transmitter?.stop();
      for (const r of receivers) await r.stop();
    },
  };
}
