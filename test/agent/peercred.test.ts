import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { getPeerCredFromFd, PeerCredentialsError, peerCredentials } from '../../src/agent/peercred.js';
import {
  AttestationError,
  entryMatches,
  formatSelector,
  parseNameFile,
  parseSelector,
  parseStartTime,
  SelectorError,
  UnixAttestor,
} from '../../src/agent/unix-attestor.js';
import { freePort } from '../support/cli.js';
import { connectingChild, connectingChildWithGroups, sharedTempDir, socketServer } from './peer.js';
import type { ChildProcess } from 'node:child_process';

const dir = sharedTempDir();
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

const NOBODY = 65534;

describe('peerCredentials (SO_PEERCRED addon)', () => {
  it('returns the pid, uid and gid of a connecting child process', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path);
    children.push(child);
    const sock = await next();
    const cred = peerCredentials(sock);
    expect(cred).toEqual({ pid: child.pid, uid: process.getuid?.(), gid: process.getgid?.() });
    sock.destroy();
    server.close();
  });

  it('reports the uid of a child running as nobody', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path, { uid: NOBODY, gid: NOBODY });
    children.push(child);
    const sock = await next();
    expect(peerCredentials(sock)).toEqual({ pid: child.pid, uid: NOBODY, gid: NOBODY });
    sock.destroy();
    server.close();
  });

  it('fails closed on a TCP socket, a closed socket and a bad fd', async () => {
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    const accepted = new Promise<import('node:net').Socket>((r) => server.once('connection', r));
    const client = connect(port, '127.0.0.1');
    const sock = await accepted;
    expect(() => peerCredentials(sock)).toThrow(PeerCredentialsError);
    sock.destroy();
    client.destroy();
    server.close();
    expect(() => peerCredentials(sock)).toThrow(/no file descriptor/);
    expect(() => getPeerCredFromFd(987654)).toThrow(PeerCredentialsError);
  });
});

describe('UnixAttestor', () => {
  const attestor = new UnixAttestor();

  it('produces uid, gid, user, group, path and sha256 selectors for process.execPath', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path);
    children.push(child);
    const sock = await next();
    const selectors = (await attestor.attest(peerCredentials(sock))).map(formatSelector);
    const exe = realpathSync(process.execPath);
    const sha = createHash('sha256').update(readFileSync(exe)).digest('hex');
    expect(selectors).toEqual(
      expect.arrayContaining([
        'unix:uid:0',
        'unix:user:root',
        'unix:gid:0',
        'unix:group:root',
        `unix:path:${exe}`,
        `unix:sha256:${sha}`,
      ]),
    );
    // Second attestation hits the hash cache and gives the same answer.
    expect((await attestor.attest(peerCredentials(sock))).map(formatSelector)).toEqual(selectors);
    sock.destroy();
    server.close();
  });

  it('attests a child under uid 65534 as nobody', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path, { uid: NOBODY, gid: NOBODY });
    children.push(child);
    const sock = await next();
    const selectors = (await attestor.attest(peerCredentials(sock))).map(formatSelector);
    expect(selectors).toContain('unix:uid:65534');
    expect(selectors).toContain('unix:user:nobody');
    expect(selectors).toContain('unix:gid:65534');
    expect(selectors).not.toContain('unix:uid:0');
    // Supplementary groups are whatever the kernel says (libuv drops them on setuid: often none).
    const groupsLine = readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/^Groups:(.*)$/m)?.[1] ?? '';
    const gids = groupsLine.trim().split(/\s+/).filter(Boolean);
    expect(selectors.filter((s) => s.startsWith('unix:supplementary_gid:'))).toEqual(
      gids.map((g) => `unix:supplementary_gid:${g}`),
    );
    sock.destroy();
    server.close();
  });

  it('reports supplementary groups from /proc/<pid>/status', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChildWithGroups(path, NOBODY, NOBODY, [NOBODY, 100]);
    children.push(child);
    const sock = await next();
    const cred = peerCredentials(sock);
    expect(cred).toMatchObject({ uid: NOBODY, gid: NOBODY });
    // setpriv execs node in place: the peer is the same pid, now running node.
    await new Promise((r) => setTimeout(r, 50));
    const selectors = (await attestor.attest(cred)).map(formatSelector);
    expect(selectors).toEqual(
      expect.arrayContaining([
        'unix:supplementary_gid:65534',
        'unix:supplementary_gid:100',
        'unix:supplementary_group:users',
        `unix:path:${realpathSync(process.execPath)}`,
      ]),
    );
    sock.destroy();
    server.close();
  });

  it('rejects a process that has exited', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path);
    const sock = await next();
    const cred = peerCredentials(sock);
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
    await expect(attestor.attest(cred)).rejects.toThrow(AttestationError);
    await expect(attestor.attest(cred)).rejects.toMatchObject({ code: 'ERR_ATTEST_PROCESS_GONE' });
    sock.destroy();
    server.close();
  });

  it('rejects a pid whose process no longer holds the uid the kernel recorded', async () => {
    const { path, server, next } = await socketServer(dir);
    const child = connectingChild(path);
    children.push(child);
    const sock = await next();
    const cred = peerCredentials(sock);
    await expect(attestor.attest({ ...cred, uid: 4242 })).rejects.toMatchObject({ code: 'ERR_ATTEST_UID_MISMATCH' });
    sock.destroy();
    server.close();
  });
});

describe('selectors', () => {
  it('parses well-formed unix selectors', () => {
    expect(parseSelector('unix:uid:1000')).toEqual({ type: 'unix', value: 'uid:1000' });
    expect(parseSelector('unix:path:/usr/bin/node')).toEqual({ type: 'unix', value: 'path:/usr/bin/node' });
    expect(parseSelector(`unix:sha256:${'a'.repeat(64)}`).value).toBe(`sha256:${'a'.repeat(64)}`);
    expect(parseSelector('unix:supplementary_group:docker').value).toBe('supplementary_group:docker');
  });

  it.each([
    ['', 'ERR_SELECTOR_MALFORMED'],
    ['unix', 'ERR_SELECTOR_MALFORMED'],
    ['unix:', 'ERR_SELECTOR_MALFORMED'],
    [':uid:1', 'ERR_SELECTOR_MALFORMED'],
    ['Unix:uid:1', 'ERR_SELECTOR_MALFORMED'],
    ['k8s:ns:default', 'ERR_SELECTOR_UNKNOWN_TYPE'],
    ['unix:uid', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:uid:', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:uid:-1', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:uid:01', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:uid:4294967296', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:pid:1', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:user:a b', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:path:bin/node', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:path:/usr/../bin', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:path:/usr//bin', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:path:/usr/bin/', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:sha256:ABC', 'ERR_SELECTOR_INVALID_VALUE'],
    ['unix:uid:1\n', 'ERR_SELECTOR_MALFORMED'],
  ])('rejects %j with %s', (text, code) => {
    expect(() => parseSelector(text)).toThrow(SelectorError);
    try {
      parseSelector(text);
    } catch (e) {
      expect((e as SelectorError).code).toBe(code);
      expect((e as SelectorError).message.length).toBeGreaterThan(10);
    }
  });

  it('accepts other types only when asked', () => {
    expect(parseSelector('k8s:ns:default', { types: ['unix', 'k8s'] })).toEqual({ type: 'k8s', value: 'ns:default' });
  });

  it('entryMatches needs every entry selector; an empty entry matches nobody', () => {
    const caller = ['unix:uid:1000', 'unix:gid:1000', 'unix:user:alice'].map((s) => parseSelector(s));
    expect(entryMatches([parseSelector('unix:uid:1000')], caller)).toBe(true);
    expect(entryMatches([parseSelector('unix:uid:1000'), parseSelector('unix:user:alice')], caller)).toBe(true);
    expect(entryMatches([parseSelector('unix:uid:1000'), parseSelector('unix:user:bob')], caller)).toBe(false);
    expect(entryMatches([], caller)).toBe(false);
    expect(entryMatches([parseSelector('unix:uid:1000')], new Set(['unix:uid:1000']))).toBe(true);
  });

  it('parses /proc stat start time with hostile comm names and passwd files', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)).join(' ');
    expect(parseStartTime(`42 (a) b) c (d) ${fields}`)).toBe('22');
    const m = parseNameFile(
      '# c\nroot:x:0:0::/root:/bin/sh\nalias:x:0:0::/:/bin/sh\nbad line\nnobody:x:65534:65534::/:/x\n',
    );
    expect(m.get(0)).toBe('root');
    expect(m.get(65534)).toBe('nobody');
  });
});
