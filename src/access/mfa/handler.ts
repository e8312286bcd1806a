/**
 * The proxy's MFA endpoints under `/.nevertrust/mfa`: the factors page and enrollment (TOTP,
 * WebAuthn, recovery codes, removal) under the enrollment rules, the step-up challenge that ends in
 * `authenticator.elevate()` and a GET back to the page asked for, the WebAuthn ceremonies' JSON
 * endpoints, and the pages' assets. Every POST needs the session's CSRF token and, when the browser
 * sends one, our own `Origin`; every answer is `no-store`.
 *
 * Enrollment rules (docs/people.md): a person with a confirmed factor changes factors only with a
 * second factor passed in the last 5 minutes; a person with none enrolls only with an admin's
 * one-time link (`/.nevertrust/mfa/enroll?token=…`, consumed by the first enrollment) or when the
 * config allows `first_login_enrollment`.
 */
import { BodyError, readFormBody, readJsonBody } from '../../util/http-body.js';
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { AuditEventInput } from '../../audit/event.js';
import { type ErrorCode, NevertrustError } from '../../errors.js';
import { acceptsMethod } from '../../policy/step-up.js';
import { sha256Hex } from '../../store/access-sessions.js';
import { escapeHtml, sendJson } from '../auth/pages.js';
import { safeReturnTo } from '../auth/return-to.js';
import type { Authenticator, PersonIdentity, RequestContext } from '../identity.js';
import { ASSETS, ASSETS_PATH } from './assets.js';
import {
  challengePage,
  MFA_BASE,
  MFA_CSP,
  managePage,
  recoveryCodesPage,
  sendMfaPage,
  totpSetupPage,
  verifiedAgainPage,
} from './pages.js';
import type { FactorInfo, MfaService, MfaSubject, RelyingParty, VerifyResult } from './service.js';

/** MFA passed this recently lets a person change their factors. */
export const FRESH_MFA_S = 300;
const CSRF_PURPOSE = 'mfa';
const FORM_LIMIT = 16 * 1024;
const JSON_LIMIT = 64 * 1024;
/** A slow body must not hold a handler (and its session's challenge) open. */
const BODY_TIMEOUT_MS = 10_000;

export interface MfaHandlerOptions {
  service: MfaService;
  authenticator: Authenticator;
  /** A person with no factor may enroll without a link. */
  firstLoginEnrollment: boolean;
  /** The WebAuthn RP ID; default each request's host. */
  rpId?: string;
  rpName: string;
  /** The routes' hosts: the WebAuthn origins under the RP ID. */
  hosts: readonly string[];
  /** The port browsers use (443 is left out of origins); read per request (the bound port in tests). */
  publicPort: () => number;
  record: (e: AuditEventInput) => void;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Epoch milliseconds (tests). */
  now?: () => number;
}

export interface MfaHandler {
  /** Answers a request under `/.nevertrust/mfa`; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<boolean>;
}

/**
 * A request the handler refuses: status, a stable code (`body_too_large` is `ERR_BODY_TOO_LARGE`;
 * the answer's `error` is its wire form) and a reason shown to the person.
 */
class Refused extends NevertrustError {
  override readonly name = 'MfaRequestRefused';
  readonly code: ErrorCode;
  constructor(status: number, error: string, reason: string) {
    super(reason, { status });
    this.code = `ERR_${error.toUpperCase()}`;
  }
}

/** A body that cannot be used, as this handler's refusal (same status and wire reason). */
const bodyRefused = (e: unknown): never => {
  if (e instanceof BodyError) throw new Refused(e.status, e.wire, e.message);
  throw e;
};

/** Constant-time equality of two strings of any length (compared as digests, as the sign-out form does). */
const sameText = (a: string, b: string) => timingSafeEqual(Buffer.from(sha256Hex(a)), Buffer.from(sha256Hex(b)));

const name = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}]*$/u, 'no control characters');
const token = z.string().regex(/^[A-Za-z0-9_-]{16,128}$/);
const registerOptionsBody = z.strictObject({ token: token.optional() });
const registerFinishBody = z.strictObject({
  challengeId: z.string().min(1).max(128),
  response: z.unknown(),
  name: name,
  token: token.optional(),
});
const authOptionsBody = z.strictObject({});
const authFinishBody = z.strictObject({
  challengeId: z.string().min(1).max(128),
  response: z.unknown(),
  rd: z.string().max(2048).optional(),
  again: z.boolean().optional(),
});

/** Methods the challenge's `m` asks for (advisory: the gate decides again). */
const parseMethods = (m: string | null): string[] | undefined => {
  if (!m) return undefined;
  const list = m
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0 && x.length <= 64)
    .slice(0, 16);
  return list.length ? list : undefined;
};

/**
 * The WebAuthn relying party for a request: without an RP ID, the request's host and origin; with
 * one, that ID and the origins of every route host equal to it or under it (a credential made on one
 * of them works on all).
 *
 * @example relyingPartyFor({ rpId: 'example.com', rpName: 'x', hosts: ['wiki.example.com'] }, 443, ctx)
 * // { id: 'example.com', origins: ['https://wiki.example.com'], name: 'x' }
 */
export function relyingPartyFor(
  o: Pick<MfaHandlerOptions, 'rpId' | 'rpName' | 'hosts'>,
  port: number,
  ctx: RequestContext,
): RelyingParty {
  if (o.rpId === undefined) return { id: ctx.host, origins: [ctx.origin], name: o.rpName };
  const rp = o.rpId;
  const origins = [...new Set(o.hosts)]
    .filter((h) => h === rp || h.endsWith(`.${rp}`))
    .map((h) => (port === 443 ? `https://${h}` : `https://${h}:${port}`));
  return { id: rp, origins, name: o.rpName };
}

export function createMfaHandler(o: MfaHandlerOptions): MfaHandler {
  const { service, authenticator } = o;
  const now = o.now ?? Date.now;

  const rpFor = (ctx: RequestContext): RelyingParty => relyingPartyFor(o, o.publicPort(), ctx);

  const subjectOf = (p: PersonIdentity): MfaSubject => ({ issuer: p.issuer, sub: p.sub, user: p.user ?? p.sub });
  const fresh = (p: PersonIdentity) => p.mfaAt !== undefined && now() / 1000 - p.mfaAt <= FRESH_MFA_S;

  const audit = (e: AuditEventInput) => {
    try {
      o.record({ enforcer: 'access-proxy', ...e });
    } catch (err) {
      o.log('mfa: audit record failed', { kind: e.kind, error: (err as Error).message });
    }
  };

  interface Caller {
    person: PersonIdentity;
    sessionId: string;
    subject: MfaSubject;
    csrf: string;
  }

  /** The signed-in session, or an answer sent (login for a page load, 401 otherwise). */
  const caller = async (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
  ): Promise<Caller | undefined> => {
    const who = await authenticator.identify(req, ctx);
    const csrf = who.kind === 'session' ? authenticator.csrfToken?.(req, CSRF_PURPOSE) : undefined;
    if (who.kind === 'session' && csrf !== undefined)
      return { person: who.person, sessionId: who.sessionId, subject: subjectOf(who.person), csrf };
    const page = req.method === 'GET' && !String(req.headers.accept ?? '').includes('application/json');
    if (page && (who.kind === 'none' || who.kind === 'invalid')) {
      await authenticator.startLogin(req, res, ctx, req.url ?? MFA_BASE);
      return undefined;
    }
    // Bearer callers have no session to step up, and scripts get no login redirect.
    throw new Refused(401, 'session_required', 'sign in with a browser session first');
  };

  /** Same-origin and CSRF for every POST: the token from the form or the header, our Origin if sent. */
  const checkPost = (req: IncomingMessage, ctx: RequestContext, c: Caller, given: string | undefined) => {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== ctx.origin)
      throw new Refused(403, 'cross_origin', 'cross-origin request refused');
    if (req.headers['sec-fetch-site'] !== undefined && req.headers['sec-fetch-site'] !== 'same-origin')
      throw new Refused(403, 'cross_origin', 'cross-site request refused');
    if (given === undefined || !sameText(given, c.csrf))
      throw new Refused(403, 'csrf', 'the form expired; open the page again');
  };

  const readForm = async (req: IncomingMessage, ctx: RequestContext, c: Caller): Promise<URLSearchParams> => {
    const form = await readFormBody(req, { limit: FORM_LIMIT, timeoutMs: BODY_TIMEOUT_MS }).catch(bodyRefused);
    checkPost(req, ctx, c, form.get('csrf') ?? undefined);
    return form;
  };

  const readJson = async <T>(
    req: IncomingMessage,
    ctx: RequestContext,
    c: Caller,
    schema: z.ZodType<T>,
  ): Promise<T> => {
    const header = req.headers['x-nevertrust-csrf'];
    // The header is the CSRF proof a cross-site form cannot send; the Origin must be ours and present.
    if (req.headers.origin === undefined) throw new Refused(403, 'cross_origin', 'an Origin header is required');
    checkPost(req, ctx, c, typeof header === 'string' ? header : undefined);
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json'))
      throw new Refused(415, 'bad_content_type', 'send application/json');
    const v = await readJsonBody(req, { limit: JSON_LIMIT, timeoutMs: BODY_TIMEOUT_MS }).catch(bodyRefused);
    const r = schema.safeParse(v);
    if (!r.success)
      throw new Refused(400, 'bad_request', `bad request: ${r.error.issues[0]?.path.join('.') || 'body'}`);
    return r.data;
  };

  /** What the person may do with their factors now. */
  interface Standing {
    factors: FactorInfo[];
    confirmed: FactorInfo[];
    may: boolean;
    blocked?: 'verify' | 'no_link';
    link?: string;
  }
  const standing = async (c: Caller, tokenGiven: string | undefined): Promise<Standing> => {
    const factors = await service.factors(c.subject);
    const confirmed = factors.filter((f) => f.confirmed);
    if (confirmed.length > 0)
      return fresh(c.person)
        ? { factors, confirmed, may: true }
        : { factors, confirmed, may: false, blocked: 'verify' };
    if (o.firstLoginEnrollment) return { factors, confirmed, may: true };
    if (
      tokenGiven !== undefined &&
      token.safeParse(tokenGiven).success &&
      (await service.checkEnrollLink(tokenGiven, c.subject.user))
    )
      return { factors, confirmed, may: true, link: tokenGiven };
    return { factors, confirmed, may: false, blocked: 'no_link' };
  };

  const mustChange = async (c: Caller, tokenGiven: string | undefined) => {
    const s = await standing(c, tokenGiven);
    if (!s.may)
      throw new Refused(
        403,
        s.blocked === 'verify' ? 'mfa_not_fresh' : 'enrollment_not_allowed',
        s.blocked === 'verify'
          ? 'verify with a second factor first (within the last 5 minutes)'
          : 'enrollment needs a link from an administrator',
      );
    return s;
  };

  /**
   * After a successful enrollment: the link is spent, and the session has just passed a factor. A link
   * spent meanwhile (two enrollments racing with one link) undoes this one: a link enrolls once.
   */
  const enrolled = async (c: Caller, r: Extract<VerifyResult, { ok: true }>, link: string | undefined) => {
    if (link !== undefined && !(await service.consumeEnrollLink(link, c.subject.user))) {
      if (r.factorId !== undefined) await service.removeFactor(c.subject, r.factorId);
      throw new Refused(409, 'link_spent', 'this enrollment link has just been used; ask for a new one');
    }
    await authenticator.elevate(c.sessionId, r.methods);
  };

  const showManage = async (
    res: ServerResponse,
    c: Caller,
    s: Standing,
    status = 200,
    msg: { error?: string; notice?: string } = {},
  ) => {
    sendMfaPage(
      res,
      status,
      'Two-step verification',
      managePage({
        user: c.subject.user,
        csrf: c.csrf,
        factors: s.factors,
        mayChange: s.may,
        ...(s.blocked ? { blocked: s.blocked } : {}),
        ...(s.link ? { token: s.link } : {}),
        ...msg,
      }),
      s.may,
    );
  };

  // ---------- the challenge ----------

  interface ChallengeParams {
    rd: string;
    m?: string;
    methods?: string[];
    again: boolean;
  }
  const challengeParams = (get: (k: string) => string | null): ChallengeParams => {
    const m = get('m') ?? undefined;
    const methods = parseMethods(m ?? null);
    return {
      rd: safeReturnTo(get('rd') ?? '/'),
      ...(m !== undefined && methods ? { m: methods.join(','), methods } : {}),
      again: get('again') === '1',
    };
  };

  const showChallenge = async (
    res: ServerResponse,
    c: Caller,
    ctx: RequestContext,
    p: ChallengeParams,
    status = 200,
    error?: string,
  ) => {
    const confirmed = (await service.factors(c.subject)).filter((f) => f.confirmed);
    const need = p.methods ? { methods: p.methods } : {};
    const webauthn =
      confirmed.some((f) => f.kind === 'webauthn') && (acceptsMethod(need, 'hwk') || acceptsMethod(need, 'swk'));
    const totp = confirmed.some((f) => f.kind === 'totp') && acceptsMethod(need, 'otp');
    // A recovery code passes as `mfa`: not offered where the rule wants a key or a code app.
    const recovery = confirmed.length > 0 && acceptsMethod(need, 'mfa');
    if (status === 200)
      audit({
        kind: 'mfa.challenge',
        outcome: 'step_up',
        source: { user: c.subject.user, ip: ctx.ip },
        target: { host: ctx.host },
        details: {
          session: c.sessionId,
          factors: [...(webauthn ? ['webauthn'] : []), ...(totp ? ['totp'] : [])],
          rd: p.rd.split('?')[0],
        },
      });
    sendMfaPage(
      res,
      status,
      'Verify it is you',
      challengePage({
        csrf: c.csrf,
        rd: p.rd,
        ...(p.m !== undefined ? { m: p.m } : {}),
        again: p.again,
        webauthn,
        totp,
        recovery,
        enroll: confirmed.length === 0 && o.firstLoginEnrollment,
        hasFactors: confirmed.length > 0,
        ...(error ? { error } : {}),
      }),
      webauthn,
    );
  };

  /** A passed challenge: the session is elevated, and the browser goes back with GET. */
  const passed = async (c: Caller, r: Extract<VerifyResult, { ok: true }>, p: ChallengeParams): Promise<string> => {
    if (!(await authenticator.elevate(c.sessionId, r.methods)))
      throw new Refused(401, 'session_ended', 'the session has ended; sign in again');
    return p.again ? `${MFA_BASE}/challenge/done?rd=${encodeURIComponent(p.rd)}` : p.rd;
  };

  const failedText = (r: Extract<VerifyResult, { ok: false }>) =>
    r.locked ? 'Too many failed attempts. Try again later.' : 'That did not work. Try again.';

  // ---------- routing ----------

  const assets = (path: string, res: ServerResponse): boolean => {
    const a = ASSETS[path.slice(ASSETS_PATH.length)];
    if (!a) return false;
    res.writeHead(200, {
      'Content-Type': a.type,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': MFA_CSP,
    });
    res.end(a.body());
    return true;
  };

  const route = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, path: string, url: URL) => {
    const method = req.method ?? 'GET';
    const only = (m: string) => {
      if (method !== m && !(m === 'GET' && method === 'HEAD')) throw new Refused(405, 'method_not_allowed', `use ${m}`);
    };
    if (path.startsWith(ASSETS_PATH)) {
      only('GET');
      if (!assets(path, res)) throw new Refused(404, 'not_found', 'no such asset');
      return;
    }
    const json = path.startsWith(`${MFA_BASE}/webauthn/`);
    const c = await caller(req, res, ctx);
    if (!c) return;
    if (path === MFA_BASE || path === `${MFA_BASE}/enroll`) {
      only('GET');
      // Read once: the link check and the page both use it.
      const s = await standing(c, url.searchParams.get('token') ?? undefined);
      if (path === `${MFA_BASE}/enroll` && s.confirmed.length === 0 && !s.may)
        throw new Refused(
          403,
          'enroll_link_invalid',
          'this enrollment link is not valid (expired, used, or for someone else)',
        );
      const notice = url.searchParams.get('done');
      await showManage(
        res,
        c,
        s,
        200,
        notice === 'added' ? { notice: 'Added.' } : notice === 'removed' ? { notice: 'Removed.' } : {},
      );
      return;
    }
    if (path === `${MFA_BASE}/totp`) {
      only('POST');
      const f = await readForm(req, ctx, c);
      const s = await mustChange(c, f.get('token') ?? undefined);
      const n = name.safeParse(f.get('name') ?? 'Authenticator app');
      if (!n.success) throw new Refused(400, 'bad_name', 'a name of 1 to 64 characters');
      const t = await service.beginTotp(c.subject, n.data);
      sendMfaPage(
        res,
        200,
        'Set up your authenticator app',
        totpSetupPage({
          csrf: c.csrf,
          factorId: t.factorId,
          shown: { secret: t.secret, qrSvg: t.qrSvg },
          ...(s.link ? { token: s.link } : {}),
        }),
      );
      return;
    }
    if (path === `${MFA_BASE}/totp/confirm`) {
      only('POST');
      const f = await readForm(req, ctx, c);
      const s = await mustChange(c, f.get('token') ?? undefined);
      const factorId = f.get('factor') ?? '';
      const pending = s.factors.find((x) => x.id === factorId && x.kind === 'totp' && !x.confirmed);
      if (!pending) throw new Refused(400, 'no_pending_factor', 'start the setup again');
      const r = await service.confirmTotp(c.subject, factorId, f.get('code') ?? '', ctx.ip);
      if (!r.ok) {
        sendMfaPage(
          res,
          r.locked ? 429 : 400,
          'Set up your authenticator app',
          totpSetupPage({ csrf: c.csrf, factorId, error: failedText(r), ...(s.link ? { token: s.link } : {}) }),
        );
        return;
      }
      await enrolled(c, r, s.link);
      redirect303(res, `${MFA_BASE}?done=added`);
      return;
    }
    if (path === `${MFA_BASE}/remove`) {
      only('POST');
      const f = await readForm(req, ctx, c);
      const s = await mustChange(c, undefined);
      const factorId = f.get('factor') ?? '';
      if (!s.factors.some((x) => x.id === factorId)) throw new Refused(404, 'no_such_factor', 'no such factor');
      await service.removeFactor(c.subject, factorId);
      redirect303(res, `${MFA_BASE}?done=removed`);
      return;
    }
    if (path === `${MFA_BASE}/recovery-codes`) {
      only('POST');
      await readForm(req, ctx, c);
      const s = await mustChange(c, undefined);
      if (s.confirmed.length === 0) throw new Refused(400, 'no_factor', 'add a factor first');
      sendMfaPage(res, 200, 'Your recovery codes', recoveryCodesPage(await service.newRecoveryCodes(c.subject)));
      return;
    }
    if (path === `${MFA_BASE}/challenge`) {
      if (method === 'POST') {
        const f = await readForm(req, ctx, c);
        const p = challengeParams((k) => f.get(k));
        const kind = f.get('kind');
        const code = f.get('code') ?? '';
        let r: VerifyResult;
        if (kind === 'totp') r = await service.verifyTotp(c.subject, code, ctx.ip);
        else if (kind === 'recovery') r = await service.verifyRecoveryCode(c.subject, code, ctx.ip);
        else throw new Refused(400, 'bad_kind', 'kind must be totp or recovery');
        if (!r.ok) {
          await showChallenge(res, c, ctx, p, r.locked ? 429 : 400, failedText(r));
          return;
        }
        redirect303(res, await passed(c, r, p));
        return;
      }
      only('GET');
      await showChallenge(
        res,
        c,
        ctx,
        challengeParams((k) => url.searchParams.get(k)),
      );
      return;
    }
    if (path === `${MFA_BASE}/challenge/done`) {
      only('GET');
      sendMfaPage(res, 200, 'Verified', verifiedAgainPage(safeReturnTo(url.searchParams.get('rd') ?? '/')));
      return;
    }
    if (json) {
      only('POST');
      const rp = rpFor(ctx);
      if (!rp.origins.includes(ctx.origin))
        throw new Refused(400, 'rp_mismatch', `this host is not under the RP ID ${rp.id}`);
      if (path === `${MFA_BASE}/webauthn/register/options`) {
        const b = await readJson(req, ctx, c, registerOptionsBody);
        await mustChange(c, b.token);
        sendJson(res, 200, await service.registrationOptions(c.subject, c.sessionId, rp));
        return;
      }
      if (path === `${MFA_BASE}/webauthn/register/finish`) {
        const b = await readJson(req, ctx, c, registerFinishBody);
        const s = await mustChange(c, b.token);
        const r = await service.finishRegistration(
          c.subject,
          c.sessionId,
          b.challengeId,
          b.response,
          rp,
          b.name,
          ctx.ip,
        );
        if (!r.ok) throw new Refused(r.locked ? 429 : 400, 'not_registered', failedText(r));
        await enrolled(c, r, s.link);
        sendJson(res, 200, { ok: true, next: `${MFA_BASE}?done=added` });
        return;
      }
      if (path === `${MFA_BASE}/webauthn/authenticate/options`) {
        await readJson(req, ctx, c, authOptionsBody);
        const opts = await service.authenticationOptions(c.subject, c.sessionId, rp);
        if (!opts) throw new Refused(400, 'no_credential', 'no security key or passkey is registered');
        sendJson(res, 200, opts);
        return;
      }
      if (path === `${MFA_BASE}/webauthn/authenticate/finish`) {
        const b = await readJson(req, ctx, c, authFinishBody);
        const r = await service.verifyWebauthn(c.subject, c.sessionId, b.challengeId, b.response, rp, ctx.ip);
        if (!r.ok) throw new Refused(r.locked ? 429 : 400, 'not_verified', failedText(r));
        const next = await passed(c, r, { rd: safeReturnTo(b.rd ?? '/'), again: b.again === true });
        sendJson(res, 200, { ok: true, next });
        return;
      }
    }
    throw new Refused(404, 'not_found', 'no such endpoint');
  };

  return {
    async handle(req, res, ctx) {
      const url = new URL(req.url ?? '/', ctx.origin);
      const path = url.pathname;
      if (path !== MFA_BASE && !path.startsWith(`${MFA_BASE}/`)) return false;
      const json =
        path.startsWith(`${MFA_BASE}/webauthn/`) || String(req.headers.accept ?? '').includes('application/json');
      try {
        await route(req, res, ctx, path, url);
      } catch (e) {
        if (res.headersSent) {
          res.destroy();
          return true;
        }
        if (e instanceof Refused) {
          if (e.status === 405) res.setHeader('Allow', 'GET, POST');
          if (e.status === 413) res.setHeader('Connection', 'close');
          if (json) sendJson(res, e.status, { error: e.reason, reason: e.message });
          else
            sendMfaPage(
              res,
              e.status,
              'Not possible',
              `<p class="error" role="alert">${escapeHtml(e.message)}</p><p><a href="${MFA_BASE}">Two-step verification</a></p>`,
            );
        } else {
          // Ours: logged, not shown; nothing was elevated or changed after the failure.
          o.log('mfa endpoint failed', { path, error: (e as Error).message });
          const status = (e as { status?: number }).status;
          const shown =
            typeof status === 'number' && status < 500 ? (e as Error).message : 'something went wrong; try again';
          if (json) sendJson(res, status && status < 500 ? status : 500, { error: 'failed', reason: shown });
          else
            sendMfaPage(
              res,
              status && status < 500 ? status : 500,
              'Not possible',
              `<p class="error" role="alert">${escapeHtml(shown)}</p>`,
            );
        }
      }
      return true;
    },
  };
}

function redirect303(res: ServerResponse, location: string): void {
  res.writeHead(303, { Location: location, 'Cache-Control': 'no-store', 'Content-Type': 'text/plain; charset=utf-8' });
  res.end();
}
