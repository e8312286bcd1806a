/**
 * The node agent follows the server's signal stream (issue #23): a real server and a real agent; an
 * SVID revoked through `POST /v1/admin/revoke` is refused by the agent's decision listener within a
 * second, naming the signal, and the Workload API's CRL carries it within a second (not at the next
 * 5 s refresh).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeAgent } from '../../src/agent/node-agent.js';
import { certificatesToPem } from '../../src/ca/index.js';
import { loadPolicies } from '../../src/policy/index.js';
import { type RunningDecisionListener, startDecisionListener } from '../../src/server/decision-listener.js';
import type { ServerEvent } from '../../src/server/index.js';
import { createLogger } from '../../src/util/logger.js';
import { rawClient, workloadMetadata } from '../agent/raw-client.js';
import { type Mesh, startAgent, startMesh, TD, UID, until } from './mesh-fixtures.js';

const POLICIES = fileURLToPath(new URL('../pep/fixtures/policies', import.meta.url));
const GATEWAY = `spiffe://${TD}/ns/payments/sa/api-gateway`;

interface X509Resp {
  svids: { spiffe_id: string; x509_svid: Buffer }[];
  crl: Buffer[];
}

const splitDer = (buf: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    const l = buf[i + 1] as number;
    const [len, hdr] = l < 0x80 ? [l, 2] : [buf.readUIntBE(i + 2, l & 0x7f), 2 + (l & 0x7f)];
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
};

/** nginx's auth_request as nginx sends it: the caller's certificate in X-Client-Cert. */
const nginxCheck = (url: string, chainPem: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const req = request(`${url}/v1/authz/nginx`, {
      headers: {
        'x-client-cert': encodeURIComponent(chainPem),
        'x-nevertrust-target': `spiffe://${TD}/ns/payments/sa/payment-service`,
        'x-original-method': 'POST',
        'x-original-uri': '/v1/charges',
      },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });

describe('the agent follows signals', { timeout: 60_000 }, () => {
  let mesh: Mesh | undefined;
  let agent: NodeAgent | undefined;
  let decisions: RunningDecisionListener | undefined;
  afterAll(async () => {
    await decisions?.close();
    await agent?.stop();
    await mesh?.close();
  });

  it('a revoked SVID is denied by its decision listener, and is in the Workload API CRL, within a second', async () => {
    mesh = await startMesh();
    agent = await startAgent(mesh); // the default 5 s CRL refresh
    const a = agent;
    const events: ServerEvent[] = [];
    const snapshot = loadPolicies(POLICIES);
    decisions = await startDecisionListener({
      host: '127.0.0.1',
      port: 0,
      trustDomain: TD,
      policy: { current: () => snapshot },
      bundles: () => a.trustBundle(),
      revocations: a.revocations,
      record: (e) => events.push(e),
      logger: createLogger('silent'),
    });
    const url = decisions.url;

    // The workload's SVID, issued by the agent, is the caller; another SVID of the same ID is not revoked.
    const created = await mesh.api('POST', '/v1/admin/entries', {
      spiffe_id: GATEWAY,
      parent_id: a.id,
      selectors: [`unix:uid:${UID}`],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const client = rawClient(`unix://${(a as unknown as { opts: { socketPath: string } }).opts.socketPath}`);
    const stream = client.FetchX509SVID({}, workloadMetadata());
    const seen: X509Resp[] = [];
    stream.on('data', (m: X509Resp) => seen.push(m));
    stream.on('error', () => {});
    const first = await until(() => seen.find((m) => m.svids.length > 0 && m.crl.length > 0), 'an SVID and a CRL');
    const der = splitDer(first.svids[0]?.x509_svid as Buffer);
    const chainPem = certificatesToPem(der);
    const serial = new X509Certificate(der[0] as Buffer).serialNumber.toLowerCase();
    const other = await mesh.mint(GATEWAY);
    await until(
      () => (a as unknown as { signals?: { connected(): boolean } }).signals?.connected(),
      'the signal stream',
    );

    expect(await nginxCheck(url, chainPem)).toBe(200);
    const crlHas = (m: X509Resp) =>
      m.crl.some((c) =>
        execFileSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: c })
          .toString()
          .toLowerCase()
          .includes(serial.replace(/^0+/, '')),
      );
    expect(seen.some(crlHas)).toBe(false);

    const t0 = Date.now();
    await mesh.revokeSvid(serial);
    await until(async () => (await nginxCheck(url, chainPem)) === 403, 'the refusal of the revoked SVID', 1000);
    const refusedMs = Date.now() - t0;
    expect(events.at(-1)).toMatchObject({
      outcome: 'deny',
      source: { spiffe_id: GATEWAY },
      reason: expect.stringMatching(/^revoked: svid\.revoked \(seq \d+\) of svid [0-9a-f]+: key leaked$/),
    });
    await until(() => seen.find(crlHas), 'the CRL with the serial through the Workload API', 1000);
    const crlMs = Date.now() - t0;
    process.stderr.write(`revoked SVID refused after ${refusedMs} ms; in the Workload API CRL after ${crlMs} ms\n`);

    // Only that serial: another SVID of the same ID is still decided by the policy.
    expect(await nginxCheck(url, other.certChainPem)).toBe(200);
    expect(events.at(-1)).toMatchObject({ outcome: 'allow', source: { spiffe_id: GATEWAY } });
    stream.cancel();
    client.close();

    // The entry deleted: an SVID of its ID issued before is refused, naming that signal.
    const entryId = String(created.body.id);
    const deleted = await mesh.api('DELETE', `/v1/admin/entries/${encodeURIComponent(entryId)}`);
    expect(deleted.status, JSON.stringify(deleted.body)).toBeLessThan(300);
    await until(
      async () => (await nginxCheck(url, other.certChainPem)) === 403,
      'the refusal after the deletion',
      1000,
    );
    expect(events.at(-1)).toMatchObject({
      outcome: 'deny',
      source: { spiffe_id: GATEWAY },
      reason: expect.stringMatching(new RegExp(`^revoked: workload\\.entry-deleted \\(seq \\d+\\) of ${GATEWAY}: `)),
    });
  });
});
