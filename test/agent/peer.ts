/** Test helpers: a Unix socket server and child processes that connect to it. */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../support/tmp.js';

/** A directory every uid can enter (tests spawn children as nobody). */
export function sharedTempDir(): string {
  const dir = tempDir('nevertrust-agent-');
  chmodSync(dir, 0o755);
  return dir;
}

/** A Unix socket server reachable by any uid; resolves each accepted socket through `next()`. */
export async function socketServer(
  dir: string,
): Promise<{ path: string; server: Server; next: () => Promise<Socket> }> {
  const path = join(dir, `s-${Math.random().toString(36).slice(2)}.sock`);
  const waiting: ((s: Socket) => void)[] = [];
  const queued: Socket[] = [];
  const server = createServer((s) => {
    const w = waiting.shift();
    if (w) w(s);
    else queued.push(s);
  });
  await new Promise<void>((r) => server.listen(path, r));
  chmodSync(path, 0o777);
  return {
    path,
    server,
    next: () => {
      const q = queued.shift();
      return q ? Promise.resolve(q) : new Promise<Socket>((r) => waiting.push(r));
    },
  };
}

/** Like {@link connectingChild}, started through setpriv with supplementary groups. */
export function connectingChildWithGroups(path: string, uid: number, gid: number, groups: number[]): ChildProcess {
  const script = `const s=require('net').connect(${JSON.stringify(path)});s.on('error',e=>{console.error(e);process.exit(3)});setInterval(()=>{},1000);`;
  return spawn(
    'setpriv',
    [`--reuid=${uid}`, `--regid=${gid}`, `--groups=${groups.join(',')}`, '--', process.execPath, '-e', script],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
}

/** A node child that connects to `path` and stays until killed. */
export function connectingChild(path: string, ids?: { uid: number; gid: number }): ChildProcess {
  const script = `const s=require('net').connect(${JSON.stringify(path)});s.on('error',e=>{console.error(e);process.exit(3)});setInterval(()=>{},1000);`;
  return spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit'], ...(ids ?? {}) });
}
