/**
 * Which entries an agent is given (and may have signed): its own subtree, live ones only, and never
 * one whose SPIFFE ID is reserved for the server's own issuance — even one stored before such IDs
 * were refused at registration (defence in depth behind the admin API's check).
 */
import { describe, expect, it } from 'vitest';
import type { RegistrationEntry } from '../../src/api/entries.js';
import { entriesForAgent } from '../../src/server/plugins/agent-endpoint.js';

const AGENT = 'spiffe://example.org/spire/agent/join_token/t1';
let n = 0;
function entry(spiffeId: string, parentId = AGENT, expiresAt: number | null = null): RegistrationEntry {
  n++;
  return {
    id: `e${n}`,
    spiffeId,
    parentId,
    selectors: ['unix:uid:1000'],
    x509SvidTtl: 3600,
    jwtSvidTtl: 300,
    dnsNames: [],
    hint: '',
    admin: false,
    expiresAt,
    revision: 1,
    createdAt: 0,
    updatedAt: 0,
  };
}

describe('entriesForAgent', () => {
  it('gives the agent its subtree of live entries', () => {
    const api = entry('spiffe://example.org/ns/prod/sa/api');
    const child = entry('spiffe://example.org/ns/prod/sa/worker', api.spiffeId);
    const other = entry('spiffe://example.org/ns/prod/sa/other', 'spiffe://example.org/spire/agent/join_token/t2');
    const expired = entry('spiffe://example.org/ns/prod/sa/old', AGENT, Date.now() - 1);
    expect(entriesForAgent([api, child, other, expired], AGENT).map((e) => e.spiffeId)).toEqual([
      api.spiffeId,
      child.spiffeId,
    ]);
  });

  it('never hands out a stored entry with a reserved or malformed SPIFFE ID', () => {
    const ok = entry('spiffe://example.org/ns/prod/sa/api');
    const stored = [
      ok,
      entry('spiffe://example.org/nevertrust/server'),
      entry('spiffe://example.org/spire/agent/join_token/rogue'),
      entry('spiffe://example.org/device/laptop-1'),
      entry('SPIFFE://example.org/ns/prod/sa/api'),
      entry('spiffe://example.org/ns/../sa/api'),
    ];
    expect(entriesForAgent(stored, AGENT).map((e) => e.spiffeId)).toEqual([ok.spiffeId]);
  });
});
