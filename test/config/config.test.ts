import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration } from '../../src/config/index.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
function problems(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('needs no file: defaults for local use', () => {
    const c = loadConfig({ env: {}, cwd: dir });
    expect(c.trust_domain).toBe('example.org');
    expect(c.server).toMatchObject({ host: '127.0.0.1', port: 8181, agent_port: 8081 });
    expect(c.data_dir).toBe('./.nevertrust');
    expect(c.ca.x509_svid_ttl).toBe(3600);
    expect(c.ca.jwt_svid_ttl).toBe(300);
    expect(c.database.url).toBeUndefined();
  });

  it('reads a YAML file and parses durations', () => {
    const c = loadConfig({
      env: {},
      file: file(
        'ok.yaml',
        'trust_domain: prod.acme.io\nserver:\n  port: 9000\nca:\n  ttl: 12h\n  x509_svid_ttl: 30m\n',
      ),
    });
    expect(c.trust_domain).toBe('prod.acme.io');
    expect(c.server.port).toBe(9000);
    expect(c.server.host).toBe('127.0.0.1');
    expect(c.ca.ttl).toBe(43200);
    expect(c.ca.x509_svid_ttl).toBe(1800);
  });

  it('a wrong type names file, line, column and field, with a hint', () => {
    const f = file('type.yaml', 'trust_domain: example.org\nserver:\n  port: "eighty"\n');
    const [p, ...rest] = problems(() => loadConfig({ env: {}, file: f }));
    expect(rest).toHaveLength(0);
    expect(p).toMatchObject({ file: f, line: 3, column: 9, field: 'server.port' });
    expect(p?.hint).toMatch(/number/);
    expect(p?.where).toBe(`${f}:3:9`);
  });

  it('an unknown key is an error with a suggestion, at the key', () => {
    const f = file('unknown.yaml', 'server:\n  prot: 9000\ntrustdomain: x\n');
    const ps = problems(() => loadConfig({ env: {}, file: f }));
    const prot = ps.find((p) => p.field === 'server.prot');
    expect(prot).toMatchObject({ line: 2, column: 3 });
    expect(prot?.hint).toContain('"port"');
    const td = ps.find((p) => p.field === 'trustdomain');
    expect(td).toMatchObject({ line: 3, column: 1 });
    expect(td?.hint).toContain('"trust_domain"');
  });

  it('broken YAML fails with its line, not a stack trace', () => {
    const f = file('broken.yaml', 'server:\n  port: 1\n bad: [\n');
    const ps = problems(() => loadConfig({ env: {}, file: f }));
    expect(ps[0]?.message).toMatch(/invalid YAML/);
    expect(ps[0]?.line).toBeGreaterThanOrEqual(3);
    expect(ps[0]?.where).toMatch(new RegExp(`^${f}:\\d+:\\d+$`));
  });

  it('rejects a bad trust domain, a bad duration and an out-of-range port together', () => {
    const f = file('many.yaml', 'trust_domain: Example.ORG\nca:\n  ttl: soon\nserver:\n  agent_port: 70000\n');
    const ps = problems(() => loadConfig({ env: {}, file: f }));
    expect(ps.map((p) => [p.field, p.line])).toEqual(
      expect.arrayContaining([
        ['trust_domain', 1],
        ['ca.ttl', 3],
        ['server.agent_port', 5],
      ]),
    );
  });

  it('a missing file and a non-mapping file are clear errors', () => {
    expect(problems(() => loadConfig({ env: {}, file: join(dir, 'nope.yaml') }))[0]?.message).toMatch(/file not found/);
    expect(problems(() => loadConfig({ env: {}, file: file('list.yaml', '- a\n- b\n') }))[0]?.message).toMatch(
      /mapping/,
    );
  });

  it('NEVERTRUST_* variables override single keys, and their errors name the variable', () => {
    const f = file('base.yaml', 'server:\n  port: 9000\n');
    const c = loadConfig({
      file: f,
      env: {
        NEVERTRUST_SERVER_PORT: '9100',
        NEVERTRUST_CA_X509_SVID_TTL: '10m',
        NEVERTRUST_DATABASE_URL: 'postgres://h/db',
      },
    });
    expect(c.server.port).toBe(9100);
    expect(c.ca.x509_svid_ttl).toBe(600);
    expect(c.database.url).toBe('postgres://h/db');
    const [p] = problems(() => loadConfig({ env: { NEVERTRUST_SERVER_PORT: 'x' } }));
    expect(p).toMatchObject({ where: 'environment variable NEVERTRUST_SERVER_PORT', field: 'server.port' });
  });

  it('flags override the environment and their errors name the flag', () => {
    const c = loadConfig({
      env: { NEVERTRUST_SERVER_PORT: '9100' },
      overrides: { server: { port: 9200 } },
      flagNames: { 'server.port': '--port' },
    });
    expect(c.server.port).toBe(9200);
    const [p] = problems(() =>
      loadConfig({ env: {}, overrides: { server: { port: 'abc' } }, flagNames: { 'server.port': '--port' } }),
    );
    expect(p?.where).toBe('flag --port');
  });

  it('parses durations and rejects junk', () => {
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('250ms')).toBe(0.25);
    for (const bad of ['', 'h', '1x', '1h 30m', '-5s', '1h30'])
      expect(() => parseDuration(bad)).toThrow(/not a duration/);
  });
});
