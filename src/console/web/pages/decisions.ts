/**
 * Decisions: a live tail of the audit log (streamed NDJSON, pause and resume), a search with every
 * filter the admin API takes, and the log's verification status. One table shows either the live
 * tail or the search's results, so the page reads the same either way.
 */
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, followNdjson, messageOf, query } from '../api.js';
import { href } from '../routes.js';
import { Alert, fmtTime, type LoadState, Page } from '../ui.js';
import { verifyText } from '../verify-report.js';
import type { AuditEvent, AuditPage, VerifyReport } from '../wire.js';

/** Rows kept in the live view. */
const TAIL_KEEP = 200;

const FILTERS = ['source', 'target', 'user', 'device', 'rule', 'reason'] as const;
type Search = Partial<Record<(typeof FILTERS)[number] | 'outcome' | 'kind' | 'since' | 'until', string>>;

/** A `datetime-local` value (local time, no zone) as ISO-8601 for the API. */
const isoOf = (local: string | undefined): string | undefined => (local ? new Date(local).toISOString() : undefined);

/** Who made the call, in one cell. */
export const sourceText = (e: AuditEvent): string =>
  [e.source?.user, e.source?.spiffe_id ?? e.source?.service ?? e.source?.ip].filter(Boolean).join(' · ') || '—';
/** What was called, in one cell. */
export const targetText = (e: AuditEvent): string =>
  [e.target?.spiffe_id ?? e.target?.service ?? e.target?.host ?? e.target?.resource, e.target?.method, e.target?.path]
    .filter(Boolean)
    .join(' ') || '—';

function EventTable(props: { events: AuditEvent[]; caption: string }) {
  return html`<table data-testid="decisions-table">
    <caption>${props.caption}</caption>
    <thead><tr><th>Time</th><th>Kind</th><th>Outcome</th><th>Source</th><th>Target</th><th>Rule</th><th>Reason</th><th>Enforcer</th></tr></thead>
    <tbody>
      ${props.events.map(
        (e) => html`<tr data-testid="row" data-id=${e.id}>
          <td><a href=${href('decisions', e.id)}>${fmtTime(e.time)}</a></td>
          <td>${e.kind}</td>
          <td><span class=${`outcome ${e.outcome ?? ''}`}>${e.outcome ?? ''}</span></td>
          <td class="id">${sourceText(e)}</td>
          <td class="id">${targetText(e)}</td>
          <td>${e.policy ? `${e.policy}/${e.rule ?? '—'}` : ''}</td>
          <td class="wrap">${e.reason ?? ''}</td>
          <td>${e.enforcer ?? ''}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** The live tail: follows `/v1/admin/audit/tail?follow=1` while not paused. */
function useTail(paused: boolean, decisionsOnly: boolean) {
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [state, setState] = useState<LoadState>('loading');
  useEffect(() => {
    if (paused) return;
    const ctl = new AbortController();
    setError(null);
    // The last events first, then each new one as it is appended; duplicates (by seq) on resume are dropped.
    followNdjson<AuditEvent>(
      '/v1/admin/audit/tail?follow=1&last=100',
      (e) => {
        setState('ready');
        if (decisionsOnly && e.kind !== 'access.decision') return;
        setEvents((old) => (old.some((o) => o.seq === e.seq) ? old : [e, ...old].slice(0, TAIL_KEEP)));
      },
      ctl.signal,
    ).then(
      () => {
        if (ctl.signal.aborted) return;
        setError('The server ended the live tail (a restart?): pause and resume to reconnect.');
        setState('ready');
      },
      (e: unknown) => {
        setError(`Live tail stopped: ${messageOf(e)}`);
        setState('error');
      },
    );
    // An empty log sends nothing: the stream is open, so the page is ready.
    const ready = setTimeout(() => setState((s) => (s === 'loading' ? 'ready' : s)), 1500);
    return () => {
      clearTimeout(ready);
      ctl.abort();
    };
  }, [paused, decisionsOnly]);
  return { events, error, state, clear: () => setEvents([]) };
}

/** The log's verification (`POST /v1/admin/audit/verify`, read-only): recomputes every hash. */
export function LogStatus() {
  const [report, setReport] = useState<VerifyReport | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const verify = async () => {
    setBusy(true);
    setError(null);
    try {
      setReport(await api<VerifyReport>('/v1/admin/audit/verify', { method: 'POST' }));
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return html`<section aria-labelledby="log-status" data-testid="log-status">
    <h2 id="log-status">Log verification</h2>
    <button type="button" data-action="verify-log" onClick=${verify} disabled=${busy}>${busy ? 'Verifying…' : 'Verify the whole log now'}</button>
    <${Alert} error=${error} />
    ${
      report
        ? html`<p data-testid="verify-result" class=${report.ok ? 'ok' : 'bad'}>
          ${verifyText(report)}
        </p>`
        : null
    }
  </section>`;
}

/** The search form: every filter of `GET /v1/admin/audit/events`. */
function SearchForm(props: { onSearch: (s: Search) => void }) {
  const submit = (ev: Event) => {
    ev.preventDefault();
    const data = new FormData(ev.target as HTMLFormElement);
    const s: Search = {};
    for (const [k, v] of data) if (typeof v === 'string' && v.trim()) s[k as keyof Search] = v.trim();
    props.onSearch(s);
  };
  return html`<form class="search" data-testid="decisions-search" onSubmit=${submit} aria-label="Search decisions">
    <label>Since <input type="datetime-local" name="since" step="1" /></label>
    <label>Until <input type="datetime-local" name="until" step="1" /></label>
    ${FILTERS.map((f) => html`<label>${f[0]?.toUpperCase()}${f.slice(1)} <input name=${f} maxlength=${f === 'source' || f === 'target' ? 2048 : 200} /></label>`)}
    <label>Outcome <select name="outcome"><option value="">any</option>
      ${['allow', 'deny', 'step_up', 'error'].map((o) => html`<option value=${o}>${o}</option>`)}</select></label>
    <label>Kind <input name="kind" value="access.decision" maxlength="64" /></label>
    <button type="submit">Search</button>
  </form>`;
}

/** `#/decisions`. */
export function DecisionsPage() {
  const [paused, setPaused] = useState(false);
  const [decisionsOnly, setDecisionsOnly] = useState(true);
  const [search, setSearch] = useState<Search | null>(null);
  const [results, setResults] = useState<AuditPage | null>(null);
  const [searchError, setSearchError] = useState<string | null>(null);
  const [searching, setSearching] = useState(false);
  const tail = useTail(paused || search !== null, decisionsOnly);

  const run = async (s: Search, cursor?: number) => {
    setSearch(s);
    setSearching(true);
    setSearchError(null);
    try {
      const q = query({ ...s, since: isoOf(s.since), until: isoOf(s.until), limit: 100, cursor });
      const page = await api<AuditPage>(`/v1/admin/audit/events${q}`);
      setResults((old) => (cursor !== undefined && old ? { ...page, events: [...old.events, ...page.events] } : page));
    } catch (e) {
      setSearchError(messageOf(e));
      if (cursor === undefined) setResults(null);
    } finally {
      setSearching(false);
    }
  };
  const state: LoadState = search ? (searchError ? 'error' : searching && !results ? 'loading' : 'ready') : tail.state;
  return html`<${Page} name="decisions" title="Decisions" state=${state}>
    <${SearchForm} onSearch=${(s: Search) => run(s)} />
    <div class="toolbar">
      ${
        search
          ? html`<button type="button" data-action="live" onClick=${() => {
              setSearch(null);
              setResults(null);
            }}>Back to the live tail</button>`
          : html`<button type="button" data-action=${paused ? 'resume' : 'pause'} onClick=${() => setPaused(!paused)}>
                ${paused ? 'Resume' : 'Pause'}</button>
              <label><input type="checkbox" checked=${decisionsOnly} onChange=${() => setDecisionsOnly(!decisionsOnly)} /> decisions only</label>
              <span>${paused ? 'paused' : 'live'}</span>`
      }
    </div>
    <${Alert} error=${search ? searchError : tail.error} />
    ${
      search
        ? html`<${EventTable} events=${results?.events ?? []}
            caption=${`Search results (${results?.events.length ?? 0}${results?.scan_limited ? ', scan limited: narrow the time range' : ''})`} />
          ${
            results?.next_cursor !== undefined
              ? html`<button type="button" data-action="older" disabled=${searching} onClick=${() => run(search, results.next_cursor)}>Older</button>`
              : null
          }`
        : html`<${EventTable} events=${tail.events} caption=${`Live: the last ${tail.events.length} events, newest first`} />`
    }
    <${LogStatus} />
  <//>`;
}
