/**
 * The agent's cache on disk with real SVIDs from a real CA: what is served after a load, and every
 * way a cache file is refused as a whole.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { agentCachePath, loadAgentCache, removeAgentCache, saveAgentCache } from '../../src/agent/agent-cache.js';
import type { EntryView } from '../../src/api/entries.js';
import { newCa, TD } from './fixtures.js';
import { sharedTempDir } from './peer.js';

const AGENT = `spiffe://${TD}/spire/agent/join_token/t1`;
const entry = (id: string, path: string): EntryView => ({
  id,
  spiffe_id: `spiffe://${TD}/${path}`,
  selectors: ['unix:uid:0'],
  x509_svid_ttl: 3600,
  jwt_svid_ttl: 300,
  hint: '',
  revision: 1,
});

async function fixture() {
  const ca = await newCa();
  const svid = (e: EntryView, ttlSeconds = 3600) => {
    const m = ca.mintX509Svid({ spiffeId: e.spiffe_id, ttlSeconds });
    return {
      entryId: e.id,
      revision: e.revision,
      chain: m.chain.map((c) => Buffer.from(c)),
      pkcs8: m.privateKey.export({ format: 'der', type: 'pkcs8' }),
    };
  };
  return { ca, svid, dir: sharedTempDir() };
}

describe('agent cache', () => {
  it('round trip: valid SVIDs with their keys, the entries and the policy; written 0600, no temp file left', async () => {
    const { ca, svid, dir } = await fixture();
    const a = entry('a', 'svc-a');
    const policy = { version: 'v1', policies: [], options: {} };
    saveAgentCache(dir, { agentId: AGENT, entries: [a], svids: [svid(a)], policy });
    expect(statSync(agentCachePath(dir)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const r = loadAgentCache(dir, AGENT, ca.bundle());
    expect(r.kind).toBe('loaded');
    if (r.kind !== 'loaded') return;
    expect(r.entries).toEqual([a]);
    expect(r.policy).toEqual(policy);
    expect(r.svids).toHaveLength(1);
    expect(r.svids[0]?.notAfter).toBeGreaterThan(Date.now());
    removeAgentCache(dir);
    expect(loadAgentCache(dir, AGENT, ca.bundle()).kind).toBe('missing');
  });

  it('an expired SVID, or one whose entry is gone or names another SPIFFE ID, is not served', async () => {
    const { ca, svid, dir } = await fixture();
    const a = entry('a', 'svc-a');
    const b = entry('b', 'svc-b');
    const short = svid(b, 1);
    const gone = svid(entry('c', 'svc-c'));
    const renamed = { ...svid(a), entryId: 'b' };
    saveAgentCache(dir, { agentId: AGENT, entries: [a, b], svids: [svid(a), short, gone], policy: null });
    await new Promise((r) => setTimeout(r, 1100));
    const r = loadAgentCache(dir, AGENT, ca.bundle());
    expect(r).toMatchObject({ kind: 'loaded', expired: 1, stale: 1 });
    if (r.kind === 'loaded') expect(r.svids.map((s) => s.entryId)).toEqual(['a']);
    saveAgentCache(dir, { agentId: AGENT, entries: [a, b], svids: [renamed], policy: null });
    expect(loadAgentCache(dir, AGENT, ca.bundle())).toMatchObject({ kind: 'loaded', svids: [], stale: 1 });
  });

  it('refuses the whole file: another agent, a chain from another CA, a swapped key, bad JSON, bad fields', async () => {
    const { ca, svid, dir } = await fixture();
    const a = entry('a', 'svc-a');
    const b = entry('b', 'svc-b');
    const load = () => loadAgentCache(dir, AGENT, ca.bundle());

    saveAgentCache(dir, { agentId: `${AGENT}x`, entries: [a], svids: [svid(a)], policy: null });
    expect(load()).toMatchObject({ kind: 'corrupt', reason: expect.stringMatching(/written by agent/) });

    const other = await newCa();
    const foreign = other.mintX509Svid({ spiffeId: a.spiffe_id });
    const good = svid(b);
    saveAgentCache(dir, {
      agentId: AGENT,
      entries: [a, b],
      svids: [
        good,
        {
          entryId: 'a',
          revision: 1,
          chain: foreign.chain.map((c) => Buffer.from(c)),
          pkcs8: foreign.privateKey.export({ format: 'der', type: 'pkcs8' }),
        },
      ],
      policy: null,
    });
    expect(load()).toMatchObject({ kind: 'corrupt', reason: expect.stringMatching(/^svid of entry a: /) });

    const sa = svid(a);
    const sb = svid(b);
    saveAgentCache(dir, {
      agentId: AGENT,
      entries: [a, b],
      svids: [
        { ...sa, pkcs8: sb.pkcs8 },
        { ...sb, pkcs8: sa.pkcs8 },
      ],
      policy: null,
    });
    expect(load()).toMatchObject({ kind: 'corrupt', reason: expect.stringMatching(/key does not match/) });

    writeFileSync(agentCachePath(dir), readFileSync(agentCachePath(dir), 'utf8').slice(0, 200));
    expect(load().kind).toBe('corrupt');
    writeFileSync(
      agentCachePath(dir),
      JSON.stringify({ format: 'nevertrust-agent-cache/1', agent_id: AGENT, written_at: '', entries: [{ id: 1 }] }),
    );
    expect(load()).toMatchObject({ kind: 'corrupt', reason: expect.stringMatching(/^entries\.0\.id: /) });
  });
});
