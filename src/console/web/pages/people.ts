/**
 * People: live access-proxy sessions (user, device, posture, MFA state, last seen) with revoke,
 * and the built-in provider's users with their second factors and MFA reset.
 */
import { html } from 'htm/preact';
import { api } from '../api.js';
import { href } from '../routes.js';
import { Alert, fmtAge, fmtTime, Notice, Page, stateOf, useActions, useLoad, yesNo } from '../ui.js';
import type { MfaFactorWire, SessionWire, UserWire } from '../wire.js';

/** A user with their factors (`null`: the factors could not be read). */
interface UserRow {
  user: UserWire;
  factors: MfaFactorWire[] | null;
}

/** Users and each one's factors; at most the first 200 users get their factors read. */
async function loadUsers(signal: AbortSignal): Promise<UserRow[]> {
  const { users } = await api<{ users: UserWire[] }>('/v1/admin/users', { signal });
  return Promise.all(
    users.map(async (user, i) => {
      if (i >= 200) return { user, factors: null };
      try {
        const r = await api<{ factors: MfaFactorWire[] }>(`/v1/admin/users/${encodeURIComponent(user.username)}/mfa`, {
          signal,
        });
        return { user, factors: r.factors };
      } catch {
        return { user, factors: null };
      }
    }),
  );
}

function postureText(d: SessionWire['device']): string {
  if (!d) return 'no device';
  const facts = `managed ${yesNo(d.managed)}, encrypted ${yesNo(d.encrypted)}, patched ${yesNo(d.os_patched)}, EDR ${yesNo(d.edr_active)}`;
  const age = d.posture_age_s === null ? 'no report' : `reported ${Math.round(d.posture_age_s / 60)}m ago`;
  return `${d.compliant === true ? 'compliant' : d.compliant === false ? 'NOT compliant' : 'unknown'} (${facts}; ${age})`;
}

/** `#/people`. */
export function PeoplePage() {
  const sessions = useLoad(
    (signal) => api<{ sessions: SessionWire[] }>('/v1/admin/sessions?limit=500', { signal }),
    [],
  );
  const users = useLoad(loadUsers, []);
  const acts = useActions(() => {
    sessions.reload();
    users.reload();
  });
  const revoke = (s: SessionWire) =>
    acts.run(
      `Revoke session ${s.id} of ${s.user}? Their open requests and WebSockets end now; they must sign in again.`,
      'Revoke session',
      () => api('/v1/admin/revoke', { method: 'POST', body: { session: s.id, reason: 'revoked in the console' } }),
      `Session ${s.id} revoked.`,
    );
  const reset = (u: UserWire) =>
    acts.run(
      `Reset every second factor of ${u.username}? Their sessions end and they must enroll a factor again.`,
      'Reset MFA',
      () => api(`/v1/admin/users/${encodeURIComponent(u.username)}/mfa/reset`, { method: 'POST' }),
      `MFA of ${u.username} reset.`,
    );
  return html`<${Page} name="people" title="People" state=${stateOf(sessions, users)}>
    <${Alert} error=${acts.error} />
    <${Notice} text=${acts.done} />
    <section aria-labelledby="sessions">
      <h2 id="sessions">Live sessions</h2>
      <${Alert} error=${sessions.error} />
      <table data-testid="people-table">
        <thead><tr><th>User</th><th>Host</th><th>Device and posture</th><th>MFA</th><th>Last seen</th><th>Expires</th><th></th></tr></thead>
        <tbody>
          ${sessions.data?.sessions.map(
            (s) => html`<tr data-testid="row" data-id=${s.id}>
              <td title=${`${s.person} (${s.issuer})`}>${s.user}</td>
              <td>${s.host}</td>
              <td class="wrap">${s.device ? html`<a href=${href('devices', s.device.id)}>${s.device.id}</a> ` : null}${postureText(s.device)}</td>
              <td>${s.mfa ? `${s.mfa.methods.join(', ') || 'yes'}, ${fmtAge(s.mfa.at)}` : 'none'}</td>
              <td>${fmtAge(s.last_seen_at)}</td>
              <td>${fmtTime(s.expires_at)}</td>
              <td><button type="button" class="danger" data-action="revoke-session" disabled=${acts.busy} onClick=${() => revoke(s)}
                aria-label=${`Revoke session of ${s.user}`}>Revoke</button></td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${sessions.data?.sessions.length === 0 ? html`<p>No live session.</p>` : null}
    </section>
    <section aria-labelledby="users">
      <h2 id="users">Users and second factors</h2>
      <${Alert} error=${users.error} />
      <table data-testid="users-table">
        <thead><tr><th>User</th><th>Email</th><th>Groups</th><th>Status</th><th>Second factors</th><th></th></tr></thead>
        <tbody>
          ${users.data?.map(
            ({ user: u, factors }) => html`<tr data-testid="row" data-id=${u.username}>
              <td>${u.username}</td>
              <td>${u.email ?? '—'}</td>
              <td>${u.groups.join(', ')}</td>
              <td>${u.disabled ? 'disabled' : 'active'}</td>
              <td class="wrap">${
                factors === null
                  ? 'unknown'
                  : factors.length === 0
                    ? 'none'
                    : factors
                        .map(
                          (f) =>
                            `${f.kind} “${f.name}”${f.confirmed ? '' : ' (pending)'}, last used ${fmtAge(f.last_used_at)}`,
                        )
                        .join('; ')
              }</td>
              <td><button type="button" class="danger" data-action="reset-mfa" disabled=${acts.busy} onClick=${() => reset(u)}
                aria-label=${`Reset MFA of ${u.username}`}>Reset MFA</button></td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
  <//>`;
}
