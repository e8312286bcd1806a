/**
 * Server-side happenings that must be recorded: every admin action, entry change, attestation and
 * issuance. Parts emit here; the audit plugin turns them into audit events. Decoupled so that a part
 * never waits on the audit log and never needs to know it exists.
 */
import { EventEmitter } from 'node:events';
import { RefusalAggregator } from '../audit/refusals.js';

export interface ServerEvent {
  kind:
    | 'admin.action'
    | 'entry.changed'
    | 'agent.attested'
    | 'svid.issued'
    | 'jwt.issued'
    | 'policy.changed'
    | 'revocation'
    // A revocation, risk or posture signal kept and streamed (src/server/plugins/signals.ts).
    | 'signal'
    | 'access.decision'
    // People's second factors, recorded by the MFA service for admin calls (`mfa.reset`, `mfa.enroll_link`).
    | `mfa.${string}`
    // Devices (src/server/devices/): token, enroll, renew, report, mdm, revoke, non_compliant.
    | `device.${string}`;
  outcome: 'allow' | 'deny' | 'step_up' | 'error';
  /**
   * Who acted: `id` is an admin principal or a SPIFFE ID; access decisions name the caller with the
   * audit schema's own fields instead (`spiffe_id`, `user`, `service`).
   */
  source: { id?: string; ip?: string; spiffe_id?: string; user?: string; service?: string };
  /**
   * What was acted on: `id` an entry id or SPIFFE ID, `resource` an API path; access decisions use
   * the audit schema's fields (`spiffe_id`, `service`, `path`, `method`).
   */
  target: { id?: string; resource?: string; method?: string; path?: string; spiffe_id?: string; service?: string };
  reason: string;
  /** Access decisions: the id answered to the caller, so the answer and the record can be joined. */
  decision_id?: string;
  /** Access decisions: the policy and rule that decided (absent when none matched). */
  policy?: string;
  rule?: string;
  /** Which enforcement point decided (default `server`). */
  enforcer?: string;
  /** Extra context; never secrets, tokens or keys. */
  details?: Record<string, unknown>;
}

/** A refusal standing for `repeated` more of its kind (0: itself only), with the count in `reason` and `details`. */
export function withRepeats(e: ServerEvent, repeated: number): ServerEvent {
  if (repeated === 0) return e;
  return {
    ...e,
    reason: `${e.reason} (${repeated} more like it since the last record)`,
    details: { ...e.details, repeated },
  };
}

export class ServerEvents extends EventEmitter<{ event: [ServerEvent] }> {
  /**
   * Refused requests (admin routes, audit ingestion): the first of a caller's run for a reason is
   * recorded at once, the ones within the next 10 s as one event with their exact count.
   * `refusals.refused(key, event)` returns true when it recorded `event` now.
   */
  readonly refusals = new RefusalAggregator<ServerEvent>({ record: (e, n) => this.record(withRepeats(e, n)) });

  // What was recorded while plugins registered, before a recorder subscribed (the policy plugin's
  // first snapshot, the CA's first generation): handed to each `subscribe()`r, so start-up is
  // recorded too. Dropped when start-up ends; bounded in case it never does.
  #startup: ServerEvent[] | undefined = [];

  record(e: ServerEvent): void {
    if (this.#startup && this.#startup.length < STARTUP_BACKLOG_MAX) this.#startup.push(e);
    this.emit('event', e);
  }

  /**
   * Listens to every event: first those recorded since the server started (while start-up lasts),
   * then each new one. Returns the unsubscribe function.
   *
   * @example
   * ```ts
   * const stop = ctx.events.subscribe((e) => recorder.record(fromServerEvent(e)));
   * ```
   */
  subscribe(listener: (e: ServerEvent) => void): () => void {
    for (const e of this.#startup ?? []) listener(e);
    this.on('event', listener);
    return () => this.off('event', listener);
  }

  /** Start-up is over (every plugin registered, or the start failed): the backlog is let go. */
  endStartup(): void {
    this.#startup = undefined;
  }
}

/** Events kept for late subscribers during start-up, at most. */
const STARTUP_BACKLOG_MAX = 10_000;
