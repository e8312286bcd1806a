/**
 * followSignals against a hostile or flaky stream (a real HTTP server on loopback, scripted per
 * connection): a line that does not fit the contract ends the connection and is never skipped, the
 * follower reconnects after its last handled seq; a failing onSignal gets the signal again; a server
 * whose numbers are behind the follower's is a `reset` gap.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { SequencedSignal } from '../../src/api/signals.js';
import { followSignals, type SignalFollower, type SignalGap } from '../../src/signals/follow.js';

const at = new Date().toISOString();
const sig = (seq: number) =>
  `${JSON.stringify({
    type: 'signal',
    seq,
    received_at: at,
    signal: { kind: 'session.revoked', sessionId: `s${seq}`, reason: 'r', source: 'admin', at },
  })}\n`;
const hello = (head: number, oldest = 1) => `${JSON.stringify({ type: 'hello', head, oldest })}\n`;

let server: Server | undefined;
let follower: SignalFollower | undefined;
afterEach(async () => {
  await follower?.stop();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
});

/** Serves connection i with script[i] (then holds the stream open); records each `after`. */
async function scripted(script: ((res: ServerResponse) => void)[]): Promise<{ url: string; afters: string[] }> {
  const afters: string[] = [];
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    afters.push(new URL(req.url ?? '/', 'http://x').searchParams.get('after') ?? '');
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    (script[afters.length - 1] ?? ((r) => r.write(hello(0, 0))))(res);
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, afters };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('followSignals', () => {
  it('a malformed line ends the connection; the follower resumes after its last seq and skips nothing', async () => {
    const { url, afters } = await scripted([
      (res) =>
        res.write(hello(3) + sig(1) + '{"type":"signal","seq":2,"signal":{"kind":"session.granted"}}\n' + sig(3)),
      (res) => res.write(hello(3) + sig(2) + sig(3)),
    ]);
    const got: SequencedSignal[] = [];
    follower = followSignals({ url, after: 0, onSignal: (m) => void got.push(m), minBackoffMs: 10 });
    await until(() => got.length === 3);
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(afters.slice(0, 2)).toEqual(['0', '1']);
  });

  it('a signal that onSignal fails on comes again after the reconnect; a duplicate seq is not handed twice', async () => {
    const { url, afters } = await scripted([
      (res) => res.write(hello(2) + sig(1) + sig(2)),
      (res) => res.write(hello(2) + sig(1) + sig(2)),
    ]);
    const got: number[] = [];
    let failOnce = true;
    follower = followSignals({
      url,
      after: 0,
      minBackoffMs: 10,
      onSignal: (m) => {
        if (m.seq === 2 && failOnce) {
          failOnce = false;
          throw new Error('enforcement point busy');
        }
        got.push(m.seq);
      },
    });
    await until(() => got.length === 2);
    expect(got).toEqual([1, 2]);
    expect(afters.slice(0, 2)).toEqual(['0', '1']);
    expect(follower.lastSeq()).toBe(2);
  });

  it("a server whose head is behind the follower is a reset gap: it resumes from the server's head", async () => {
    const { url, afters } = await scripted([(res) => res.write(hello(2, 1)), (res) => res.write(hello(2, 1) + sig(3))]);
    const gaps: SignalGap[] = [];
    const got: number[] = [];
    follower = followSignals({
      url,
      after: 10,
      minBackoffMs: 10,
      onSignal: (m) => void got.push(m.seq),
      onGap: (g) => void gaps.push(g),
    });
    await until(() => got.length === 1);
    expect(gaps[0]).toEqual({ after: 10, oldest: 1, head: 2, why: 'reset' });
    expect(afters.slice(0, 2)).toEqual(['10', '2']);
  });

  it('an onGap that throws ends the connection (no unhandled rejection); the follower reconnects', async () => {
    const { url, afters } = await scripted([(res) => res.write(hello(5, 3)), (res) => res.write(hello(5, 3) + sig(3))]);
    const got: number[] = [];
    let failOnce = true;
    follower = followSignals({
      url,
      after: 0,
      minBackoffMs: 10,
      onSignal: (m) => void got.push(m.seq),
      onGap: () => {
        if (failOnce) {
          failOnce = false;
          throw new Error('re-reading the state failed');
        }
      },
    });
    await until(() => got.length === 1);
    expect(afters.slice(0, 2)).toEqual(['0', '0']);
  });

  it('a silent connection is dropped and reconnected; contact is reported', async () => {
    const { url, afters } = await scripted([(res) => res.write(hello(0, 0)), (res) => res.write(hello(0, 0))]);
    follower = followSignals({ url, after: 0, onSignal: () => {}, idleTimeoutMs: 200, minBackoffMs: 10 });
    await follower.ready();
    expect(follower.lastContactAt()).toBeGreaterThan(Date.now() - 1000);
    await until(() => afters.length >= 2);
  });
});
