/** Devices: the enrolled devices with their latest posture, one device's posture history, revoke. */
import { html } from 'htm/preact';
import { api } from '../api.js';
import { href } from '../routes.js';
import { Alert, fmtAge, fmtTime, Notice, Page, useActions, useLoad, yesNo } from '../ui.js';
import type { DevicePosture, DeviceWire } from '../wire.js';

function postureCells(p: DevicePosture | null) {
  if (!p) return html`<td colspan="6">no report yet</td>`;
  return html`<td class=${p.compliant ? 'ok' : 'bad'}>${p.compliant ? 'compliant' : 'NOT compliant'}</td>
    <td>${yesNo(p.managed)}</td><td>${yesNo(p.encrypted)}</td><td>${yesNo(p.os_patched)}</td><td>${yesNo(p.edr_active)}</td>
    <td>${p.source}, ${fmtAge(p.received_at)}${p.unknown.length > 0 ? ` (unknown: ${p.unknown.join(', ')})` : ''}</td>`;
}

const POSTURE_HEAD = html`<th>Posture</th><th>Managed</th><th>Encrypted</th><th>Patched</th><th>EDR</th><th>Reported</th>`;

/** Revoking a device, with its confirmation; `after` reloads. */
function useRevoke(after: () => void) {
  const acts = useActions(after);
  const revoke = (d: DeviceWire) =>
    acts.run(
      `Revoke device ${d.id} of ${d.owner}? Its certificate stops working and sessions bound to it end.`,
      'Revoke device',
      () =>
        api(`/v1/admin/devices/${encodeURIComponent(d.id)}/revoke`, {
          method: 'POST',
          body: { reason: 'revoked in the console' },
        }),
      `Device ${d.id} revoked.`,
    );
  return { acts, revoke };
}

function RevokeButton(props: { d: DeviceWire; busy: boolean; onRevoke: (d: DeviceWire) => void }) {
  return props.d.revoked_at
    ? html`<span>revoked ${fmtAge(props.d.revoked_at)}</span>`
    : html`<button type="button" class="danger" data-action="revoke-device" disabled=${props.busy}
        aria-label=${`Revoke device ${props.d.id}`} onClick=${() => props.onRevoke(props.d)}>Revoke</button>`;
}

/** `#/devices`. */
export function DevicesPage() {
  const list = useLoad((signal) => api<{ devices: DeviceWire[] }>('/v1/admin/devices', { signal }), []);
  const { acts, revoke } = useRevoke(list.reload);
  return html`<${Page} name="devices" title="Devices" state=${list.state}>
    <${Alert} error=${list.error ?? acts.error} />
    <${Notice} text=${acts.done} />
    <table data-testid="devices-table">
      <thead><tr><th>Device</th><th>Owner</th><th>Name</th>${POSTURE_HEAD}<th>Certificate expires</th><th></th></tr></thead>
      <tbody>
        ${list.data?.devices.map(
          (d) => html`<tr data-testid="row" data-id=${d.id}>
            <td><a href=${href('devices', d.id)}>${d.id}</a></td><td>${d.owner}</td><td>${d.name ?? '—'}</td>
            ${postureCells(d.posture)}
            <td>${fmtTime(d.cert_expires_at)}</td>
            <td><${RevokeButton} d=${d} busy=${acts.busy} onRevoke=${revoke} /></td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${list.data?.devices.length === 0 ? html`<p>No enrolled device.</p>` : null}
  <//>`;
}

/** `#/devices/<id>`: one device and its posture history. */
export function DevicePage(props: { id: string }) {
  const one = useLoad(
    (signal) =>
      api<{ device: DeviceWire; reports: { seq: number; posture: DevicePosture }[] }>(
        `/v1/admin/devices/${encodeURIComponent(props.id)}`,
        { signal },
      ),
    [props.id],
  );
  const { acts, revoke } = useRevoke(one.reload);
  const d = one.data?.device;
  return html`<${Page} name="devices" view="device" title=${`Device ${props.id}`} state=${one.state}>
    <p><a href=${href('devices')}>← All devices</a></p>
    <${Alert} error=${one.error ?? acts.error} />
    <${Notice} text=${acts.done} />
    ${
      d
        ? html`<dl>
          <dt>Owner</dt><dd>${d.owner}</dd>
          <dt>Name</dt><dd>${d.name ?? '—'}</dd>
          <dt>SPIFFE ID</dt><dd><code>${d.spiffe_id}</code></dd>
          <dt>Enrolled</dt><dd>${fmtTime(d.enrolled_at)}</dd>
          <dt>Certificate</dt><dd>serial <code>${d.cert_serial}</code>, expires ${fmtTime(d.cert_expires_at)}</dd>
          <dt>Revoked</dt><dd>${d.revoked_at ? `${fmtTime(d.revoked_at)}: ${d.revoked_reason ?? ''}` : 'no'}</dd>
        </dl>
        <p><${RevokeButton} d=${d} busy=${acts.busy} onRevoke=${revoke} /></p>
        <h2>Posture history (newest first)</h2>
        <table data-testid="devices-table">
          <thead><tr><th>#</th><th>Collected</th>${POSTURE_HEAD}</tr></thead>
          <tbody>${one.data?.reports.map(
            (r) =>
              html`<tr data-testid="row" data-id=${String(r.seq)}><td>${r.seq}</td><td>${fmtTime(r.posture.collected_at)}</td>${postureCells(r.posture)}</tr>`,
          )}</tbody>
        </table>`
        : null
    }
  <//>`;
}
