/**
 * The pieces every page shares: the page frame (`<main data-page data-state>`), the error alert,
 * loading hooks, the confirm and step-up dialogs, and time formatting.
 */
import { html } from 'htm/preact';
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { messageOf, STEP_UP_EVENT } from './api.js';

/** What a page is doing, on `<main data-state>` so that tests and people can tell. */
export type LoadState = 'loading' | 'ready' | 'error';

/**
 * The frame of a page: `<main data-page=… data-state=…>` with its `<h1>`. `data-page` is the route's
 * page (`decisions` for `#/decisions/<id>` too); `view` tells one item's page from the list's.
 */
export function Page(props: {
  name: string;
  view?: string;
  title: string;
  state: LoadState;
  children?: ComponentChildren;
}) {
  return html`<main data-page=${props.name} data-view=${props.view} data-state=${props.state} tabindex="-1">
    <h1>${props.title}</h1>
    ${props.children}
  </main>`;
}

/** An error, announced (`role=alert`); nothing when there is none. */
export function Alert(props: { error: string | null | undefined }) {
  return props.error ? html`<p role="alert" class="alert">${props.error}</p>` : null;
}

/** A note of something done, announced politely. */
export function Notice(props: { text: string | null }) {
  return props.text ? html`<p role="status" class="notice">${props.text}</p>` : null;
}

/** A loaded value and how its loading went; `reload` fetches it again. */
export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  state: LoadState;
  reload: () => void;
}

/**
 * Loads `fn()` now and whenever `deps` change; a later load supersedes an earlier one still running.
 *
 * @example
 * const devices = useLoad(() => api<{devices: DeviceWire[]}>('/v1/admin/devices'), []);
 */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [state, setState] = useState<LoadState>('loading');
  const [tick, setTick] = useState(0);
  // The caller's deps decide when to load again (not `fn`, a new closure on every render).
  useEffect(() => {
    const ctl = new AbortController();
    setState('loading');
    fn(ctl.signal).then(
      (d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setError(null);
        setState('ready');
      },
      (e: unknown) => {
        if (ctl.signal.aborted) return;
        setError(messageOf(e));
        setState('error');
      },
    );
    return () => ctl.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, state, reload };
}

/** The combined state of several loads: error if any failed, loading while any loads. */
export function stateOf(...loads: Loaded<unknown>[]): LoadState {
  if (loads.some((l) => l.state === 'error')) return 'error';
  if (loads.some((l) => l.state === 'loading' && l.data === undefined)) return 'loading';
  return 'ready';
}

// ── Confirm dialog ────────────────────────────────────────────────────────────────────────────

interface ConfirmRequest {
  text: string;
  action: string;
  resolve: (ok: boolean) => void;
}

let openConfirm: ((r: ConfirmRequest) => void) | undefined;

/**
 * Asks in the confirm dialog before a destructive action; resolves true when confirmed.
 *
 * @example
 * if (await confirmAction('Revoke device d-42?', 'Revoke')) await api(…);
 */
export function confirmAction(text: string, action: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!openConfirm) return resolve(false);
    openConfirm({ text, action, resolve });
  });
}

/** A modal `<dialog>` open while `open` is true (closing it by Escape calls `onClose`). */
function Modal(props: {
  open: boolean;
  testid: string;
  label: string;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return html`<dialog ref=${ref} data-testid=${props.testid} aria-label=${props.label} onClose=${props.onClose}>
    ${props.open ? props.children : null}
  </dialog>`;
}

/** The confirm and step-up dialogs, mounted once by the app. */
export function Dialogs() {
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [stepUp, setStepUp] = useState(false);
  useEffect(() => {
    openConfirm = setConfirm;
    const on = () => setStepUp(true);
    window.addEventListener(STEP_UP_EVENT, on);
    return () => {
      openConfirm = undefined;
      window.removeEventListener(STEP_UP_EVENT, on);
    };
  }, []);
  const answer = (ok: boolean) => {
    confirm?.resolve(ok);
    setConfirm(null);
  };
  // The proxy runs its MFA challenge on this path and sends the browser back to the same view.
  const goStepUp = () =>
    location.assign(`/console/step-up?return=${encodeURIComponent(location.hash.replace(/^#/, ''))}`);
  return html`
    <${Modal} open=${confirm !== null} testid="confirm" label="Confirm" onClose=${() => answer(false)}>
      <p>${confirm?.text}</p>
      <div class="buttons">
        <button type="button" data-action="confirm" class="danger" onClick=${() => answer(true)}>${confirm?.action}</button>
        <button type="button" data-action="cancel" autofocus onClick=${() => answer(false)}>Cancel</button>
      </div>
    <//>
    <${Modal} open=${stepUp} testid="step-up" label="Fresh second factor needed" onClose=${() => setStepUp(false)}>
      <p><strong>This action needs a fresh second factor.</strong></p>
      <p>Confirm with your authenticator, then repeat the action: it is not sent again by itself.</p>
      <div class="buttons">
        <button type="button" data-action="step-up" onClick=${goStepUp}>Verify now</button>
        <button type="button" data-action="cancel" onClick=${() => setStepUp(false)}>Cancel</button>
      </div>
    <//>`;
}

/** The state of a page's actions: the last error and the last thing done. */
export interface Actions {
  busy: boolean;
  error: string | null;
  done: string | null;
  /** Confirms `question`, runs `fn`, shows `done` and calls `after` (e.g. a reload). */
  run: (question: string, label: string, fn: () => Promise<unknown>, done: string) => Promise<void>;
}

/** Confirmed, destructive actions of a page; `after` runs on success (typically a reload). */
export function useActions(after: () => void): Actions {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const run = async (question: string, label: string, fn: () => Promise<unknown>, doneText: string) => {
    if (!(await confirmAction(question, label))) return;
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      await fn();
      setDone(doneText);
      after();
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, done, run };
}

// ── Formatting ────────────────────────────────────────────────────────────────────────────────

/** A time (epoch ms or ISO-8601) as `2026-12-07 12:51:29Z`; `—` for none. */
export function fmtTime(t: number | string | null | undefined): string {
  if (t === null || t === undefined) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** How long ago (or, negative, how far ahead) a time is: `5m ago`, `in 3h`. */
export function fmtAge(t: number | string | null | undefined, now = Date.now()): string {
  if (t === null || t === undefined) return '—';
  const ms = now - new Date(t).getTime();
  if (Number.isNaN(ms)) return '—';
  const s = Math.abs(ms) / 1000;
  const text =
    s < 60
      ? `${Math.round(s)}s`
      : s < 3600
        ? `${Math.round(s / 60)}m`
        : s < 86400
          ? `${Math.round(s / 3600)}h`
          : `${Math.round(s / 86400)}d`;
  return ms >= 0 ? `${text} ago` : `in ${text}`;
}

/** Yes/no/unknown for a boolean fact. */
export function yesNo(v: boolean | null | undefined): string {
  return v === true ? 'yes' : v === false ? 'no' : '?';
}
