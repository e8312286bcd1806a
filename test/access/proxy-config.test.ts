/** The access proxy's config: bad input is refused naming the file and the field; the CLI says so and exits 2. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AccessProxyConfigError, loadAccessProxyConfig, parseAccessProxyConfig } from '../../src/access/proxy/index.js';
import { RouteTable } from '../../src/access/proxy/routes.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const base = {
  listen: '127.0.0.1:8443',
  svid: { workload_api: 'unix:///run/agent.sock' },
  policies: '/etc/nevertrust/policies',
};
const route = (over: Record<string, unknown> = {}) => ({
  name: 'wiki',
  from: { host: 'wiki.example.test' },
  to: 'http://127.0.0.1:8080',
  ...over,
});
const parse = (doc: Record<string, unknown>) => parseAccessProxyConfig({ ...base, ...doc }, 'proxy.yaml');

describe('access proxy config', () => {
  it('defaults: prefix /, no websockets, host kept as given in lower case, 16 KiB header limit', () => {
    const c = parse({ routes: [route({ from: { host: 'Wiki.Example.Test', path_prefix: '/docs/' } })] });
    expect(c.routes[0]?.from).toEqual({ host: 'wiki.example.test', path_prefix: '/docs' });
    expect(c.routes[0]).toMatchObject({ websockets: false, preserve_host: false, timeout_ms: 30_000 });
    expect(c.limits.max_header_bytes).toBe(16 * 1024);
    expect(c.path_normalization).toBe('strict');
  });

  it.each([
    [{ routes: [] }, 'proxy.yaml: routes:'],
    [
      { routes: [route(), route({ name: 'other' })] },
      'proxy.yaml: routes.1.from: same host and path_prefix as routes.0',
    ],
    [{ routes: [route(), route({ from: { host: 'WIKI.example.test' }, name: 'b' })] }, 'routes.1.from: same host'],
    [{ routes: [route(), route({ from: { host: 'x.test' } })] }, 'routes.1.name: same name'],
    [{ routes: [route({ from: { host: 'wiki.example.test:443' } })] }, 'routes.0.from.host:'],
    [{ routes: [route({ from: { host: 'a', path_prefix: '/a/../b' } })] }, 'routes.0.from.path_prefix:'],
    [{ routes: [route({ from: { host: 'a', path_prefix: 'a' } })] }, 'routes.0.from.path_prefix:'],
    [{ routes: [route({ from: { host: 'a', path_prefix: '/a%2fb' } })] }, 'routes.0.from.path_prefix:'],
    [{ routes: [route({ to: 'ftp://x:1' })] }, 'routes.0.to:'],
    [{ routes: [route({ to: 'http://x:1/app' })] }, 'routes.0.to:'],
    [
      { routes: [route({ to_spiffe_id: 'spiffe://example.org/x' })] },
      'routes.0.to: with to_spiffe_id, to must be https://',
    ],
    [{ routes: [route({ headers: { set: { 'x-a': 'b\r\nx-evil: 1' } } })] }, 'routes.0.headers.set.x-a:'],
    [{ routes: [route({ headers: { remove: ['bad header'] } })] }, 'routes.0.headers.remove.0:'],
    [{ routes: [route({ surprise: 1 })] }, 'routes.0:'],
    [{ listen: 'nope', routes: [route()] }, 'proxy.yaml: listen: expected HOST:PORT'],
  ])('refuses %j', (doc, message) => {
    expect(() => parse(doc)).toThrow(AccessProxyConfigError);
    expect(() => parse(doc)).toThrow(message);
  });

  it('a YAML syntax error names the file and the line', () => {
    const f = join(tempDir(), 'bad.yaml');
    writeFileSync(f, 'listen: [\n');
    expect(() => loadAccessProxyConfig(f)).toThrow(/bad\.yaml:\d+:\d+: \(yaml\): /);
  });
});

describe('route table', () => {
  const t = new RouteTable(
    parse({
      routes: [
        route(),
        route({ name: 'a', from: { host: 'wiki.example.test', path_prefix: '/a' } }),
        route({ name: 'ab', from: { host: 'wiki.example.test', path_prefix: '/a/b' } }),
      ],
    }).routes,
  );
  it('longest prefix on segment boundaries; unknown host has no route', () => {
    expect(t.match('wiki.example.test', '/a/b/c')?.name).toBe('ab');
    expect(t.match('wiki.example.test', '/a/bc')?.name).toBe('a');
    expect(t.match('wiki.example.test', '/ab')?.name).toBe('wiki');
    expect(t.match('wiki.example.test', '/a')?.name).toBe('a');
    expect(t.match('other.example.test', '/')).toBeUndefined();
  });
});

describe('nevertrust access-proxy (CLI)', () => {
  it('has help with an example config, and refuses a bad config naming file and field (exit 2)', async () => {
    const h = await runCli(['access-proxy', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('$ nevertrust access-proxy --config access-proxy.yaml');
    expect(h.stdout).toContain('routes:');
    const f = join(tempDir(), 'proxy.yaml');
    writeFileSync(
      f,
      'listen: 127.0.0.1:8443\nsvid: { workload_api: x }\npolicies: p\nroutes: [{ name: Wiki, from: { host: a }, to: "http://a:1" }]\n',
    );
    const r = await runCli(['access-proxy', '--config', f]);
    expect(r.code).toBe(2);
    // The line and column of the bad field in the file.
    expect(r.stderr).toContain(`${f}:4:18: routes.0.name:`);
    const none = await runCli(['access-proxy']);
    expect(none.code).toBe(2);
  });
});
