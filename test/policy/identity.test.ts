/**
 * The policy engine parses SPIFFE IDs with the one parser of src/spiffe: it accepts exactly what
 * that parser accepts, and an invalid source or target ID denies with the broken rule as reason.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide } from '../../src/policy/index.js';
import { spiffeParts } from '../../src/policy/identity.js';
import { normalizeRequest } from '../../src/policy/request.js';
import { parseSpiffeId, SpiffeIdError } from '../../src/spiffe/index.js';
import { snap } from './helpers.js';

const GATEWAY = 'example.org/ns/production/sa/api-gateway';
const policy = () =>
  snap(
    `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: p, namespace: production }\nspec:\n  rules:\n  - from:\n    - source:\n        principals: [${GATEWAY}]\n`,
  );
const request = (source: string) => ({
  source: { spiffe_id: source },
  target: { spiffe_id: 'spiffe://example.org/ns/production/sa/payments' },
  request: { method: 'GET', path: '/' },
});

describe('SPIFFE IDs in decision requests', () => {
  it('allows the principal in its one spelling', () => {
    expect(decide(policy(), request(`spiffe://${GATEWAY}`)).decision).toBe('allow');
  });

  it.each([
    [`SPIFFE://${GATEWAY}`, 'ERR_SPIFFEID_WRONG_SCHEME'],
    [`Spiffe://${GATEWAY}`, 'ERR_SPIFFEID_WRONG_SCHEME'],
    ['spiffe://Example.org/ns/production/sa/api-gateway', 'ERR_SPIFFEID_TRUST_DOMAIN_UPPERCASE'],
    ['spiffe://example.org/ns/production/sa/../sa/api-gateway', 'ERR_SPIFFEID_DOT_SEGMENT'],
    ['spiffe://example.org/ns/production/sa/api%2Dgateway', 'ERR_SPIFFEID_PERCENT_ENCODING'],
    ['spiffe://example.org/ns/production//sa/api-gateway', 'ERR_SPIFFEID_EMPTY_SEGMENT'],
    [`spiffe://${GATEWAY}/`, 'ERR_SPIFFEID_TRAILING_SLASH'],
    [`spiffe://${GATEWAY}#x`, 'ERR_SPIFFEID_FRAGMENT'],
  ])('denies source %s, naming %s', (source, code) => {
    const d = decide(policy(), request(source));
    expect(d.decision).toBe('deny');
    expect(d.reason).toContain('source.spiffe_id is not a valid SPIFFE ID');
    expect(d.reason).toContain(code);
    expect(d.reason).not.toMatch(/no ALLOW rule/i);
  });

  it('an invalid target ID denies with the rule as well', () => {
    const r = { ...request(`spiffe://${GATEWAY}`), target: { spiffe_id: 'SPIFFE://example.org/x' } };
    const n = normalizeRequest(r);
    expect(n.ok).toBe(false);
    if (!n.ok) expect(n.reason).toMatch(/^target\.spiffe_id is not a valid SPIFFE ID \(ERR_SPIFFEID_WRONG_SCHEME/);
  });
});

describe('spiffeParts agrees with parseSpiffeId (differential property)', () => {
  const hostile = fc
    .array(
      fc.constantFrom(
        'spiffe://',
        'SPIFFE://',
        'example.org',
        'Example.org',
        '/ns/',
        'prod',
        '/sa/',
        'api',
        '/',
        '//',
        '/..',
        '/.',
        '%20',
        '#',
        '?',
        ':1',
        '@',
      ),
      { maxLength: 8 },
    )
    .map((xs) => xs.join(''));

  it('same accept/reject and the same trust domain and path', () => {
    fc.assert(
      fc.property(fc.oneof(hostile, fc.string({ maxLength: 40 })), (text) => {
        let want: { td: string; path: string } | undefined;
        try {
          const id = parseSpiffeId(text);
          want = { td: id.trustDomain.name, path: id.path };
        } catch (e) {
          if (!(e instanceof SpiffeIdError)) throw e;
        }
        const got = spiffeParts(text);
        expect(got && { td: got.trustDomain, path: got.path }).toEqual(want);
      }),
      { numRuns: 3000 },
    );
  });
});
