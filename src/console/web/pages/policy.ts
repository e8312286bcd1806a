/**
 * Policy: the snapshot in force (version and files), lint findings, dry-run results over a window,
 * and an "evaluate this request" form showing the decision and its explanation.
 */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, messageOf, query } from '../api.js';
import { requestOf } from '../evaluate-request.js';
import { href } from '../routes.js';
import { Alert, fmtTime, Page, stateOf, useLoad } from '../ui.js';
import type { DryRunWire, EvaluateAnswer, LintFinding, PolicyStatus, SnapshotPolicy } from '../wire.js';

function Evaluate() {
  const [answer, setAnswer] = useState<EvaluateAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const f: Record<string, string> = {};
    for (const [k, v] of new FormData(ev.target as HTMLFormElement)) if (typeof v === 'string') f[k] = v.trim();
    setBusy(true);
    setError(null);
    try {
      setAnswer(await api<EvaluateAnswer>('/v1/admin/policy/evaluate', { method: 'POST', body: requestOf(f) }));
    } catch (e) {
      setAnswer(null);
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  const d = answer?.decision;
  const verdict = d ? d.outcome : '';
  return html`<section aria-labelledby="evaluate">
    <h2 id="evaluate">Evaluate a request</h2>
    <form class="search" data-testid="evaluate-form" onSubmit=${submit}>
      <label>Source SPIFFE ID <input name="source" placeholder="spiffe://example.org/ns/payments/sa/api-gateway" /></label>
      <label>Source user <input name="user" /></label>
      <label>Source IP <input name="ip" /></label>
      <label><input type="checkbox" name="mfa" /> MFA</label>
      <label>Target SPIFFE ID <input name="target" placeholder="spiffe://example.org/ns/payments/sa/payment-service" /></label>
      <label>Target service <input name="service" /></label>
      <label>Target host <input name="host" /></label>
      <label>Method <input name="method" value="GET" /></label>
      <label>Path <input name="path" value="/" /></label>
      <button type="submit" disabled=${busy}>Evaluate</button>
    </form>
    <${Alert} error=${error} />
    ${
      answer && d
        ? html`<div data-testid="evaluate-result">
          <p><span class=${`outcome ${verdict}`}>${verdict}</span> — policy ${d.policy ?? '—'}, rule ${d.rule ?? '—'}: ${d.reason}</p>
          <table>
            <thead><tr><th>Policy</th><th>Action</th><th>Rule</th><th>Result</th><th>Why</th></tr></thead>
            <tbody>${answer.explanation.candidates.flatMap((c) =>
              (c.rules.length ? c.rules : [{ rule: '(no rules)', line: c.line, result: 'no_match', why: [] }]).map(
                (r) => html`<tr class=${r.result === 'match' ? 'match' : ''}>
                  <td title=${`${c.file}:${r.line}`}>${c.policy}${c.dry_run ? ' (dry run)' : ''}</td><td>${c.action}</td>
                  <td>${r.rule}</td><td>${r.result.replace('_', ' ')}</td><td class="wrap">${r.why.join('; ')}</td>
                </tr>`,
              ),
            )}</tbody>
          </table>
          ${answer.explanation.not_selected ? html`<p>${answer.explanation.not_selected} policies do not select this target.</p>` : null}
        </div>`
        : null
    }
  </section>`;
}

/** `#/policy`. */
export function PolicyPage() {
  const [win, setWin] = useState('24h');
  const status = useLoad((signal) => api<PolicyStatus>('/v1/admin/policy', { signal }), []);
  const snap = useLoad(
    (signal) => api<{ version: string; policies: SnapshotPolicy[] }>('/v1/admin/policy/snapshot', { signal }),
    [],
  );
  const lint = useLoad(
    (signal) => api<{ version: string; findings: LintFinding[] }>('/v1/admin/policy/lint', { signal }),
    [],
  );
  const dry = useLoad(
    (signal) => api<DryRunWire>(`/v1/admin/policy/dry-run${query({ window: win })}`, { signal }),
    [win],
  );
  const files = [...new Set(snap.data?.policies.map((p) => p.loc?.file).filter((f): f is string => !!f))];
  return html`<${Page} name="policy" title="Policy" state=${stateOf(status, snap)}>
    <section aria-labelledby="snapshot">
      <h2 id="snapshot">Snapshot in force</h2>
      <${Alert} error=${status.error ?? snap.error} />
      ${
        status.data
          ? html`<dl>
            <dt>Version</dt><dd><code data-testid="policy-version">${status.data.version}</code></dd>
            <dt>Source</dt><dd><code>${status.data.source}</code></dd>
            <dt>Loaded</dt><dd>${fmtTime(status.data.loaded_at)}, ${status.data.rules} rules</dd>
            <dt>Last error</dt><dd>${status.data.last_error ?? 'none'}</dd>
            <dt>Files</dt><dd><ul class="plain">${files.map((f) => html`<li><code>${f}</code></li>`)}</ul></dd>
          </dl>`
          : null
      }
      <table data-testid="policy-table">
        <thead><tr><th>Policy</th><th>Action</th><th>Origin</th><th>Rules</th><th>Dry run</th><th>File</th></tr></thead>
        <tbody>${snap.data?.policies.map(
          (p) => html`<tr data-testid="row" data-id=${p.id}>
            <td>${p.id}</td><td>${p.action}</td><td>${p.origin}</td><td>${p.rules.map((r) => r.id).join(', ')}</td>
            <td>${p.dryRun ? 'yes' : ''}</td><td><code>${p.loc ? `${p.loc.file}:${p.loc.line}` : '—'}</code></td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
    <section aria-labelledby="lint">
      <h2 id="lint">Lint findings</h2>
      <${Alert} error=${lint.error} />
      ${lint.data?.findings.length === 0 ? html`<p>No finding.</p>` : null}
      <table data-testid="lint-table">
        <thead><tr><th>Severity</th><th>Code</th><th>Where</th><th>Policy / rule</th><th>Message</th></tr></thead>
        <tbody>${lint.data?.findings.map(
          (
            f,
            i,
          ) => html`<tr data-testid="row" data-id=${`${f.code}:${f.file}:${f.line}:${i}`} class=${f.severity === 'error' ? 'bad' : ''}>
            <td>${f.severity}</td><td>${f.code}</td><td><code>${f.file}:${f.line}:${f.column}</code></td>
            <td>${f.policy}${f.rule ? ` / ${f.rule}` : ''}</td><td class="wrap">${f.message}</td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
    <section aria-labelledby="dry-run">
      <h2 id="dry-run">Dry-run results</h2>
      <label>Window <select value=${win} onChange=${(e: Event) => setWin((e.target as HTMLSelectElement).value)}>
        ${['1h', '24h', '7d'].map((w) => html`<option value=${w}>${w}</option>`)}</select></label>
      <${Alert} error=${dry.error} />
      ${dry.data?.policies.length === 0 ? html`<p>No dry-run policy judged a request in this window.</p>` : null}
      <table data-testid="dry-run-table">
        <thead><tr><th>Policy</th><th>Since</th><th>Decisions</th><th>Would deny (allowed)</th><th>Would allow (denied)</th><th>Agree</th><th>Examples</th></tr></thead>
        <tbody>${dry.data?.policies.map(
          (p) => html`<tr data-testid="row" data-id=${p.policy}>
            <td>${p.policy}</td><td>${fmtTime(p.since)}</td><td class="num">${p.decisions}</td>
            <td class="num">${p.would_deny_allowed}</td><td class="num">${p.would_allow_denied}</td><td class="num">${p.agree}</td>
            <td><ul class="plain">${p.examples.map(
              (x) =>
                html`<li><a href=${href('decisions', x.event_id)}>${fmtTime(x.time)}</a> ${x.source} → ${x.target}: ${x.enforced} → ${x.dry_run}</li>`,
            )}</ul></td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
    <${Evaluate} />
  <//>`;
}
