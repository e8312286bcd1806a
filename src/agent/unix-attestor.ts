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
import { NAME_RE, NUMERIC_RE, type Selector, type UnixSelectorKey } from '../registration/selector.js';
import { NevertrustError } from '../errors.js';

export type AttestationErrorCode =
  | 'ERR_ATTEST_PROCESS_GONE'
  | 'ERR_ATTEST_PID_REUSED'
  | 'ERR_ATTEST_UID_MISMATCH'
  | 'ERR_ATTEST_PROC_UNREADABLE';

/** Thrown when a caller cannot be attested; the Workload API denies the call. */
export class AttestationError extends NevertrustError<AttestationErrorCode> {
  override readonly name = 'AttestationError';
  constructor(
    readonly code: AttestationErrorCode,
    message: string,
  ) {
    // An unreadable /proc is ours; a caller that cannot be attested is refused.
    super(message, { status: code === 'ERR_ATTEST_PROC_UNREADABLE' ? 500 : 403 });
  }
}

// Selectors are a registration concept shared with the server: one grammar, in src/registration.
export {
  entryMatches,
  formatSelector,
  type ParseSelectorOptions,
  parseSelector,
  type Selector,
  SelectorError,
  type SelectorErrorCode,
  UNIX_SELECTOR_KEYS,
  type UnixSelectorKey,
} from '../registration/selector.js';

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
