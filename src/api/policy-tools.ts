/**
 * Policy tools over the admin API, as the console's policy page and scripts use them:
 * `GET /v1/admin/policy/lint`, `POST /v1/admin/policy/evaluate` (a what-if with its explanation) and
 * `GET /v1/admin/policy/dry-run` (what dry-run policies would have decided, from the audit log).
 * The evaluate request is the decision API's own (`POST /v1/decide`), parsed by its one parser
 * (`parseAccessRequest`, src/policy/request.ts), so it has no schema here.
 */
import { z } from 'zod';
import { durationSchema } from '../util/duration.js';
import { isoTime } from './fields.js';

/** One lint finding (`LintFinding`, src/policy/lint.ts). */
export const lintFindingSchema = z.object({
  severity: z.enum(['error', 'warning']),
  /** `shadowed-rule`, `allow-overridden-by-deny`, `stale-dry-run`, … (docs/policy-language.md). */
  code: z.string(),
  file: z.string(),
  line: z.number().int(),
  column: z.number().int(),
  policy: z.string(),
  rule: z.string().optional(),
  message: z.string(),
});
export type LintFindingWire = z.infer<typeof lintFindingSchema>;

/** `GET /v1/admin/policy/lint`: the findings over the snapshot in force (`version` null: none in force). */
export const lintAnswerSchema = z.object({
  version: z.string().nullable(),
  findings: z.array(lintFindingSchema),
});
export type LintAnswer = z.infer<typeof lintAnswerSchema>;

const outcome = z.enum(['allow', 'deny', 'step_up']);

/** What one dry-run policy would have decided (a decision's `dryRun` record, and a decision event's note). */
export const dryRunNoteSchema = z.object({
  policy: z.string(),
  rule: z.string().nullable(),
  decision: outcome,
  changed: z.boolean(),
});
export type DryRunNote = z.infer<typeof dryRunNoteSchema>;

/** The decision of an evaluated request, as the decision API would have made it. */
export const evaluatedDecisionSchema = z.object({
  /** True only for `allow`: a step-up is not an allow at a service's enforcement point. */
  allow: z.boolean(),
  outcome,
  policy: z.string().nullable(),
  rule: z.string().nullable(),
  reason: z.string(),
  /** The snapshot version that decided; null when no snapshot is in force. */
  version: z.string().nullable(),
  /** For `step_up`: what the second factor must be (RFC 8176 methods) and how fresh (seconds). */
  step_up: z.object({ methods: z.array(z.string()).optional(), max_age: z.number().optional() }).optional(),
  /** AUDIT rules that matched (they never change the decision). */
  audit: z.array(z.object({ policy: z.string(), rule: z.string() })),
  dry_run: z.array(dryRunNoteSchema),
});

/** One rule of a candidate policy, and why it matched or not (`RuleExplanation`). */
export const ruleExplanationSchema = z.object({
  rule: z.string(),
  line: z.number().int(),
  result: z.enum(['match', 'no_match', 'unknown']),
  /** One line per part: `from: …`, `to: …`, `when[0] …`. */
  why: z.array(z.string()),
});

/** A policy whose target selects the request's workload (`PolicyExplanation`). */
export const policyExplanationSchema = z.object({
  policy: z.string(),
  action: z.string(),
  origin: z.enum(['native', 'istio']),
  dry_run: z.boolean(),
  file: z.string(),
  line: z.number().int(),
  rules: z.array(ruleExplanationSchema),
});

/** `POST /v1/admin/policy/evaluate` (body: an access request as `POST /v1/decide` takes it). */
export const evaluateAnswerSchema = z.object({
  decision: evaluatedDecisionSchema,
  explanation: z.object({
    /** The derived attributes the rules saw (`sourceSpiffeId`, `targetService`, `path`, …). */
    request: z.record(z.string(), z.unknown()),
    candidates: z.array(policyExplanationSchema),
    /** Policies whose target does not select this workload. */
    not_selected: z.number().int(),
  }),
});
export type EvaluateAnswer = z.infer<typeof evaluateAnswerSchema>;

/** Longest window of `GET /v1/admin/policy/dry-run` (seconds): 30 days. */
export const DRY_RUN_WINDOW_MAX = 30 * 86_400;
/** Most decision events one dry-run summary examines (and its default). */
export const DRY_RUN_EXAMINED_MAX = 100_000;

/** A decimal count in a query string. */
const countText = z
  .string()
  .regex(/^\d{1,9}$/, 'a whole number')
  .transform(Number);

/** The query of `GET /v1/admin/policy/dry-run?window=24h&limit=100000`. */
export const dryRunQuerySchema = z.strictObject({
  /** How far back from now (`1h`, `24h`, `7d`; default 24h, at most 30d). */
  window: durationSchema
    .pipe(z.number().positive('must be longer than 0').max(DRY_RUN_WINDOW_MAX, 'at most 30d'))
    .default(86_400),
  /** Decision events examined at most (1–100,000; default 100,000). */
  limit: countText.pipe(z.number().int().min(1).max(DRY_RUN_EXAMINED_MAX)).default(DRY_RUN_EXAMINED_MAX),
});
export type DryRunQuery = z.output<typeof dryRunQuerySchema>;

/** A decision a dry-run policy would have changed. */
export const dryRunExampleSchema = z.object({
  event_id: z.string(),
  time: isoTime,
  /** The caller as the event names it (SPIFFE ID, user, service or address); null when unknown. */
  source: z.string().nullable(),
  target: z.string().nullable(),
  /** The outcome enforced (`allow`, `deny`, `step_up`, `error`). */
  enforced: z.string(),
  /** What the dry-run policy would have decided. */
  dry_run: outcome,
});

/** One dry-run policy over the window. */
export const dryRunPolicySchema = z.object({
  policy: z.string(),
  /** `dryRunSince` of the policy in force, when it has one. */
  since: z.string().optional(),
  /** Whether the policy is a dry-run policy of the snapshot in force (else it is only in older events). */
  in_force: z.boolean(),
  /** Decisions it was evaluated on: agree + would_deny_allowed + would_allow_denied + other. */
  decisions: z.number().int(),
  /** Allowed, and it would have denied (or asked for a step-up). */
  would_deny_allowed: z.number().int(),
  /** Denied (or stepped up), and it would have allowed. */
  would_allow_denied: z.number().int(),
  agree: z.number().int(),
  /** Changes between deny and step_up. */
  other: z.number().int(),
  /** Newest changes first, at most 5. */
  examples: z.array(dryRunExampleSchema),
});

/** `GET /v1/admin/policy/dry-run`. */
export const dryRunAnswerSchema = z.object({
  from: isoTime,
  to: isoTime,
  /** Decision events examined. */
  examined: z.number().int(),
  /** True when the scan stopped at `limit` before the start of the window: the counts cover its newest part. */
  scan_limited: z.boolean(),
  policies: z.array(dryRunPolicySchema),
});
export type DryRunAnswer = z.infer<typeof dryRunAnswerSchema>;
export type DryRunPolicy = z.infer<typeof dryRunPolicySchema>;
