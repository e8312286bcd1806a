/** The login attempt limits and the address they count against (real HTTP requests). */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { clientIp, LoginAttempts } from '../../src/access/idp/index.js';

describe('login attempts', () => {
  it('counts behind the TLS proxy against the address it appended, directly against the peer', async () => {
    const seen: { direct: string; proxied: string }[] = [];
    const server = createServer((req, res) => {
      seen.push({ direct: clientIp(req, false), proxied: clientIp(req, true) });
      res.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      await fetch(url, { headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' } });
      await fetch(url);
      await fetch(url, { headers: { 'x-forwarded-for': 'x'.repeat(200) } });
    } finally {
      server.close();
    }
    // A client can prepend anything; only the proxy's own last entry counts.
    expect(seen[0]).toEqual({ direct: '127.0.0.1', proxied: '203.0.113.9' });
    expect(seen[1]).toEqual({ direct: '127.0.0.1', proxied: '127.0.0.1' });
    expect(seen[2]?.proxied).toBe('127.0.0.1');
  });

  it('limits per IP and per username within the window; a success clears the username only', () => {
    const a = new LoginAttempts({ perIp: 3, perUser: 2, windowMs: 1000 });
    a.failed('ip1', 'bob', 0);
    expect(a.limited('ip1', 'bob', 1)).toBeUndefined();
    a.failed('ip1', 'bob', 2);
    expect(a.limited('ip2', 'bob', 3)).toBe('username');
    expect(a.limited('ip1', 'alice', 3)).toBeUndefined();
    a.failed('ip1', 'carol', 4);
    expect(a.limited('ip1', 'alice', 5)).toBe('ip');
    a.succeeded('bob');
    expect(a.limited('ip2', 'bob', 6)).toBeUndefined();
    expect(a.limited('ip1', 'alice', 2000)).toBeUndefined();
  });
});
