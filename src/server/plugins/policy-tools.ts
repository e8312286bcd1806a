/**
 * Policy tools over the admin API (contracts: src/api/policy-tools.ts), added by the policy plugin:
 *   GET  /v1/admin/policy/lint                 lint findings over the snapshot in force
 *   POST /v1/admin/policy/evaluate             a what-if: the decision API's request → decision + explanation
 *   GET  /v1/admin/policy/dry-run?window=24h   what dry-run policies would have decided (from the audit log)
 * An evaluation is recorded as an admin action, never as an access decision: it decided no traffic.
 */
import type { IncomingMessage } from 'node:http';
import {
  DRY_RUN_EXAMINED_MAX,
  dryRunQuerySchema,
  type EvaluateAnswer,
  type LintAnswer,
  type LintFindingWire,
} from '../../api/policy-tools.js';
import { parseQuery } from '../../api/parse.js';
import { clipText } from '../../audit/clip.js';
import { summarizeDryRuns } from '../../audit/dry-run.js';
import { SOURCE_LIMITS, TARGET_LIMITS } from '../../audit/event.js';
import { dryRunNotes } from '../../pep/decision.js';
import { BodyError, readJsonBody } from '../../pep/http.js';
import { explain } from '../../policy/explain.js';
import { lintPolicies } from '../../policy/lint.js';
import { type AccessRequest, AccessRequestError, parseAccessRequest } from '../../policy/request.js';
import type { PolicySnapshot } from '../../policy/snapshot.js';
import { stepUpRequirement } from '../../policy/step-up.js';
import { type Route, refusal, sendJson } from '../router.js';
import { type AdminHandler, adminRoute, type ServerContext } from '../server.js';

/** Largest evaluate body: the decision API's default (64 KiB), within 2 s. */
const EVALUATE_BODY = { limit: 64 * 1024, timeoutMs: 2000 };

/** What the policy tools read: the snapshot in force. */
export interface PolicyToolsDeps {
  snapshot(): PolicySnapshot | undefined;
}

/** `GET /v1/admin/policy/lint`: findings against the server's trust domain. */
function lint(ctx: ServerContext, deps: PolicyToolsDeps): AdminHandler {
  return (_req, res) => {
    const snap = deps.snapshot();
    const findings: LintFindingWire[] = snap
      ? lintPolicies(snap.policies, { trustDomain: ctx.config.trust_domain })
      : [];
    const answer: LintAnswer = { version: snap?.version ?? null, findings };
    sendJson(res, 200, answer);
  };
}

/** The request body as the decision API parses it; a bad body is a recorded 400/408/413. */
async function readRequest(req: IncomingMessage, by: string): Promise<AccessRequest> {
  const note = { by, context: 'policy evaluate refused' };
  try {
    return parseAccessRequest((await readJsonBody(req, EVALUATE_BODY)) ?? {});
  } catch (e) {
    if (e instanceof BodyError || e instanceof AccessRequestError) throw refusal(e, note);
    throw e;
  }
}

/** The decision `snap` makes on `request`, with its explanation, in wire form. */
function evaluate(snap: PolicySnapshot, request: AccessRequest): EvaluateAnswer {
  const e = explain(snap, request);
  const d = e.decision;
  const step = d.decision === 'step_up' ? stepUpRequirement(snap, d, request) : undefined;
  // `targetInfo` is the engine's own lookup cache, not an attribute the rules saw.
  const { targetInfo: _, ...seen } = e.request;
  return {
    decision: {
      allow: d.decision === 'allow',
      outcome: d.decision,
      policy: d.policy,
      rule: d.rule,
      reason: d.reason,
      version: d.version,
      ...(step && {
        step_up: {
          ...(step.methods && { methods: step.methods }),
          ...(step.maxAge !== undefined && { max_age: step.maxAge }),
        },
      }),
      audit: d.audit ?? [],
      dry_run: dryRunNotes(d.dryRun ?? []),
    },
    explanation: {
      request: seen,
      candidates: e.candidates.map((c) => ({
        policy: c.policy,
        action: c.action,
        origin: c.origin,
        dry_run: c.dryRun,
        file: c.file,
        line: c.line,
        rules: c.rules,
      })),
      not_selected: e.notSelected,
    },
  };
}

/** What the decision API answers when no snapshot is in force: every request is denied. */
function noPolicy(): EvaluateAnswer {
  return {
    decision: {
      allow: false,
      outcome: 'deny',
      policy: null,
      rule: null,
      reason: 'no policy snapshot in force: every request is denied',
      version: null,
      audit: [],
      dry_run: [],
    },
    explanation: { request: {}, candidates: [], not_selected: 0 },
  };
}

/** `POST /v1/admin/policy/evaluate`: decide and explain without enforcing; recorded as an admin action. */
function evaluateRoute(ctx: ServerContext, deps: PolicyToolsDeps): AdminHandler {
  return async (req, res, _url, who) => {
    const request = await readRequest(req, who.id);
    const snap = deps.snapshot();
    const answer = snap ? evaluate(snap, request) : noPolicy();
    const d = answer.decision;
    const src = request.source;
    const tgt = request.target;
    ctx.events.record({
      kind: 'admin.action',
      outcome: 'allow',
      source: { id: who.id },
      target: { resource: 'policy.evaluate' },
      reason: `what-if evaluated: ${d.outcome}${d.policy ? ` by ${d.policy}/${d.rule ?? '-'}` : ''}`,
      // Who asked about what, clipped like a decision's fields; never headers or claims.
      details: {
        what_if: true,
        outcome: d.outcome,
        policy: d.policy,
        rule: d.rule,
        version: d.version,
        source: clipText(src?.spiffe_id ?? src?.user ?? src?.service, SOURCE_LIMITS.spiffe_id) ?? null,
        target: clipText(tgt?.spiffe_id ?? tgt?.service, TARGET_LIMITS.spiffe_id) ?? null,
        method: clipText(request.request?.method, TARGET_LIMITS.method) ?? null,
        path: clipText(request.request?.path, TARGET_LIMITS.path) ?? null,
      },
    });
    sendJson(res, 200, answer);
  };
}

/** `GET /v1/admin/policy/dry-run?window=24h&limit=`: the dry-run notes of recent decisions, added up. */
function dryRun(ctx: ServerContext, deps: PolicyToolsDeps): AdminHandler {
  return async (_req, res, url) => {
    const q = parseQuery(dryRunQuerySchema, url.searchParams);
    const now = Date.now();
    const inForce = (deps.snapshot()?.policies ?? [])
      .filter((p) => p.dryRun)
      .map((p) => ({ policy: p.id, ...(p.dryRunSince !== undefined && { since: p.dryRunSince }) }));
    const answer = await summarizeDryRuns(ctx.store, {
      from: now - q.window * 1000,
      // Exclusive: what was recorded up to this millisecond counts.
      to: now + 1,
      maxExamined: Math.min(q.limit, DRY_RUN_EXAMINED_MAX),
      inForce,
    });
    sendJson(res, 200, answer);
  };
}

/**
 * The policy tools' admin routes.
 *
 * @example
 * router.add(policyToolRoutes(ctx, { snapshot: () => watcher?.current }));
 */
export function policyToolRoutes(ctx: ServerContext, deps: PolicyToolsDeps): Route[] {
  return [
    { method: 'GET', path: '/v1/admin/policy/lint', handler: adminRoute(ctx, lint(ctx, deps)) },
    { method: 'POST', path: '/v1/admin/policy/evaluate', handler: adminRoute(ctx, evaluateRoute(ctx, deps)) },
    { method: 'GET', path: '/v1/admin/policy/dry-run', handler: adminRoute(ctx, dryRun(ctx, deps)) },
  ];
}
