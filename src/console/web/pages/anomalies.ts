/** Anomalies: the audit log's anomaly events (lateral movement, deny spikes…) with their evidence. */
import { html } from 'htm/preact';
import { api } from '../api.js';
import { href } from '../routes.js';
import { Alert, fmtTime, Page, useLoad } from '../ui.js';
import type { AuditPage } from '../wire.js';
import { sourceText, targetText } from './decisions.js';

/** The evidence of an anomaly (its `details`), one line per field; event ids become links. */
function Evidence(props: { details: Record<string, unknown> | undefined }) {
  const entries = Object.entries(props.details ?? {});
  if (entries.length === 0) return html`<span>—</span>`;
  return html`<dl class="evidence">${entries.map(
    ([k, v]) =>
      html`<dt>${k}</dt><dd>${
        /event_ids?$/.test(k) && (Array.isArray(v) || typeof v === 'string')
          ? [v].flat().map((id) => html`<a href=${href('decisions', String(id))}>${String(id)}</a> `)
          : typeof v === 'object'
            ? JSON.stringify(v)
            : String(v)
      }</dd>`,
  )}</dl>`;
}

/** `#/anomalies`. */
export function AnomaliesPage() {
  const list = useLoad((signal) => api<AuditPage>('/v1/admin/audit/events?kind=anomaly&limit=200', { signal }), []);
  return html`<${Page} name="anomalies" title="Anomalies" state=${list.state}>
    <${Alert} error=${list.error} />
    ${list.data?.events.length === 0 ? html`<p>No anomaly signal in the log.</p>` : null}
    <table data-testid="anomalies-table">
      <thead><tr><th>Time</th><th>Signal</th><th>Source</th><th>Target</th><th>Reason</th><th>Evidence</th></tr></thead>
      <tbody>${list.data?.events.map(
        (e) => html`<tr data-testid="row" data-id=${e.id}>
          <td><a href=${href('decisions', e.id)}>${fmtTime(e.time)}</a></td>
          <td>${String(e.details?.signal ?? e.rule ?? e.kind)}</td>
          <td class="id">${sourceText(e)}</td><td class="id">${targetText(e)}</td>
          <td class="wrap">${e.reason ?? ''}</td>
          <td><${Evidence} details=${e.details} /></td>
        </tr>`,
      )}</tbody>
    </table>
  <//>`;
}
