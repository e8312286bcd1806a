/**
 * Unix workload attestation: turns the kernel's peer credentials (SO_PEERCRED) and `/proc/<pid>`
 * into selectors (`unix:uid:1000`, `unix:sha256:…`, …), the way SPIRE's unix workload attestor does.
 *
 * Trust: uid and gid come from SO_PEERCRED only; `/proc` gives the binary, its hash and the
 * supplementary groups. The pid could be reused by another process after the caller exits, so the
 * process start time (`/proc/<pid>/stat` field 22) is read before and after everything else and must
 * not change, and the process must still hold the uid the kernel recorded at connect().
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { PeerCredentials } from './peercred.js';

/** A selector: `type:value`, e.g. type `unix`, value `uid:1000`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

export type SelectorErrorCode = 'ERR_SELECTOR_MALFORMED' | 'ERR_SELECTOR_UNKNOWN_TYPE' | 'ERR_SELECTOR_INVALID_VALUE';

/** Thrown by {@link parseSelector} for a selector that is not well formed. */
export class SelectorError extends Error {
  override readonly name = 'SelectorError';
  constructor(
    readonly code: SelectorErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type AttestationErrorCode =
  | 'ERR_ATTEST_PROCESS_GONE'
  | 'ERR_ATTEST_PID_REUSED'
  | 'ERR_ATTEST_UID_MISMATCH'
  | 'ERR_ATTEST_PROC_UNREADABLE';

/** Thrown when a caller cannot be attested; the Workload API denies the call. */
export class AttestationError extends Error {
  override readonly name = 'AttestationError';
  constructor(
    readonly code: AttestationErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The unix selector keys (SPIRE's names). */
export const UNIX_SELECTOR_KEYS = [
  'uid',
  'gid',
  'user',
  'group',
  'supplementary_gid',
  'supplementary_group',
  'path',
  'sha256',
] as const;
export type UnixSelectorKey = (typeof UNIX_SELECTOR_KEYS)[number];

const TYPE_RE = /^[a-z][a-z0-9_-]*$/;
const NUMERIC_RE = /^(0|[1-9][0-9]{0,9})$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
// POSIX-portable names plus what real systems use (dots, trailing $ for machine accounts).
const NAME_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/;
const MAX_SELECTOR_LENGTH = 4096;

export interface ParseSelectorOptions {
  /** Selector types accepted; default `['unix']`. Anything else is rejected (fail closed). */
  types?: readonly string[];
}

/**
 * Parses `type:value` strictly. For `unix`: `uid`/`gid`/`supplementary_gid` are decimal ids
 * (≤ 4294967295), `user`/`group`/`supplementary_group` are account names, `path` is an absolute,
 * normalised path, `sha256` is 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * parseSelector('unix:uid:1000');            // { type: 'unix', value: 'uid:1000' }
 * parseSelector('unix:path:/usr/bin/node');  // { type: 'unix', value: 'path:/usr/bin/node' }
 * parseSelector('unix:uid:-1');              // throws SelectorError ERR_SELECTOR_INVALID_VALUE
 * ```
 * @throws {SelectorError}
 */
export function parseSelector(text: string, opts: ParseSelectorOptions = {}): Selector {
  if (typeof text !== 'string' || text.length === 0) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', 'a selector must be a non-empty string of the form type:value');
  }
  if (text.length > MAX_SELECTOR_LENGTH) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector is longer than ${MAX_SELECTOR_LENGTH} characters`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(text)) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector ${JSON.stringify(text)} contains control characters`);
  }
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) {
    throw new SelectorError(
      'ERR_SELECTOR_MALFORMED',
      `selector ${JSON.stringify(text)} must be type:value, e.g. unix:uid:1000`,
    );
  }
  const type = text.slice(0, i);
  const value = text.slice(i + 1);
  if (!TYPE_RE.test(type)) {
    throw new SelectorError('ERR_SELECTOR_MALFORMED', `selector type ${JSON.stringify(type)} is not a lowercase name`);
  }
  const types = opts.types ?? ['unix'];
  if (!types.includes(type)) {
    throw new SelectorError(
      'ERR_SELECTOR_UNKNOWN_TYPE',
      `selector type ${JSON.stringify(type)} is not supported (supported: ${types.join(', ')})`,
    );
  }
  if (type === 'unix') checkUnixValue(text, value);
  return { type, value };
}

function checkUnixValue(text: string, value: string): void {
  const j = value.indexOf(':');
  const key = j < 0 ? value : value.slice(0, j);
  const v = j < 0 ? '' : value.slice(j + 1);
  const bad = (why: string): never => {
    throw new SelectorError('ERR_SELECTOR_INVALID_VALUE', `selector ${JSON.stringify(text)}: ${why}`);
  };
  if (!(UNIX_SELECTOR_KEYS as readonly string[]).includes(key)) {
    bad(`unknown unix selector ${JSON.stringify(key)} (expected one of ${UNIX_SELECTOR_KEYS.join(', ')})`);
  }
  if (j < 0 || v.length === 0) bad(`unix:${key} needs a value, e.g. unix:${key}:${exampleFor(key)}`);
  switch (key as UnixSelectorKey) {
    case 'uid':
    case 'gid':
    case 'supplementary_gid':
      if (!NUMERIC_RE.test(v) || Number(v) > 0xffffffff) bad(`${key} must be a decimal id between 0 and 4294967295`);
      break;
    case 'user':
    case 'group':
    case 'supplementary_group':
      if (v.length > 256 || !NAME_RE.test(v)) bad(`${key} must be an account name (letters, digits, . _ -)`);
      break;
    case 'path':
      if (!v.startsWith('/')) bad('path must be absolute');
      if (v.split('/').some((seg, idx) => seg === '.' || seg === '..' || (seg === '' && idx > 0))) {
        bad('path must be normalised (no //, . or .. segments, no trailing /)');
      }
      break;
    case 'sha256':
      if (!SHA256_RE.test(v)) bad('sha256 must be 64 lowercase hexadecimal digits');
      break;
  }
}

function exampleFor(key: string): string {
  if (key === 'path') return '/usr/bin/app';
  if (key === 'sha256') return '<64 hex digits>';
  if (key.endsWith('gid') || key === 'uid') return '1000';
  return 'name';
}

/**
 * The canonical text of a selector, `type:value`.
 *
 * @example
 * ```ts
 * formatSelector({ type: 'unix', value: 'uid:0' }); // 'unix:uid:0'
 * ```
 */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/**
 * True when an entry applies to a caller: ALL of the entry's selectors are among the caller's.
 * An entry with no selectors matches nobody (fail closed: it would otherwise match every process).
 *
 * @example
 * ```ts
 * entryMatches([parseSelector('unix:uid:1000')], await attestUnix(peer)); // true for uid 1000
 * ```
 */
export function entryMatches(
  entrySelectors: readonly Selector[],
  callerSelectors: readonly Selector[] | ReadonlySet<string>,
): boolean {
  if (entrySelectors.length === 0) return false;
  const have =
    callerSelectors instanceof Set
      ? (callerSelectors as ReadonlySet<string>)
      : new Set((callerSelectors as readonly Selector[]).map(formatSelector));
  return entrySelectors.every((s) => have.has(formatSelector(s)));
}

// ---------------------------------------------------------------------------------------------
// /proc, /etc/passwd, /etc/group

export interface UnixAttestorOptions {
  /** Default `/proc`. */
  procRoot?: string;
  /** Default `/etc/passwd`. */
  passwdPath?: string;
  /** Default `/etc/group`. */
  groupPath?: string;
  /** Maximum binaries whose hash is cached; default 1024. */
  hashCacheSize?: number;
}

interface NameTable {
  mtimeMs: number;
  size: number;
  byId: Map<number, string>;
}

/**
 * Attests local processes. One instance per agent: it caches binary hashes by
 * (device, inode, mtime, size) and the passwd/group tables by file mtime.
 *
 * @example
 * ```ts
 * const attestor = new UnixAttestor();
 * const selectors = await attestor.attest(peerCredentials(socket));
 * selectors.map(formatSelector); // ['unix:uid:1000', 'unix:user:alice', 'unix:path:/usr/bin/node', …]
 * ```
 */
export class UnixAttestor {
  private readonly proc: string;
  private readonly passwdPath: string;
  private readonly groupPath: string;
  private readonly hashCacheSize: number;
  private readonly hashes = new Map<string, string>();
  private passwd: NameTable | undefined;
  private groups: NameTable | undefined;

  constructor(opts: UnixAttestorOptions = {}) {
    this.proc = opts.procRoot ?? '/proc';
    this.passwdPath = opts.passwdPath ?? '/etc/passwd';
    this.groupPath = opts.groupPath ?? '/etc/group';
    this.hashCacheSize = opts.hashCacheSize ?? 1024;
  }

  /**
   * The selectors of the process behind `peer`.
   *
   * @throws {AttestationError} when the process is gone, its pid was reused, or /proc is unreadable
   */
  async attest(peer: PeerCredentials): Promise<Selector[]> {
    const { pid, uid, gid } = peer;
    if (!Number.isSafeInteger(pid) || pid <= 0) {
      throw new AttestationError('ERR_ATTEST_PROCESS_GONE', `invalid pid ${pid}`);
    }
    const dir = `${this.proc}/${pid}`;
    // /proc files are generated in memory by the kernel: synchronous reads take microseconds and
    // skip the libuv thread pool round trips (which dominated the Workload API's per-call latency).
    const start1 = this.startTime(dir, pid);
    const exe = this.readProc(pid, () => readlinkSync(`${dir}/exe`));
    const status = this.readProc(pid, () => readFileSync(`${dir}/status`, 'utf8'));
    const digest = await this.hashExecutable(pid, `${dir}/exe`);
    const ids = parseStatusIds(status);
    // SO_PEERCRED records the effective uid at connect(); a process still holding it among its
    // uids is the same process (or one with the same rights), a stranger reusing the pid is not.
    if (!ids.uids.includes(uid)) {
      throw new AttestationError(
        'ERR_ATTEST_UID_MISMATCH',
        `pid ${pid} no longer runs as uid ${uid} (pid reused or credentials changed)`,
      );
    }
    const start2 = this.startTime(dir, pid);
    if (start1 !== start2) {
      throw new AttestationError('ERR_ATTEST_PID_REUSED', `pid ${pid} was reused while it was being attested`);
    }
    const users = this.table('passwd');
    const groups = this.table('group');
    const out: Selector[] = [];
    const add = (key: UnixSelectorKey, v: string | number) => out.push({ type: 'unix', value: `${key}:${v}` });
    add('uid', uid);
    const user = users.byId.get(uid);
    if (user !== undefined) add('user', user);
    add('gid', gid);
    const group = groups.byId.get(gid);
    if (group !== undefined) add('group', group);
    for (const g of ids.groups) {
      add('supplementary_gid', g);
      const n = groups.byId.get(g);
      if (n !== undefined) add('supplementary_group', n);
    }
    // A deleted binary shows as "<path> (deleted)": that path no longer names what runs, so omit it.
    if (!exe.endsWith(' (deleted)')) add('path', exe);
    add('sha256', digest);
    return out;
  }

  private readProc<T>(pid: number, f: () => T): T {
    try {
      return f();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH') {
        throw new AttestationError('ERR_ATTEST_PROCESS_GONE', `process ${pid} has exited`);
      }
      throw new AttestationError('ERR_ATTEST_PROC_UNREADABLE', `cannot read /proc for pid ${pid}: ${code ?? e}`);
    }
  }

  private startTime(dir: string, pid: number): string {
    const stat = this.readProc(pid, () => readFileSync(`${dir}/stat`, 'utf8'));
    const t = parseStartTime(stat);
    if (t === undefined) throw new AttestationError('ERR_ATTEST_PROC_UNREADABLE', `malformed /proc/${pid}/stat`);
    return t;
  }

  /** SHA-256 of the running binary, read through /proc/<pid>/exe so that it is the inode that runs. */
  private async hashExecutable(pid: number, exePath: string): Promise<string> {
    const fd = this.readProc(pid, () => openSync(exePath, 'r'));
    try {
      const st = fstatSync(fd, { bigint: true });
      const key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
      const hit = this.hashes.get(key);
      if (hit !== undefined) return hit;
    } finally {
      closeSync(fd);
    }
    // Cache miss: hash asynchronously (binaries are large), then re-check that the file is the
    // same inode and version that was hashed.
    const fh = await this.readProc(pid, () => open(exePath, 'r'));
    try {
      const st = await fh.stat({ bigint: true });
      const key2 = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
      const h = createHash('sha256');
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
      }
      const after = await fh.stat({ bigint: true });
      const hex = h.digest('hex');
      if (`${after.dev}:${after.ino}:${after.mtimeNs}:${after.size}` !== key2) {
        throw new AttestationError(
          'ERR_ATTEST_PROC_UNREADABLE',
          `the binary of pid ${pid} changed while it was hashed`,
        );
      }
      if (this.hashes.size >= this.hashCacheSize) {
        const oldest = this.hashes.keys().next();
        if (!oldest.done) this.hashes.delete(oldest.value);
      }
      this.hashes.set(key2, hex);
      return hex;
    } catch (e) {
      if (e instanceof AttestationError) throw e;
      throw new AttestationError(
        'ERR_ATTEST_PROC_UNREADABLE',
        `cannot hash the binary of pid ${pid}: ${(e as Error).message}`,
      );
    } finally {
      await fh.close();
    }
  }

  private table(which: 'passwd' | 'group'): NameTable {
    const path = which === 'passwd' ? this.passwdPath : this.groupPath;
    const cached = which === 'passwd' ? this.passwd : this.groups;
    let st: { mtimeMs: number; size: number };
    try {
      st = statSync(path);
    } catch {
      return { mtimeMs: 0, size: 0, byId: new Map() };
    }
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached;
    const t: NameTable = { mtimeMs: st.mtimeMs, size: st.size, byId: parseNameFile(readFileSync(path, 'utf8')) };
    if (which === 'passwd') this.passwd = t;
    else this.groups = t;
    return t;
  }
}

/**
 * `/etc/passwd` or `/etc/group`: `name:x:id:…` lines → id → name (the first name wins, as getpwuid).
 *
 * @example
 * ```ts
 * parseNameFile('root:x:0:0:root:/root:/bin/bash\n').get(0); // 'root'
 * ```
 */
export function parseNameFile(text: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    const name = f[0];
    const id = f[2];
    if (name === undefined || id === undefined || !NUMERIC_RE.test(id) || !NAME_RE.test(name)) continue;
    const n = Number(id);
    if (!m.has(n)) m.set(n, name);
  }
  return m;
}

/** Field 22 (starttime) of /proc/<pid>/stat; `comm` (field 2) may hold spaces and parentheses. */
export function parseStartTime(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state), so field 22 is rest[19].
  const v = rest[19];
  return v !== undefined && /^[0-9]+$/.test(v) ? v : undefined;
}

/** `Uid:` (real, effective, saved, fs) and `Groups:` of /proc/<pid>/status. */
export function parseStatusIds(status: string): { uids: number[]; groups: number[] } {
  let uids: number[] = [];
  let groups: number[] = [];
  for (const line of status.split('\n')) {
    if (line.startsWith('Uid:')) uids = numbers(line.slice(4));
    else if (line.startsWith('Groups:')) groups = numbers(line.slice(7));
  }
  return { uids, groups };
}

function numbers(s: string): number[] {
  return s
    .trim()
    .split(/\s+/)
    .filter((x) => NUMERIC_RE.test(x))
    .map(Number);
}
