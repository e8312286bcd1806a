/**
 * What the proxy benchmarks (sidecar, access proxy) share: child processes started and awaited on a
 * ready line, a bare Node app to proxy to, CPU time per process from /proc, and a fixed-rate load.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Children of this benchmark; killed when it exits, so a failed run leaves nothing behind. */
export const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Starts `node ARGS` and resolves with the first group of `ready` once its output matches. */
export function spawnReady(args: string[], ready: RegExp): Promise<string> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d: Buffer) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        // Stop collecting: proxies log every decision, and the bench must not pay for keeping it.
        child.stdout?.off('data', on);
        child.stderr?.off('data', on);
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(m[1] ?? '');
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}

/** A bare Node HTTP app on a loopback port (`{"ok":true}` to everything), in a process of its own. */
export async function startBareApp(): Promise<number> {
  return Number(
    await spawnReady(
      [
        '-e',
        `const s=require('node:http').createServer((q,r)=>{q.resume();q.on('end',()=>{r.writeHead(200,{'content-type':'application/json','content-length':11});r.end('{"ok":true}')})});s.keepAliveTimeout=60000;s.listen(0,'127.0.0.1',()=>console.log('PORT',s.address().port))`,
      ],
      /PORT (\d+)/,
    ),
  );
}

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/**
 * CPU time (user + system) of a process and its children, in µs: how much work each proxy does per
 * request, a figure that load from other processes on the machine disturbs far less than latency.
 */
export function cpuUs(pid: number): number {
  const one = (p: string) => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return (Number(f[11]) + Number(f[12])) * TICK_US; // utime, stime (fields 14 and 15)
    } catch {
      return 0;
    }
  };
  let kids: string[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {}
  return one(String(pid)) + kids.reduce((a, k) => a + one(k), 0);
}

/** One request a millisecond for `seconds`, each one's latency (µs) pushed to `lat`. */
export async function fixedRate(fn: () => Promise<void>, seconds: number, lat: number[]): Promise<void> {
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = start + n;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    inflight.push(fn().then(() => void lat.push((performance.now() - t0) * 1000)));
    n++;
  }
  await Promise.all(inflight);
}

export const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
