/**
 * What the node agent keeps on disk so that a restart while the server is down still serves the
 * workloads of this node: the registration entries it last synced, each workload's X.509-SVID with
 * its private key (generated here; keys never leave the node), and the last policy snapshot the
 * server streamed. The agent's own SVID and the trust bundle have files of their own.
 *
 * One file, `<agent dir>/cache.json` (0600, in a 0700 directory), written whole, atomically (temp
 * file, fsync, rename), so a reader sees the previous state or the next one, never a mix.
 *
 * Loading fails closed: a file that does not parse, does not match the schema, belongs to another
 * agent identity, holds a key that does not match its certificate or a chain that does not verify
 * against the bundle is ignored as a whole (the agent then serves nothing until the server
 * answers). SVIDs that have expired are dropped (never served); SVIDs whose entry is gone or names
 * another SPIFFE ID are dropped too.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { type EntryView, entryViewSchema } from '../api/entries.js';
import { spiffeIdFromCertificate, type TrustBundle, verifyX509Svid } from '../spiffe/index.js';

const FORMAT = 'nevertrust-agent-cache/1';

const cacheFileSchema = z.strictObject({
  format: z.literal(FORMAT),
  agent_id: z.string(),
  written_at: z.string(),
  entries: z.array(entryViewSchema),
  svids: z.array(
    z.strictObject({
      entry_id: z.string().min(1),
      revision: z.number(),
      /** DER certificates, leaf first, each base64. */
      chain: z.array(z.base64()).min(1).max(16),
      /** PKCS#8 DER, base64. */
      key: z.base64(),
    }),
  ),
  /** The policy message as the server sent it (`{version, policies, options}`), null for none. */
  policy: z.unknown(),
});

/** One workload SVID with its key, as the agent holds it. */
export interface CachedSvid {
  entryId: string;
  revision: number;
  chain: Buffer[];
  key: KeyObject;
  pkcs8: Buffer;
  notBefore: number;
  notAfter: number;
}

export interface AgentCacheState {
  agentId: string;
  entries: readonly EntryView[];
  svids: Iterable<Pick<CachedSvid, 'entryId' | 'revision' | 'chain' | 'pkcs8'>>;
  /** The server's policy message, or null when there is none. */
  policy: unknown;
}

export type AgentCacheLoad =
  | { kind: 'missing' }
  | { kind: 'corrupt'; reason: string }
  | {
      kind: 'loaded';
      entries: EntryView[];
      /** Still valid, verified against the bundle. */
      svids: CachedSvid[];
      /** Dropped because they had expired. */
      expired: number;
      /** Dropped because their entry is gone or names another SPIFFE ID. */
      stale: number;
      policy: unknown;
    };

/** The cache file in an agent directory. */
export function agentCachePath(dir: string): string {
  return join(dir, 'cache.json');
}

/**
 * Writes `data` to `file` with mode 0600 atomically: a fresh temp file beside it, fsync, rename.
 * A crash leaves the old file or the new one, never half of one.
 *
 * @example
 * ```ts
 * writePrivateFile(join(dir, 'agent-svid.key'), keyPem);
 * ```
 */
export function writePrivateFile(file: string, data: string | Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  // 'wx': never reuse a file someone else created (it could have another mode or owner).
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** Writes the whole cache (see the module comment). */
export function saveAgentCache(dir: string, state: AgentCacheState): void {
  const svids = [...state.svids].map((s) => ({
    entry_id: s.entryId,
    revision: s.revision,
    chain: s.chain.map((d) => d.toString('base64')),
    key: s.pkcs8.toString('base64'),
  }));
  const file: z.input<typeof cacheFileSchema> = {
    format: FORMAT,
    agent_id: state.agentId,
    written_at: new Date().toISOString(),
    entries: [...state.entries],
    svids,
    policy: state.policy ?? null,
  };
  writePrivateFile(agentCachePath(dir), JSON.stringify(file));
}

/** Removes the cache (a revoked agent must not serve it after a restart). */
export function removeAgentCache(dir: string): void {
  rmSync(agentCachePath(dir), { force: true });
}

/**
 * Reads the cache of `agentId`, checking every SVID against `bundle` at `now` (ms since the epoch).
 * Never throws: a broken file is `{ kind: 'corrupt', reason }`.
 */
export function loadAgentCache(dir: string, agentId: string, bundle: TrustBundle, now = Date.now()): AgentCacheLoad {
  const path = agentCachePath(dir);
  if (!existsSync(path)) return { kind: 'missing' };
  let parsed: z.output<typeof cacheFileSchema>;
  try {
    const r = cacheFileSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!r.success) {
      const issue = r.error.issues[0];
      return { kind: 'corrupt', reason: `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}` };
    }
    parsed = r.data;
  } catch (e) {
    return { kind: 'corrupt', reason: (e as Error).message };
  }
  if (parsed.agent_id !== agentId) {
    return { kind: 'corrupt', reason: `written by agent ${parsed.agent_id}, this agent is ${agentId}` };
  }
  const entries = new Map(parsed.entries.map((e) => [e.id, e]));
  const svids: CachedSvid[] = [];
  let expired = 0;
  let stale = 0;
  for (const s of parsed.svids) {
    const where = `svid of entry ${s.entry_id}`;
    try {
      const chain = s.chain.map((c) => Buffer.from(c, 'base64'));
      const leaf = new X509Certificate(chain[0] as Buffer);
      const notBefore = Date.parse(leaf.validFrom);
      const notAfter = Date.parse(leaf.validTo);
      if (notAfter <= now) {
        expired++;
        continue;
      }
      const entry = entries.get(s.entry_id);
      if (!entry || spiffeIdFromCertificate(leaf).toString() !== entry.spiffe_id) {
        stale++;
        continue;
      }
      verifyX509Svid(chain, bundle, { now: new Date(now) });
      const pkcs8 = Buffer.from(s.key, 'base64');
      const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      if (!leaf.checkPrivateKey(key))
        return { kind: 'corrupt', reason: `${where}: the key does not match the certificate` };
      svids.push({ entryId: s.entry_id, revision: s.revision, chain, key, pkcs8, notBefore, notAfter });
    } catch (e) {
      return { kind: 'corrupt', reason: `${where}: ${(e as Error).message}` };
    }
  }
  return { kind: 'loaded', entries: parsed.entries, svids, expired, stale, policy: parsed.policy ?? null };
}
