/**
 * A real server (every plugin `nevertrust server` runs, in this process, on ephemeral ports) and a
 * real node agent attested with a join token, for the service-side tests of issue #23.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { createCsr, csrToPem, generatePrivateKey } from '../../src/ca/index.js';
import { serverPlugins } from '../../src/cli/server-plugins.js';
import { configSchema } from '../../src/config/index.js';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { createLogger } from '../../src/util/logger.js';
import { sharedTempDir } from '../agent/peer.js';
import { tempDir } from '../support/tmp.js';

export const TD = 'example.org';
export const UID = process.getuid?.() ?? 0;

export interface Mesh {
  server: RunningServer;
  dataDir: string;
  agentUrl: string;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  /** `POST /v1/admin/revoke {svid}`: revokes an SVID by serial, as `nevertrust revoke svid` does. */
  revokeSvid(serial: string): Promise<void>;
  /** An X.509-SVID minted by the server's CA for a key made here (`POST /v1/admin/x509/sign`). */
  mint(
    spiffeId: string,
  ): Promise<{ spiffeId: string; certChainPem: string; privateKeyPem: string; bundlePem: string; serial: string }>;
  close(): Promise<void>;
}

export async function startMesh(): Promise<Mesh> {
  const dataDir = tempDir();
  const config = configSchema.parse({ data_dir: dataDir, server: { port: 0, agent_port: 0 }, log_level: 'warn' });
  const server = await startServer({ config, logger: createLogger('silent'), plugins: serverPlugins(config) });
  const where = server.endpoints.find((e) => e.label === 'agent port')?.where ?? '';
  const agentUrl = where.split(/\s+/)[0] ?? '';
  const api = async (method: string, path: string, body?: unknown) => {
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  return {
    server,
    dataDir,
    agentUrl,
    api,
    async revokeSvid(serial) {
      const r = await api('POST', '/v1/admin/revoke', { svid: serial, reason: 'key leaked' });
      if (r.status >= 300) throw new Error(`revoke: ${r.status} ${JSON.stringify(r.body)}`);
    },
    async mint(spiffeId) {
      const key = generatePrivateKey('ec-p256');
      const r = await api('POST', '/v1/admin/x509/sign', { csr: csrToPem(createCsr(key)), spiffe_id: spiffeId });
      if (r.status !== 200) throw new Error(`mint: ${r.status} ${JSON.stringify(r.body)}`);
      return {
        spiffeId,
        certChainPem: String(r.body.chain_pem),
        privateKeyPem: key.export({ format: 'pem', type: 'pkcs8' }) as string,
        bundlePem: String(r.body.bundle_pem),
        serial: String(r.body.serial),
      };
    },
    close: () => server.close(),
  };
}

/** A node agent attested with a fresh join token; returns it with its SPIFFE ID. */
export async function startAgent(mesh: Mesh, opts: { crlRefreshMs?: number } = {}): Promise<NodeAgent> {
  const { body } = await mesh.api('POST', '/v1/admin/join-tokens', {});
  const bundle = await fetch(`${mesh.server.url}/v1/bundle?format=pem`).then((r) => r.text());
  const dir = join(sharedTempDir(), `agent-${String(body.token).slice(0, 8)}`);
  const agent = new NodeAgent({
    serverUrl: mesh.agentUrl,
    trustDomain: TD,
    trustBundlePem: bundle,
    joinToken: String(body.token),
    dir,
    socketPath: join(sharedTempDir(), `a-${String(body.token).slice(0, 8)}.sock`),
    logger: createLogger('silent'),
    crlRefreshMs: opts.crlRefreshMs,
  });
  await agent.start();
  return agent;
}

export async function until<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
