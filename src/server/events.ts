/**
 * Server-side happenings that must be recorded: every admin action, entry change, attestation and
 * issuance. Parts emit here; the audit plugin turns them into audit events. Decoupled so that a part
 * never waits on the audit log and never needs to know it exists.
 */
import { EventEmitter } from 'node:events';

export interface ServerEvent {
  kind:
    | 'admin.action'
    | 'entry.changed'
    | 'agent.attested'
    | 'svid.issued'
    | 'jwt.issued'
    | 'policy.changed'
    | 'revocation'
    | 'access.decision';
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

export class ServerEvents extends EventEmitter<{ event: [ServerEvent] }> {
  record(e: ServerEvent): void {
    this.emit('event', e);
  }
}
