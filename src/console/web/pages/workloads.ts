/**
 * Workloads: registration entries, attested agents (with ban), SVIDs close to expiry, and the CA's
 * generations with the next rotation.
 */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { Alert, fmtAge, fmtTime, Notice, Page, stateOf, useActions, useLoad } from '../ui.js';
import { nextRotation } from '../ca-schedule.js';
import type { AgentWire, CaState, EntryWire, SvidExpiry } from '../wire.js';

const WITHIN = ['1h', '24h', '7d'] as const;

/** `#/workloads`. */
export function WorkloadsPage() {
  const [within, setWithin] = useState<string>('24h');
  const entries = useLoad((signal) => api<{ entries: EntryWire[] }>('/v1/admin/entries', { signal }), []);
  const agents = useLoad((signal) => api<{ agents: AgentWire[] }>('/v1/admin/agents', { signal }), []);
  const svids = useLoad(
    (signal) => api<{ svids: SvidExpiry[] }>(`/v1/admin/svids${query({ within })}`, { signal }),
    [within],
  );
  const ca = useLoad((signal) => api<CaState>('/v1/admin/ca', { signal }), []);
  const acts = useActions(agents.reload);
  const ban = (a: AgentWire) =>
    acts.run(
      `Ban agent ${a.spiffe_id}? It can no longer renew its SVID or sign workloads' SVIDs, and must attest again with a new join token.`,
      'Ban agent',
      () => api('/v1/admin/agents/ban', { method: 'POST', body: { spiffe_id: a.spiffe_id } }),
      `Agent ${a.spiffe_id} banned.`,
    );
  const next = ca.data ? nextRotation(ca.data.authorities) : null;
  return html`<${Page} name="workloads" title="Workloads" state=${stateOf(entries, agents, ca)}>
    <${Alert} error=${acts.error} />
    <${Notice} text=${acts.done} />
    <section aria-labelledby="entries">
      <h2 id="entries">Registration entries</h2>
      <${Alert} error=${entries.error} />
      <table data-testid="workloads-table">
        <thead><tr><th>SPIFFE ID</th><th>Parent</th><th>Selectors</th><th>X.509 TTL</th><th>Admin</th><th>Expires</th><th>Updated</th></tr></thead>
        <tbody>${entries.data?.entries.map(
          (e) => html`<tr data-testid="row" data-id=${e.id}>
            <td class="id"><code>${e.spiffe_id}</code></td><td class="id"><code>${e.parent_id}</code></td>
            <td class="wrap">${e.selectors.join(', ')}</td><td>${e.x509_svid_ttl}s</td><td>${e.admin ? 'yes' : ''}</td>
            <td>${fmtTime(e.expires_at)}</td><td>${fmtAge(e.updated_at)}</td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
    <section aria-labelledby="agents">
      <h2 id="agents">Agents</h2>
      <${Alert} error=${agents.error} />
      <table data-testid="agents-table">
        <thead><tr><th>SPIFFE ID</th><th>Attestation</th><th>Address</th><th>Attested</th><th>SVID expires</th><th>Status</th><th></th></tr></thead>
        <tbody>${agents.data?.agents.map(
          (a) => html`<tr data-testid="row" data-id=${a.spiffe_id}>
            <td class="id"><code>${a.spiffe_id}</code></td><td>${a.attestation}</td><td>${a.remote_addr}</td>
            <td>${fmtTime(a.attested_at)}</td><td>${fmtAge(a.expires_at)}</td><td>${a.banned ? 'BANNED' : 'active'}</td>
            <td>${
              a.banned
                ? null
                : html`<button type="button" class="danger" data-action="ban-agent" disabled=${acts.busy}
                    aria-label=${`Ban agent ${a.spiffe_id}`} onClick=${() => ban(a)}>Ban</button>`
            }</td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
    <section aria-labelledby="svids">
      <h2 id="svids">SVIDs expiring soon</h2>
      <label>Within <select value=${within} onChange=${(e: Event) => setWithin((e.target as HTMLSelectElement).value)}>
        ${WITHIN.map((w) => html`<option value=${w}>${w}</option>`)}</select></label>
      <${Alert} error=${svids.error} />
      <table data-testid="svids-table">
        <thead><tr><th>SPIFFE ID</th><th>Kind</th><th>Serial</th><th>Expires</th></tr></thead>
        <tbody>${svids.data?.svids.map(
          (s) => html`<tr data-testid="row" data-id=${s.serial}>
            <td class="id"><code>${s.spiffe_id}</code></td><td>${s.kind}</td><td><code>${s.serial}</code></td>
            <td>${fmtTime(s.expires_at)} (${fmtAge(s.expires_at)})</td>
          </tr>`,
        )}</tbody>
      </table>
      ${svids.data?.svids.length === 0 ? html`<p>None within ${within}.</p>` : null}
    </section>
    <section aria-labelledby="ca">
      <h2 id="ca">Certificate authority</h2>
      <${Alert} error=${ca.error} />
      ${
        ca.data
          ? html`<p>Trust domain <code>${ca.data.trustDomain}</code>, rotation sequence ${ca.data.sequence}.
            Next rotation: ${next ? `${next.step} at ${fmtTime(next.at)} (${fmtAge(next.at)})` : 'no active generation'}.</p>`
          : null
      }
      <table data-testid="ca-table">
        <thead><tr><th>Generation</th><th>Status</th><th>Valid from</th><th>Valid until</th><th>X.509 fingerprint</th><th>JWT key id</th></tr></thead>
        <tbody>${ca.data?.authorities.map(
          (g) => html`<tr data-testid="row" data-id=${g.id}>
            <td><code>${g.id}</code></td><td>${g.status}</td><td>${fmtTime(g.notBefore)}</td><td>${fmtTime(g.notAfter)} (${fmtAge(g.notAfter)})</td>
            <td><code class="wrap">${g.x509Fingerprint ?? '—'}</code></td><td><code>${g.jwtKid ?? '—'}</code></td>
          </tr>`,
        )}</tbody>
      </table>
    </section>
  <//>`;
}
