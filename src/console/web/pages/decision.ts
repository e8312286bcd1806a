/**
 * One decision (`#/decisions/<event id>`): the event, its explanation (policy, rule, reason, dry-run
 * records), its inclusion proof and the signed checkpoint it verifies against — checked here, in
 * the browser — and the log's verification status.
 */
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { checkInclusion, type ProofCheck } from '../proof.js';
import { href } from '../routes.js';
import { Alert, fmtTime, Page, stateOf, useLoad } from '../ui.js';
import type { CheckpointList, EventWithProof } from '../wire.js';
import { LogStatus, sourceText, targetText } from './decisions.js';

/** A dry-run record as enforcement points attach it to a decision (`details.dry_run`). */
interface DryRunRecord {
  policy?: string;
  rule?: string | null;
  would_decide?: string;
  wouldDecide?: string;
  would_change?: boolean;
  wouldChange?: boolean;
}

function dryRunsOf(details: Record<string, unknown> | undefined): DryRunRecord[] {
  const d = details?.dry_run ?? details?.dryRun;
  return Array.isArray(d) ? (d.filter((x) => x !== null && typeof x === 'object') as DryRunRecord[]) : [];
}

/** Any JSON value, readable. */
function Value(props: { v: unknown }) {
  const v = props.v;
  if (v === null || v === undefined) return html`<span>—</span>`;
  if (typeof v !== 'object') return html`<span>${String(v)}</span>`;
  return html`<pre>${JSON.stringify(v, null, 2)}</pre>`;
}

function ProofSection(props: { data: EventWithProof; publicKey: string | undefined }) {
  const { event, inclusion } = props.data;
  const [check, setCheck] = useState<ProofCheck | null>(null);
  const key = props.publicKey ?? props.data.public_key;
  useEffect(() => {
    if (inclusion && key) checkInclusion(event, inclusion, key).then(setCheck);
  }, [event, inclusion, key]);
  if (!inclusion) {
    return html`<section aria-labelledby="proof"><h2 id="proof">Inclusion proof</h2>
      <p>No proof yet: ${props.data.note ?? 'no checkpoint covers this event yet'}.</p></section>`;
  }
  const cp = inclusion.checkpoint;
  return html`<section aria-labelledby="proof" data-testid="proof">
    <h2 id="proof">Inclusion proof</h2>
    <p data-testid="proof-check" data-ok=${check ? String(check.ok) : undefined} class=${check ? (check.ok ? 'ok' : 'bad') : ''}>
      ${check ? (check.ok ? `Verified in this browser. ${check.message}` : `NOT verified: ${check.message}`) : 'Checking…'}
    </p>
    ${
      check
        ? html`<ul class="plain checks">
          <li>Leaf hash recomputed from the event: ${check.leaf ? 'matches' : 'differs'}</li>
          <li>Audit path (${inclusion.proof.length} hashes, RFC 6962 SHA-256) to the root: ${check.path ? 'leads to the checkpoint’s root' : 'does not'}</li>
          <li>Checkpoint signature (Ed25519): ${check.signature === 'unsupported' ? 'not checkable in this browser' : check.signature ? 'valid' : 'invalid'}; key id ${check.keyId ? 'matches the log’s key' : 'differs'}</li>
        </ul>`
        : null
    }
    <dl>
      <dt>Leaf</dt><dd>${inclusion.seq} of ${inclusion.tree_size}: <code>${inclusion.leaf_hash}</code></dd>
      <dt>Path</dt><dd><ol class="hashes">${inclusion.proof.map((h) => html`<li><code>${h}</code></li>`)}</ol></dd>
    </dl>
    <h3>Signed checkpoint</h3>
    <dl data-testid="checkpoint">
      <dt>Tree size</dt><dd>${cp.tree_size}</dd>
      <dt>Root</dt><dd><code>${cp.root_hash}</code></dd>
      <dt>Signed at</dt><dd>${fmtTime(cp.time)}</dd>
      <dt>Key id</dt><dd><code>${cp.key_id}</code></dd>
      <dt>Signature</dt><dd><code class="wrap">${cp.signature}</code></dd>
      <dt>Log public key</dt><dd><pre>${key}</pre></dd>
    </dl>
  </section>`;
}

/** `#/decisions/<id>`. */
export function DecisionPage(props: { id: string }) {
  const ev = useLoad(
    (signal) => api<EventWithProof>(`/v1/admin/audit/events/${encodeURIComponent(props.id)}`, { signal }),
    [props.id],
  );
  const cps = useLoad((signal) => api<CheckpointList>('/v1/admin/audit/checkpoints?limit=1', { signal }), []);
  const e = ev.data?.event;
  const dry = dryRunsOf(e?.details);
  return html`<${Page} name="decisions" view="decision" title=${e ? `Decision ${e.id}` : 'Decision'} state=${stateOf(ev, cps)}>
    <p><a href=${href('decisions')}>← All decisions</a></p>
    <${Alert} error=${ev.error ?? cps.error} />
    ${
      e
        ? html`
      <section aria-labelledby="event" data-testid="decision-table">
        <h2 id="event">Event</h2>
        <dl>
          <dt>Time</dt><dd>${fmtTime(e.time)}</dd>
          <dt>Kind</dt><dd>${e.kind}</dd>
          <dt>Outcome</dt><dd><span class=${`outcome ${e.outcome ?? ''}`}>${e.outcome ?? '—'}</span></dd>
          <dt>Source</dt><dd>${sourceText(e)} <${Value} v=${e.source} /></dd>
          <dt>Target</dt><dd>${targetText(e)} <${Value} v=${e.target} /></dd>
          <dt>Enforcer</dt><dd>${e.enforcer ?? '—'}</dd>
          <dt>Decision id</dt><dd><code>${e.decision_id ?? '—'}</code></dd>
          <dt>Sequence</dt><dd>${e.seq}</dd>
          ${e.latency_us !== undefined ? html`<dt>Latency</dt><dd>${e.latency_us} µs</dd>` : null}
        </dl>
      </section>
      <section aria-labelledby="why" data-testid="explanation">
        <h2 id="why">Explanation</h2>
        <dl>
          <dt>Policy</dt><dd>${e.policy ?? '— (no policy decided: default deny or a request error)'}</dd>
          <dt>Rule</dt><dd>${e.rule ?? '—'}</dd>
          <dt>Reason</dt><dd>${e.reason ?? '—'}</dd>
          <dt>Policy version</dt><dd><code>${String(e.details?.version ?? '—')}</code></dd>
        </dl>
        <h3>Dry-run policies</h3>
        ${
          dry.length === 0
            ? html`<p>No dry-run policy judged this request.</p>`
            : html`<table data-testid="dry-run-records"><thead><tr><th>Policy</th><th>Rule</th><th>Would decide</th><th>Would change</th></tr></thead>
              <tbody>${dry.map(
                (d) => html`<tr><td>${d.policy}</td><td>${d.rule ?? '—'}</td><td>${d.would_decide ?? d.wouldDecide}</td>
                  <td>${String(d.would_change ?? d.wouldChange ?? '')}</td></tr>`,
              )}</tbody></table>`
        }
        <h3>Details</h3>
        <${Value} v=${e.details} />
      </section>
      <${ProofSection} data=${ev.data} publicKey=${cps.data?.public_key} />`
        : null
    }
    <${LogStatus} />
  <//>`;
}
