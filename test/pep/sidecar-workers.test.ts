/**
 * `workers: 2`: two sidecar processes behind one port (node:cluster). Connections are spread over
 * both, each decides and logs, a killed worker is replaced while the other keeps serving, SIGTERM
 * stops the whole group, and a worker that cannot start (its SVID file is missing) fails the start
 * instead of being restarted forever.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatesToPem } from '../../src/ca/index.js';
import { freePort } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { spawnSidecar } from './sidecar-process.js';
import { id, makePki, type Pki, type Svid, ingressPolicyDir } from './pki.js';

const dir = tempDir();
let pki: Pki;
let app: Server;
let gateway: Svid;
const children: ChildProcess[] = [];

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port,
      path: '/v1/charges',
      method: 'GET',
      servername: 'localhost',
      cert: gateway.certChainPem,
      key: gateway.privateKeyPem,
      ca: pki.bundle().toPem(),
      agent: false, // a new connection each time, so the cluster spreads them
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let svidFiles: { cert: string; key: string; bundle: string };
let policies: string;

beforeAll(async () => {
  pki = await makePki(dir);
  gateway = pki.mint('api-gateway');
  policies = ingressPolicyDir(dir, 'payment-service', [
    { name: 'gateway-reads', from: ['api-gateway'], methods: ['GET'], paths: ['/v1/charges'] },
  ]);
  app = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const ps = pki.ca.mintX509Svid({ spiffeId: id('payment-service'), dnsNames: ['localhost'] });
  const files = pki.files(dir, 'ps', {
    spiffeId: id('payment-service'),
    certChainPem: certificatesToPem(ps.chain),
    privateKeyPem: ps.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  });
  svidFiles = { ...files, bundle: pki.bundleFile(dir) };
}, 60_000);

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  app?.close();
});

describe('sidecar workers', () => {
  it('spreads connections over two workers, replaces a killed one, and stops as a group', async () => {
    const port = await freePort();
    const config = join(dir, 'two.yaml');
    const appPort = (app.address() as AddressInfo).port;
    writeFileSync(
      config,
      `workers: 2\nsvid: { cert: ${svidFiles.cert}, key: ${svidFiles.key}, bundle: ${svidFiles.bundle} }\npolicies: ${policies}\ninbound:\n  listen: 127.0.0.1:${port}\n  app: 127.0.0.1:${appPort}\n`,
    );
    const sc = spawnSidecar(config);
    children.push(sc.child);
    await sc.ready;
    expect(sc.lines.find((l) => l.msg === 'sidecar ready')?.workers).toBe(2);
    const workerPids = () =>
      new Map(sc.lines.filter((l) => l.msg === 'sidecar worker ready').map((l) => [l.worker, l.pid as number]));
    for (let i = 0; i < 50 && workerPids().size < 2; i++) await sleep(100);
    expect([...workerPids().keys()].sort()).toEqual([0, 1]);

    for (let i = 0; i < 30; i++) expect(await get(port)).toBe(200);
    await sleep(600); // decision lines are flushed at least every 250 ms
    const deciders = new Set(sc.lines.filter((l) => l.msg === 'access decision').map((l) => l.worker));
    expect([...deciders].sort()).toEqual([0, 1]);

    const first = workerPids().get(0) as number;
    process.kill(first, 'SIGKILL');
    const noticed = () => sc.lines.some((l) => l.msg === 'sidecar worker exited; starting another');
    for (let i = 0; i < 50 && !noticed(); i++) await sleep(100);
    expect(noticed()).toBe(true);
    // the other worker keeps serving while the first is replaced
    for (let i = 0; i < 5; i++) expect(await get(port)).toBe(200);
    for (let i = 0; i < 100 && workerPids().get(0) === first; i++) await sleep(100);
    const replacement = workerPids().get(0) as number;
    expect(replacement).not.toBe(first);
    expect(alive(replacement)).toBe(true);
    for (let i = 0; i < 10; i++) expect(await get(port)).toBe(200);

    const pids = [...workerPids().values()];
    sc.child.kill('SIGTERM');
    expect(await sc.exited).toBe(0);
    for (let i = 0; i < 50 && pids.some(alive); i++) await sleep(100);
    expect(pids.filter(alive)).toEqual([]);
  }, 90_000);

  it('fails the start when a worker cannot start, instead of restarting it forever', async () => {
    const config = join(dir, 'broken.yaml');
    writeFileSync(
      config,
      `workers: 2\nsvid: { cert: ${join(dir, 'missing.crt')}, key: ${svidFiles.key}, bundle: ${svidFiles.bundle} }\npolicies: ${policies}\ninbound:\n  listen: 127.0.0.1:${await freePort()}\n  app: 127.0.0.1:1\n`,
    );
    const sc = spawnSidecar(config);
    children.push(sc.child);
    const code = await Promise.race([sc.exited, sleep(40_000).then(() => 'still running')]);
    expect(code).not.toBe('still running');
    expect(code).not.toBe(0);
    expect(sc.lines.some((l) => l.msg === 'sidecar worker failed to start; stopping')).toBe(true);
  }, 60_000);
});
