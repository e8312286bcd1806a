/**
 * The frame around every page: a skip link, the header with who is signed in and whether their
 * second factor is fresh enough for destructive actions, and the navigation (real links).
 */
import { html } from 'htm/preact';
import type { ComponentChildren } from 'preact';
import { api } from './api.js';
import { href, PAGES, type PageName } from './routes.js';
import { fmtAge, useLoad } from './ui.js';
import type { Whoami } from './wire.js';

const TITLES: Record<PageName, string> = {
  graph: 'Service graph',
  decisions: 'Decisions',
  people: 'People',
  devices: 'Devices',
  workloads: 'Workloads',
  policy: 'Policy',
  anomalies: 'Anomalies',
};

/** Who is signed in: a person with their MFA freshness, or the admin token. */
function WhoamiBadge() {
  const me = useLoad(() => api<Whoami>('/v1/admin/whoami'), []);
  if (me.error) return html`<span class="whoami" data-testid="whoami">identity unknown</span>`;
  const w = me.data;
  if (!w) return html`<span class="whoami" data-testid="whoami">…</span>`;
  const who = w.kind === 'person' ? (w.user ?? w.id) : `${w.id} (admin token)`;
  const mfa =
    w.kind !== 'person'
      ? null
      : html`<span class=${w.mfa_fresh ? 'fresh' : 'stale'} data-testid="mfa-state">
          MFA ${w.mfa_at ? fmtAge(w.mfa_at) : 'none'} · ${w.mfa_fresh ? 'fresh' : 'step-up needed for changes'}
        </span>`;
  return html`<span class="whoami" data-testid="whoami"><span>${who}</span> ${mfa}</span>`;
}

/** The header, navigation and the current page. */
export function Layout(props: { page: PageName; children: ComponentChildren }) {
  return html`
    <a class="skip" href="#content" onClick=${(e: Event) => {
      // The hash is the router's: move focus to the page instead of navigating.
      e.preventDefault();
      document.querySelector<HTMLElement>('main')?.focus();
    }}>Skip to content</a>
    <header>
      <span class="brand">nevertrust console</span>
      <${WhoamiBadge} />
    </header>
    <nav aria-label="Pages">
      <ul>
        ${PAGES.map(
          (p) =>
            html`<li><a href=${href(p)} aria-current=${props.page === p ? 'page' : undefined}>${TITLES[p]}</a></li>`,
        )}
      </ul>
    </nav>
    <div id="content">${props.children}</div>`;
}
