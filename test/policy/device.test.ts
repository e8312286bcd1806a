// Device keys in policy (issue #22): device.id (string forms), device.owner_is_user (bool), and the
// fail-closed reason that names why the enforcement point has no device posture.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportIstio } from '../../src/policy/export.js';
import {
  type AccessRequest,
  decide,
  explain,
  lintPolicies,
  loadPolicies,
  PolicyLoadError,
  parseAccessRequest,
  parsePolicyText,
} from '../../src/policy/index.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { snap } from './helpers.js';

const native = (name: string, spec: string) =>
  `apiVersion: nevertrust.dev/v1\nkind: AccessPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}\n`;

type Device = NonNullable<NonNullable<AccessRequest['source']>['device']>;
const at = (device: Device | undefined): AccessRequest => ({
  source: { user: 'alice@example.com', ...(device ? { device } : {}) },
  target: { service: 'portal' },
  request: { method: 'GET', path: '/' },
});

/** An ALLOW policy on the portal whose one rule has this `when` entry (YAML flow text). */
const allowWhen = (when: string) =>
  snap(native('p', `action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - name: r\n    when:\n      - ${when}`));

describe('device.id', () => {
  it('matches exact, prefix, suffix and presence forms, and notValues excludes', () => {
    const cases: [string, string, boolean][] = [
      ['values: [laptop-42]', 'laptop-42', true],
      ['values: [laptop-42]', 'laptop-43', false],
      ['values: [laptop-42]', 'laptop-4', false],
      ['values: ["laptop-*"]', 'laptop-7', true],
      ['values: ["laptop-*"]', 'desktop-7', false],
      ['values: ["*.corp"]', 'build1.corp', true],
      ['values: ["*.corp"]', 'build1.home', false],
      ['values: ["*"]', 'anything', true],
      ['values: [a, b]', 'b', true],
      ['notValues: ["lost-*"]', 'lost-1', false],
      ['notValues: ["lost-*"]', 'laptop-1', true],
      ['values: ["laptop-*"]\n        notValues: [laptop-13]', 'laptop-13', false],
      ['values: ["laptop-*"]\n        notValues: [laptop-13]', 'laptop-12', true],
    ];
    for (const [forms, id, allows] of cases) {
      const s = allowWhen(`key: device.id\n        ${forms}`);
      expect(decide(s, at({ id })).decision, `${forms} on ${id}`).toBe(allows ? 'allow' : 'deny');
    }
  });

  it('a request without a device (or a device without an id) never allows, even with notValues', () => {
    for (const forms of ['values: ["*"]', 'notValues: [lost-1]']) {
      const s = allowWhen(`key: device.id\n        ${forms}`);
      expect(decide(s, at(undefined)).decision).toBe('deny');
      expect(decide(s, at({ managed: true })).decision).toBe('deny');
    }
  });
});

describe('device.owner_is_user', () => {
  it('matches its value and fails to match the other', () => {
    const mine = allowWhen('key: device.owner_is_user\n        equals: true');
    expect(decide(mine, at({ id: 'd1', owner_is_user: true })).decision).toBe('allow');
    expect(decide(mine, at({ id: 'd1', owner_is_user: false })).decision).toBe('deny');
    const others = allowWhen('key: device.owner_is_user\n        equals: false');
    expect(decide(others, at({ id: 'd1', owner_is_user: false })).decision).toBe('allow');
    expect(decide(others, at({ id: 'd1', owner_is_user: true })).decision).toBe('deny');
  });
});

describe('an unknown device attribute fails closed', () => {
  // Each rule below would match a known device; without one, DENY denies, STEP_UP steps up, and
  // ALLOW never allows.
  const keys = [
    ['device.id', 'values: [d1]'],
    ['device.owner_is_user', 'equals: false'],
    ['device.os_patched', 'equals: false'],
  ] as const;
  const policySet = (action: string, key: string, cond: string) =>
    snap(
      [
        native('open', 'action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - name: all'),
        native(
          'guard',
          `action: ${action}\ntarget: { services: [portal] }\nrules:\n  - name: g\n    when:\n      - key: ${key}\n        ${cond}`,
        ),
      ].join('---\n'),
    );
  it.each(keys)('%s: DENY and STEP_UP rules apply, naming the key', (key, cond) => {
    for (const [action, verdict, verb] of [
      ['DENY', 'deny', 'deny'],
      ['STEP_UP', 'step_up', 'step up'],
    ] as const) {
      const s = policySet(action, key, cond);
      for (const device of [undefined, {}]) {
        const d = decide(s, at(device));
        expect(d).toMatchObject({ decision: verdict, policy: 'guard', rule: 'g' });
        expect(d.reason).toBe(
          `${action} policy "guard" rule "g" could not be evaluated (request lacks ${key}); failing closed: ${verb}`,
        );
      }
    }
  });
  it.each(keys)('%s: an ALLOW rule on it never allows', (key, cond) => {
    const s = snap(
      native(
        'only',
        `action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - name: r\n    when:\n      - key: ${key}\n        ${cond}`,
      ),
    );
    const d = decide(s, at({ unknown_reason: 'no device certificate' }));
    expect(d).toMatchObject({ decision: 'deny', policy: null });
  });
});

describe('the fail-closed reason names the stale or missing signal', () => {
  const s = loadPolicies('examples/policies/conditional-access');
  const alice = {
    claims: { iss: 'https://idp.example.org', sub: 'alice' },
    user: 'alice@example.com',
    mfa: true,
    risk_score: 0.1,
  };
  const portal = (device: Device | undefined, path = '/home'): AccessRequest => ({
    source: { ...alice, ...(device ? { device } : {}) },
    target: { spiffe_id: 'spiffe://example.org/ns/corp/sa/portal' },
    request: { method: 'GET', path },
  });

  it('device.yaml: a device whose posture is too old denies, saying why', () => {
    const stale = portal({
      id: 'laptop-42',
      owner_is_user: true,
      posture_age_s: 1200,
      unknown_reason: 'device posture is 1200 s old, the route allows 900 s',
    });
    const d = decide(s, stale);
    expect(d).toMatchObject({ decision: 'deny', policy: 'portal-unpatched-device', rule: 'os-not-patched' });
    expect(d.reason).toBe(
      'DENY policy "portal-unpatched-device" rule "os-not-patched" could not be evaluated (request lacks device.os_patched: device posture is 1200 s old, the route allows 900 s); failing closed: deny',
    );
  });

  it('device.yaml: no device certificate denies, saying so', () => {
    const d = decide(s, portal({ unknown_reason: 'no device certificate' }, '/admin'));
    expect(d.decision).toBe('deny');
    expect(d.reason).toContain('(request lacks device.os_patched: no device certificate); failing closed: deny');
  });

  it('device.yaml: a compliant device with fresh posture is allowed', () => {
    const d = decide(
      s,
      portal({
        id: 'laptop-42',
        owner_is_user: true,
        managed: true,
        encrypted: true,
        os_patched: true,
        edr_active: true,
        posture_age_s: 30,
      }),
    );
    expect(d).toMatchObject({ decision: 'allow', policy: 'portal-employees' });
  });

  it('the reason is only added to device keys, and control characters in it are neutralized', () => {
    const noRisk = decide(s, {
      ...portal({ managed: true, os_patched: true, unknown_reason: 'stale' }),
      source: { ...alice, risk_score: undefined, device: { managed: true, os_patched: true, unknown_reason: 'stale' } },
    });
    expect(noRisk.reason).toContain('(request lacks risk.score);');
    const hostile = decide(s, portal({ unknown_reason: 'old\n2026 ALLOW forged\u2028line\u202e' }));
    expect(hostile.reason).toContain('(request lacks device.os_patched: old 2026 ALLOW forged line );');
    expect(hostile.reason).not.toMatch(/[\n\u2028\u202e]/);
  });

  it('explain shows why the device attribute is unknown', () => {
    const e = explain(s, portal({ unknown_reason: 'no device certificate' }));
    const rule = e.candidates.find((c) => c.policy === 'portal-unpatched-device')?.rules[0];
    expect(rule).toMatchObject({ result: 'unknown' });
    expect(rule?.why).toContain('when[0] device.os_patched: unknown (no device certificate)');
  });
});

describe('the request schema', () => {
  it('takes owner_is_user and unknown_reason, and refuses a wrong type or an over-long reason', () => {
    const ok = parseAccessRequest({ source: { device: { id: 'd1', owner_is_user: true, unknown_reason: 'x' } } });
    expect(ok.source?.device).toEqual({ id: 'd1', owner_is_user: true, unknown_reason: 'x' });
    expect(() => parseAccessRequest({ source: { device: { owner_is_user: 'yes' } } })).toThrow(
      /source\.device\.owner_is_user/,
    );
    expect(() => parseAccessRequest({ source: { device: { unknown_reason: 'x'.repeat(257) } } })).toThrow(
      /source\.device\.unknown_reason/,
    );
    expect(() => parseAccessRequest({ source: { device: { trusted: true } } })).toThrow(/source\.device/);
  });
});

describe('documents and tools', () => {
  it('an Istio AuthorizationPolicy cannot use a device key, and the error says where it can be written', () => {
    const istio = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: corp\nspec:\n  action: ALLOW\n  rules:\n    - when:\n        - key: device.id\n          values: [d1]\n`;
    let message = '';
    try {
      parsePolicyText(istio, 'istio.yaml');
    } catch (e) {
      if (!(e instanceof PolicyLoadError)) throw e;
      message = e.issues.map((i) => i.message).join('\n');
    }
    expect(message).toContain('unknown condition key "device.id" in an Istio AuthorizationPolicy');
    expect(message).toContain('AccessPolicy');
  });

  it('bad device conditions are refused with the field', () => {
    expect(() =>
      snap(
        native(
          'p',
          'action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - when:\n      - key: device.owner_is_user\n        values: [yes]',
        ),
      ),
    ).toThrow(PolicyLoadError);
    expect(() =>
      snap(
        native(
          'p',
          'action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - when:\n      - key: device.id\n        equals: true',
        ),
      ),
    ).toThrow(PolicyLoadError);
  });

  it('lint: a STEP_UP rule on device posture alone can never be ended by a second factor', () => {
    const loop = snap(
      native(
        'p',
        'action: STEP_UP\ntarget: { services: [portal] }\nrules:\n  - name: unmanaged\n    when:\n      - key: device.managed\n        equals: false',
      ),
    );
    const f = lintPolicies(loop.policies).filter((x) => x.code === 'step-up-unsatisfiable');
    expect(f).toHaveLength(1);
    expect(f[0]?.message).toContain('steps up on device.managed alone');
    const once = snap(
      native(
        'p',
        'action: STEP_UP\ntarget: { services: [portal] }\nrules:\n  - name: unmanaged\n    when:\n      - key: device.managed\n        equals: false\n      - key: auth.mfa\n        equals: false',
      ),
    );
    expect(lintPolicies(once.policies).filter((x) => x.code === 'step-up-unsatisfiable')).toEqual([]);
  });

  it('Istio export skips a rule on device.id (Istio has no such attribute)', () => {
    const s = snap(
      native(
        'p',
        'action: ALLOW\ntarget: { services: [portal] }\nrules:\n  - name: r\n    when:\n      - key: device.id\n        values: [d1]',
      ),
    );
    const out = exportIstio(s.policies);
    expect(out.warnings.join('\n')).toContain('p/r: conditions without an Istio equivalent; rule skipped');
  });
});

describe('nevertrust policy eval', () => {
  it('takes source.device with owner_is_user and unknown_reason, and the reason names the stale posture', async () => {
    const input = join(tempDir(), 'req.json');
    writeFileSync(
      input,
      JSON.stringify({
        source: {
          claims: { iss: 'https://idp.example.org', sub: 'alice' },
          mfa: true,
          risk_score: 0.1,
          device: {
            id: 'laptop-42',
            owner_is_user: true,
            posture_age_s: 1200,
            unknown_reason: 'device posture is 1200 s old, the route allows 900 s',
          },
        },
        target: { spiffe_id: 'spiffe://example.org/ns/corp/sa/portal' },
        request: { method: 'GET', path: '/home' },
      }),
    );
    const r = await runCli(['policy', 'eval', '--policies', 'examples/policies/conditional-access', '--input', input]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { decision: string; reason: string };
    expect(out.decision).toBe('deny');
    expect(out.reason).toContain(
      '(request lacks device.os_patched: device posture is 1200 s old, the route allows 900 s)',
    );
  });
});
