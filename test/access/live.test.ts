/**
 * The pieces of live-connection cuts without a proxy: the close frame's bytes (RFC 6455 §5.5.1), the
 * reason's 123-byte bound on a character boundary, frame boundaries followed across split chunks,
 * and a joined WebSocket cut between the app's frames, never inside one.
 */
import { createServer, type Server, type Socket, connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { joinWebSocket } from '../../src/access/proxy/live.js';
import { clipUtf8, closeFrame, FrameBoundary } from '../../src/access/proxy/ws-frames.js';

describe('WebSocket frames', () => {
  it('a close frame is FIN+0x8, unmasked, length, code big-endian, reason', () => {
    const f = closeFrame(1008, 'revoked');
    expect([...f.subarray(0, 4)]).toEqual([0x88, 9, 0x03, 0xf0]);
    expect(f.subarray(4).toString()).toBe('revoked');
  });

  it('the reason is clipped to 123 bytes without splitting a character', () => {
    const long = 'é'.repeat(100); // 200 bytes
    const f = closeFrame(1008, long);
    expect(f[1]).toBeLessThanOrEqual(125);
    const reason = f.subarray(4);
    expect(reason.length).toBe(122);
    expect(reason.toString('utf8')).toBe('é'.repeat(61));
    expect(clipUtf8('a'.repeat(200)).length).toBe(123);
    expect(() => closeFrame(99, 'x')).toThrow(RangeError);
  });

  it('follows boundaries across split headers, 16- and 64-bit lengths, masked frames', () => {
    const frame = (len: number, masked = false) => {
      const head =
        len < 126
          ? [0x82, len | (masked ? 0x80 : 0)]
          : len < 65536
            ? [0x82, 126 | (masked ? 0x80 : 0), len >> 8, len & 0xff]
            : [
                0x82,
                127 | (masked ? 0x80 : 0),
                0,
                0,
                0,
                0,
                (len >>> 24) & 0xff,
                (len >> 16) & 0xff,
                (len >> 8) & 0xff,
                len & 0xff,
              ];
      return Buffer.concat([Buffer.from(head), Buffer.alloc(masked ? 4 : 0, 7), Buffer.alloc(len, 1)]);
    };
    const stream = Buffer.concat([frame(5), frame(300), frame(70_000), frame(0), frame(10, true)]);
    // Byte by byte: a boundary exactly at each frame's end and nowhere else.
    const ends = new Set<number>();
    let at = 0;
    for (const f of [frame(5), frame(300), frame(70_000), frame(0), frame(10, true)]) {
      at += f.length;
      ends.add(at);
    }
    const b = new FrameBoundary();
    for (let i = 0; i < stream.length; i++) {
      b.push(stream.subarray(i, i + 1));
      expect(b.atBoundary).toBe(ends.has(i + 1));
    }
    const whole = new FrameBoundary();
    whole.push(stream);
    expect(whole.atBoundary).toBe(true);
  });
});

describe('a joined WebSocket cut', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });

  /** A connected pair of TCP sockets. */
  async function pair(): Promise<[Socket, Socket]> {
    const server = createServer();
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const c = connect((server.address() as { port: number }).port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    return [c, await accepted];
  }

  it('waits for the app frame in flight, then writes the close frame and closes the app side', async () => {
    // browser <-> [clientSide | proxy | upSide] <-> app
    const [browser, clientSide] = await pair();
    const [upSide, app] = await pair();
    const join = joinWebSocket(clientSide, upSide);
    const got: Buffer[] = [];
    browser.on('data', (c: Buffer) => got.push(c));
    const browserEnded = new Promise((r) => browser.once('end', r));
    const appClosed = new Promise((r) => app.once('close', r));
    app.on('error', () => {});

    // Half a 10-byte binary frame, then the cut, then the rest.
    app.write(Buffer.from([0x82, 10, 1, 2, 3]));
    await new Promise((r) => setTimeout(r, 50));
    join.cut('access revoked (policy changed): denied');
    await new Promise((r) => setTimeout(r, 50));
    app.write(Buffer.from([4, 5, 6, 7, 8, 9, 10]));
    await browserEnded;
    await appClosed;
    const all = Buffer.concat(got);
    // The whole app frame, then the close frame: never a close frame inside it.
    expect([...all.subarray(0, 12)]).toEqual([0x82, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(all.subarray(12, 14)).toEqual(Buffer.from([0x88, 2 + 'access revoked (policy changed): denied'.length]));
    expect(all.readUInt16BE(14)).toBe(1008);
    expect(all.subarray(16).toString()).toBe('access revoked (policy changed): denied');
    expect(join.closed).toBe(true);
    browser.destroy();
  });

  it('without a cut, bytes pass both ways and a close on one side closes the other', async () => {
    const [browser, clientSide] = await pair();
    const [upSide, app] = await pair();
    joinWebSocket(clientSide, upSide);
    const toApp = new Promise<Buffer>((r) => app.once('data', r));
    browser.write('ping');
    expect((await toApp).toString()).toBe('ping');
    const toBrowser = new Promise<Buffer>((r) => browser.once('data', r));
    app.write('pong');
    expect((await toBrowser).toString()).toBe('pong');
    const browserClosed = new Promise((r) => browser.once('close', r));
    app.destroy();
    await browserClosed;
  });
});
