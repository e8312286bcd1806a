/**
 * `PolicyWatcher`: the snapshot of a policy path, reloaded whenever the path changes, however it is
 * saved — written in place, truncated and rewritten, renamed over (editors, `sed -i`, config
 * management), a directory replaced, a symbolic link swapped (Kubernetes ConfigMap volumes).
 *
 * Two mechanisms, because either alone misses changes: fs.watch on the path and on its parent
 * directory (fast; the parent sees the path being renamed over or replaced, and the watch on the
 * path is re-armed when the path is a new file or directory), and a poll of a stat fingerprint of
 * every file (a safety net: changes the kernel does not report — a swapped link's target, a lost
 * watch, inotify limits — are still found within `pollMs`).
 */
import { EventEmitter } from 'node:events';
import { type FSWatcher, lstatSync, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { compile } from './compile.js';
import { compileOptions, type LoadOptions, readPolicyTree, walkPolicyTree } from './load.js';
import { type LoadResult, loadPoliciesOffThread } from './load-async.js';
import { PolicyLoadError, type PolicyIssue } from './yamldoc.js';
import type { PolicySnapshot } from './snapshot.js';

export interface PolicyWatcherOptions extends LoadOptions {
  /** Quiet time after a change event before reloading (default 100 ms). */
  debounceMs?: number;
  /** Interval of the fingerprint check (default 1000 ms; 0 turns it off). */
  pollMs?: number;
  /** `false`: load once, never reload by itself. */
  watch?: boolean;
  /** `false`: reload on the calling thread (default: on a worker thread, the event loop stays free). */
  offThread?: boolean;
}

/** Whether the file system watch is working; when it is not, the poll still finds changes. */
export interface WatchStatus {
  ok: boolean;
  error: string | null;
  /** Since when (ms since the epoch) this status holds. */
  since: number;
}

export interface PolicyWatcherEvents {
  /** A new snapshot is in force. */
  reload: [snapshot: PolicySnapshot];
  /** A load succeeded (`changed`: a new version); a previous error is cleared. */
  loaded: [snapshot: PolicySnapshot, changed: boolean];
  /** A load failed; the last good snapshot stays in force. */
  error: [error: PolicyLoadError];
  /** A load succeeded with warnings (e.g. no policy at all). */
  warning: [warnings: PolicyIssue[]];
  /** fs.watch failed (changes are still found by the poll). */
  'watch-error': [error: Error];
}

const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

function statKey(p: string): string {
  const s = statSync(p, { bigint: true });
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** A fingerprint of everything a load reads: changes when any file (or the set of files) does. */
export function policyFingerprint(path: string): string {
  try {
    const parts = [statKey(path), String(lstatSync(path, { bigint: true }).ino)];
    const tree = walkPolicyTree(path);
    for (const f of tree.files) parts.push(`${f}=${statKey(f)}`);
    for (const i of tree.issues) parts.push(`!${i.file}:${i.message}`);
    return parts.join('\n');
  } catch (err) {
    return `error:${errText(err)}`;
  }
}

/**
 * Holds the current snapshot of a policy path and reloads it when files change. A failed reload
 * emits `error` and keeps the last good snapshot in force. The first load must succeed.
 *
 * @example
 * const w = await PolicyWatcher.open('policies/');
 * w.on('reload', (s) => log.info({ version: s.version }, 'policies reloaded'));
 * w.on('error', (e) => log.error(e.message));
 * decide(w.current, request);
 * w.close();
 */
export class PolicyWatcher extends EventEmitter<PolicyWatcherEvents> {
  private snapshot: PolicySnapshot;
  private readonly loadOpts: LoadOptions;
  private fp: string;
  private armedKey: string | undefined;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private loading = false;
  private pending = false;
  private closed = false;
  private readonly abort = new AbortController();
  private status: WatchStatus = { ok: true, error: null, since: Date.now() };
  /** The last load's failure, until a load succeeds. */
  lastError: PolicyLoadError | undefined;
  /** The last successful load's warnings. */
  warnings: PolicyIssue[] = [];

  /** Loads `path` on a worker thread (the event loop stays free), then watches it. */
  static async open(path: string, opts: PolicyWatcherOptions = {}): Promise<PolicyWatcher> {
    const fp = policyFingerprint(path);
    const first = await loadPoliciesOffThread(path, PolicyWatcher.loadOptions(opts));
    return new PolicyWatcher(path, opts, { ...first, fingerprint: fp });
  }

  private static loadOptions(opts: PolicyWatcherOptions): LoadOptions {
    const { debounceMs, pollMs, watch, offThread, ...load } = opts;
    return load;
  }

  /** Loads `path` synchronously (prefer {@link PolicyWatcher.open}), then watches it. */
  constructor(
    readonly path: string,
    private readonly opts: PolicyWatcherOptions = {},
    first?: LoadResult & { fingerprint: string },
  ) {
    super();
    this.loadOpts = PolicyWatcher.loadOptions(opts);
    this.fp = first?.fingerprint ?? policyFingerprint(path);
    const loaded = first ?? this.loadHere();
    this.snapshot = loaded.snapshot;
    this.warnings = loaded.warnings;
    if (opts.watch === false) return;
    this.arm();
    const pollMs = opts.pollMs ?? 1000;
    if (pollMs > 0) {
      this.poller = setInterval(() => this.poll(), pollMs);
      this.poller.unref();
    }
  }

  /** The snapshot in force. */
  get current(): PolicySnapshot {
    return this.snapshot;
  }

  /** Whether fs.watch is working. */
  get watchStatus(): WatchStatus {
    return { ...this.status };
  }

  private loadHere(): LoadResult {
    const r = readPolicyTree(this.path, this.loadOpts);
    if (r.issues.length > 0) throw new PolicyLoadError(r.issues);
    return { snapshot: compile(r.policies, compileOptions(this.loadOpts)), warnings: r.warnings };
  }

  /** (Re)creates the fs watches on the path and its parent, for the path as it is now. */
  private arm(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    let key: string;
    try {
      const st = statSync(this.path, { bigint: true });
      key = `${st.dev}:${st.ino}`;
      const name = basename(this.path);
      // The parent sees the path renamed over, deleted, replaced; a watch on the path itself would
      // follow the old inode forever after a rename.
      this.add(watch(dirname(this.path), { persistent: false }, (_e, f) => (!f || f === name) && this.schedule()));
      this.add(watch(this.path, { recursive: st.isDirectory(), persistent: false }, () => this.schedule()));
    } catch (err) {
      this.armedKey = undefined;
      this.watchFailed(err);
      return;
    }
    this.armedKey = key;
    if (!this.status.ok) this.status = { ok: true, error: null, since: Date.now() };
  }

  private add(w: FSWatcher): void {
    this.watchers.push(w);
    w.on('error', (err) => {
      // A dead watch (deleted directory, inotify limits): the poll re-arms it.
      this.armedKey = undefined;
      this.watchFailed(err);
    });
  }

  private watchFailed(err: unknown): void {
    const error = errText(err);
    if (this.status.ok || this.status.error !== error) this.status = { ok: false, error, since: Date.now() };
    this.emit('watch-error', err instanceof Error ? err : new Error(error));
  }

  /** Re-arms when the path is now another file or directory than the one watched. */
  private rearmIfMoved(): void {
    let key: string | undefined;
    try {
      const st = statSync(this.path, { bigint: true });
      key = `${st.dev}:${st.ino}`;
    } catch {
      key = undefined;
    }
    if (key !== undefined && key !== this.armedKey) this.arm();
  }

  private poll(): void {
    if (this.closed || this.loading) return;
    this.rearmIfMoved();
    if (policyFingerprint(this.path) !== this.fp) this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.opts.debounceMs ?? 100);
  }

  /** Reloads until no change arrived during the load; one load at a time. */
  private async run(): Promise<void> {
    if (this.loading) {
      this.pending = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.pending = false;
        // Taken before reading: a change made while loading differs from it and is loaded next.
        this.fp = policyFingerprint(this.path);
        this.rearmIfMoved();
        if (this.opts.offThread === false) this.reload();
        else {
          try {
            this.accept(await loadPoliciesOffThread(this.path, this.loadOpts, this.abort.signal));
          } catch (err) {
            if (!this.closed) this.reject(err);
          }
        }
      } while (this.pending && !this.closed);
    } finally {
      this.loading = false;
    }
  }

  /** Reloads now, on this thread. Returns true when a new snapshot is in force. */
  reload(): boolean {
    try {
      return this.accept(this.loadHere());
    } catch (err) {
      this.reject(err);
      return false;
    }
  }

  private accept(r: LoadResult): boolean {
    if (this.closed) return false;
    const changed = r.snapshot.version !== this.snapshot.version;
    this.lastError = undefined;
    this.warnings = r.warnings;
    if (changed) {
      this.snapshot = r.snapshot;
      this.emit('reload', r.snapshot);
    }
    this.emit('loaded', this.snapshot, changed);
    if (r.warnings.length > 0) this.emit('warning', r.warnings);
    return changed;
  }

  private reject(err: unknown): void {
    const e =
      err instanceof PolicyLoadError
        ? err
        : new PolicyLoadError([{ file: this.path, line: 1, column: 1, field: '(file)', message: errText(err) }]);
    this.lastError = e;
    this.emit('error', e);
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    if (this.poller) clearInterval(this.poller);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }
}
