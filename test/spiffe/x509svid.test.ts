import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleSet,
  TrustBundle,
  validateX509Svid,
  verifyX509Svid,
  X509SvidError,
  spiffeIdFromCertificate,
} from '../../src/spiffe/index.js';
import { CA_EXTS, LEAF_EXTS, OpenSslPki, osslDate } from './openssl.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/prod/sa/api';
let pki: OpenSslPki;
let bundle: TrustBundle;
const pem: Record<string, string> = {};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof X509SvidError)) throw e;
    return e.code;
  }
}

const withoutLine = (exts: string[], prefix: string, repl?: string): string[] =>
  exts.flatMap((e) => (e.startsWith(prefix) ? (repl === undefined ? [] : [repl]) : [e]));

beforeAll(() => {
  pki = new OpenSslPki();
  pem.root = pki.selfSigned('root', '/O=example/CN=example.org root', CA_EXTS(TD), 3);
  pem.other = pki.selfSigned('other', '/O=other/CN=other.org root', CA_EXTS('other.org'), 3);
  bundle = TrustBundle.fromPem(TD, pem.root);
  const leaf = (
    name: string,
    exts: string[],
    more: Partial<Parameters<OpenSslPki['issue']>[2]> = {},
    issuer = 'root',
  ) => (pem[name] = pki.issue(name, issuer, { subj: `/O=example/CN=${name}`, exts, ...more }));

  leaf('good', LEAF_EXTS(ID));
  leaf('rsa', LEAF_EXTS(ID), { keyType: 'rsa' });
  leaf('leafCa', withoutLine(LEAF_EXTS(ID), 'basicConstraints', 'basicConstraints=critical,CA:TRUE'));
  leaf('twoUris', withoutLine(LEAF_EXTS(ID), 'subjectAltName', `subjectAltName=URI:${ID},URI:spiffe://example.org/b`));
  leaf('noUri', withoutLine(LEAF_EXTS(ID), 'subjectAltName', 'subjectAltName=DNS:api.example.org'));
  leaf('noDigSig', withoutLine(LEAF_EXTS(ID), 'keyUsage', 'keyUsage=critical,keyEncipherment'));
  leaf('kuNotCritical', withoutLine(LEAF_EXTS(ID), 'keyUsage', 'keyUsage=digitalSignature'));
  leaf('noKu', withoutLine(LEAF_EXTS(ID), 'keyUsage'));
  leaf('certSign', withoutLine(LEAF_EXTS(ID), 'keyUsage', 'keyUsage=critical,digitalSignature,keyCertSign'));
  leaf('crlSign', withoutLine(LEAF_EXTS(ID), 'keyUsage', 'keyUsage=critical,digitalSignature,cRLSign'));
  leaf('serverOnly', withoutLine(LEAF_EXTS(ID), 'extendedKeyUsage', 'extendedKeyUsage=serverAuth'));
  leaf('noEku', withoutLine(LEAF_EXTS(ID), 'extendedKeyUsage'));
  leaf('badId', withoutLine(LEAF_EXTS(ID), 'subjectAltName', 'subjectAltName=URI:spiffe://Example.org/x'));
  // X509-SVID §3.1/§5.2: a leaf's ID must have a path; the trust-domain ID names the authority.
  leaf('tdOnly', withoutLine(LEAF_EXTS(ID), 'subjectAltName', 'subjectAltName=URI:spiffe://example.org'));
  leaf('upperScheme', withoutLine(LEAF_EXTS(ID), 'subjectAltName', 'subjectAltName=URI:SPIFFE://example.org/ok'));
  // `\#`: in an openssl config an unescaped `#` starts a comment and would cut the fragment off.
  leaf('fragment', withoutLine(LEAF_EXTS(ID), 'subjectAltName', `subjectAltName=URI:${ID}\\#x`));
  const day = 86_400_000;
  leaf('expired', LEAF_EXTS(ID), {
    startdate: osslDate(new Date(Date.now() - 3 * day)),
    enddate: osslDate(new Date(Date.now() - day)),
  });
  leaf('future', LEAF_EXTS(ID), {
    startdate: osslDate(new Date(Date.now() + day)),
    enddate: osslDate(new Date(Date.now() + 2 * day)),
  });
  leaf('otherTd', LEAF_EXTS(ID), {}, 'other');
  leaf('critPolicy', [...LEAF_EXTS(ID), 'certificatePolicies=critical,1.2.3.4']);
  pem.selfSigned = pki.selfSigned(
    'selfSigned',
    '/O=example/CN=self',
    LEAF_EXTS(ID).filter((e) => !e.startsWith('authorityKeyIdentifier')),
  );

  // intermediates
  pem.inter = pki.issue('inter', 'root', { subj: '/O=example/CN=intermediate', exts: CA_EXTS(TD) });
  leaf('viaInter', LEAF_EXTS(ID), {}, 'inter');
  pem.interNoCertSign = pki.issue('interNoCertSign', 'root', {
    subj: '/O=example/CN=intermediate-nocertsign',
    exts: withoutLine(CA_EXTS(TD), 'keyUsage', 'keyUsage=critical,cRLSign,digitalSignature'),
  });
  leaf('viaInterNoCertSign', LEAF_EXTS(ID), {}, 'interNoCertSign');
  pem.interNotCa = pki.issue('interNotCa', 'root', {
    subj: '/O=example/CN=intermediate-notca',
    exts: withoutLine(CA_EXTS(TD), 'basicConstraints', 'basicConstraints=critical,CA:FALSE'),
  });
  leaf('viaInterNotCa', LEAF_EXTS(ID), {}, 'interNotCa');
  pem.interPath = pki.issue('interPath', 'root', {
    subj: '/O=example/CN=intermediate-path',
    exts: withoutLine(CA_EXTS(TD), 'subjectAltName', 'subjectAltName=URI:spiffe://example.org/ca'),
  });
  leaf('viaInterPath', LEAF_EXTS(ID), {}, 'interPath');
  // pathLen: a root with pathlen:0 cannot have an intermediate below it
  pem.root0 = pki.selfSigned(
    'root0',
    '/O=example/CN=root pathlen0',
    withoutLine(CA_EXTS(TD), 'basicConstraints', 'basicConstraints=critical,CA:TRUE,pathlen:0'),
  );
  pem.inter0 = pki.issue('inter0', 'root0', { subj: '/O=example/CN=intermediate under pathlen0', exts: CA_EXTS(TD) });
  leaf('viaInter0', LEAF_EXTS(ID), {}, 'inter0');
  leaf('direct0', LEAF_EXTS(ID), {}, 'root0');
  // name constraints on the root (RFC 5280 requires them critical)
  const ncRoot = (name: string, nc: string) => {
    pem[name] = pki.selfSigned(name, `/O=example/CN=${name}`, [...CA_EXTS(TD), `nameConstraints=critical,${nc}`]);
  };
  ncRoot('ncOk', 'permitted;URI:example.org,permitted;DNS:internal');
  leaf(
    'viaNcOk',
    [...withoutLine(LEAF_EXTS(ID), 'subjectAltName'), `subjectAltName=URI:${ID},DNS:api.internal`],
    {},
    'ncOk',
  );
  ncRoot('ncOther', 'permitted;URI:.other.org');
  leaf('viaNcOther', LEAF_EXTS(ID), {}, 'ncOther');
  ncRoot('ncExcludedDns', 'excluded;DNS:evil.example');
  leaf(
    'viaNcExcludedDns',
    [...withoutLine(LEAF_EXTS(ID), 'subjectAltName'), `subjectAltName=URI:${ID},DNS:a.evil.example`],
    {},
    'ncExcludedDns',
  );
  ncRoot('ncIp', 'permitted;IP:10.0.0.0/255.0.0.0');
  leaf('viaNcIp', LEAF_EXTS(ID), {}, 'ncIp');
}, 120_000);

afterAll(() => pki?.cleanup());

describe('validateX509Svid accepts', () => {
  it('a leaf signed by the bundle CA (PEM, DER list, X509Certificate, concatenated DER)', () => {
    expect(validateX509Svid(pem.good as string, bundle).toString()).toBe(ID);
    const der = new X509Certificate(pem.good as string).raw;
    expect(validateX509Svid([der], bundle).toString()).toBe(ID);
    expect(validateX509Svid([new X509Certificate(der)], bundle).toString()).toBe(ID);
    expect(validateX509Svid(der, bundle).toString()).toBe(ID);
  });

  it('an RSA leaf and a leaf without EKU', () => {
    expect(validateX509Svid(pem.rsa as string, bundle).toString()).toBe(ID);
    expect(validateX509Svid(pem.noEku as string, bundle).toString()).toBe(ID);
  });

  it('a chain through an intermediate, and reports the verified path and expiry', () => {
    const chain = (pem.viaInter as string) + pem.inter;
    const v = verifyX509Svid(chain, bundle);
    expect(v.spiffeId.toString()).toBe(ID);
    expect(v.verifiedChain).toHaveLength(3);
    expect(v.expiresAt.getTime()).toBeLessThanOrEqual(
      new Date(new X509Certificate(pem.viaInter as string).validTo).getTime(),
    );
  });

  it('a leaf signed directly by a pathlen:0 root', () => {
    expect(validateX509Svid(pem.direct0 as string, TrustBundle.fromPem(TD, pem.root0 as string)).toString()).toBe(ID);
  });

  it('through a bundle set, picking the bundle of the leaf trust domain', () => {
    const set = bundleSet(bundle, TrustBundle.fromPem('other.org', pem.other as string));
    expect(validateX509Svid(pem.good as string, set).toString()).toBe(ID);
  });

  it('spiffeIdFromCertificate reads the URI SAN', () => {
    expect(spiffeIdFromCertificate(new X509Certificate(pem.good as string)).toString()).toBe(ID);
  });
});

describe('name constraints (URI and DNS forms)', () => {
  const under = (root: string) => TrustBundle.fromPem(TD, pem[root] as string);
  it('accepts names inside permitted subtrees', () => {
    expect(validateX509Svid(pem.viaNcOk as string, under('ncOk')).toString()).toBe(ID);
  });
  it('rejects a URI outside the permitted subtree and a DNS name in an excluded one', () => {
    expect(codeOf(() => validateX509Svid(pem.viaNcOther as string, under('ncOther')))).toBe(
      'ERR_X509SVID_NAME_CONSTRAINT_VIOLATION',
    );
    expect(codeOf(() => validateX509Svid(pem.viaNcExcludedDns as string, under('ncExcludedDns')))).toBe(
      'ERR_X509SVID_NAME_CONSTRAINT_VIOLATION',
    );
  });
  it('fails closed on a constraint form it does not process', () => {
    expect(codeOf(() => validateX509Svid(pem.viaNcIp as string, under('ncIp')))).toBe(
      'ERR_X509SVID_NAME_CONSTRAINTS_UNSUPPORTED',
    );
  });
});

describe('validateX509Svid rejects, each with its own code', () => {
  it.each([
    ['leafCa', 'ERR_X509SVID_LEAF_IS_CA'],
    ['twoUris', 'ERR_X509SVID_MULTIPLE_URI_SANS'],
    ['noUri', 'ERR_X509SVID_NO_URI_SAN'],
    ['noDigSig', 'ERR_X509SVID_LEAF_NO_DIGITAL_SIGNATURE'],
    ['kuNotCritical', 'ERR_X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL'],
    ['noKu', 'ERR_X509SVID_LEAF_KEY_USAGE_MISSING'],
    ['certSign', 'ERR_X509SVID_LEAF_KEY_CERT_SIGN'],
    ['crlSign', 'ERR_X509SVID_LEAF_CRL_SIGN'],
    ['serverOnly', 'ERR_X509SVID_LEAF_EXT_KEY_USAGE'],
    ['badId', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
    ['tdOnly', 'ERR_X509SVID_LEAF_ID_WITHOUT_PATH'],
    ['upperScheme', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
    ['fragment', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
    ['expired', 'ERR_X509SVID_EXPIRED'],
    ['future', 'ERR_X509SVID_NOT_YET_VALID'],
    ['otherTd', 'ERR_X509SVID_UNKNOWN_AUTHORITY'],
    ['selfSigned', 'ERR_X509SVID_SELF_SIGNED_LEAF'],
    ['critPolicy', 'ERR_X509SVID_UNHANDLED_CRITICAL_EXTENSION'],
  ])('%s → %s', (name, code) => {
    expect(codeOf(() => validateX509Svid(pem[name] as string, bundle))).toBe(code);
  });

  it('the leaf ID checks hold for spiffeIdFromCertificate too (the post-handshake helpers use it)', () => {
    expect(new X509Certificate(pem.fragment as string).subjectAltName).toBe(`URI:${ID}#x`);
    for (const [name, code] of [
      ['tdOnly', 'ERR_X509SVID_LEAF_ID_WITHOUT_PATH'],
      ['upperScheme', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
      ['fragment', 'ERR_X509SVID_INVALID_SPIFFE_ID'],
    ] as const) {
      expect(codeOf(() => spiffeIdFromCertificate(new X509Certificate(pem[name] as string)))).toBe(code);
    }
  });

  it('a broken signature', () => {
    const der = Buffer.from(new X509Certificate(pem.good as string).raw);
    der[der.length - 3] = (der[der.length - 3] as number) ^ 0x01;
    expect(codeOf(() => validateX509Svid([der], bundle))).toBe('ERR_X509SVID_BAD_SIGNATURE');
  });

  it('a chain through an intermediate that lacks keyCertSign', () => {
    const chain = (pem.viaInterNoCertSign as string) + pem.interNoCertSign;
    expect(codeOf(() => validateX509Svid(chain, bundle))).toBe('ERR_X509SVID_SIGNER_NO_KEY_CERT_SIGN');
  });

  it('a chain through an intermediate with cA=false', () => {
    const chain = (pem.viaInterNotCa as string) + pem.interNotCa;
    expect(codeOf(() => validateX509Svid(chain, bundle))).toBe('ERR_X509SVID_SIGNER_NOT_CA');
  });

  it('a signing certificate whose SPIFFE ID has a path', () => {
    const chain = (pem.viaInterPath as string) + pem.interPath;
    expect(codeOf(() => validateX509Svid(chain, bundle))).toBe('ERR_X509SVID_SIGNER_ID_HAS_PATH');
  });

  it('a path longer than the root pathLen allows', () => {
    const chain = (pem.viaInter0 as string) + pem.inter0;
    expect(codeOf(() => validateX509Svid(chain, TrustBundle.fromPem(TD, pem.root0 as string)))).toBe(
      'ERR_X509SVID_PATH_LEN_EXCEEDED',
    );
  });

  it('a missing intermediate', () => {
    expect(codeOf(() => validateX509Svid(pem.viaInter as string, bundle))).toBe('ERR_X509SVID_UNKNOWN_AUTHORITY');
  });

  it('no bundle for the leaf trust domain, even when another domain has the signer (never merged)', () => {
    const otherOnly = bundleSet(TrustBundle.fromPem('other.org', pem.root as string));
    expect(codeOf(() => validateX509Svid(pem.good as string, otherOnly))).toBe('ERR_X509SVID_NO_BUNDLE');
  });

  it('an empty chain and garbage', () => {
    expect(codeOf(() => validateX509Svid([], bundle))).toBe('ERR_X509SVID_EMPTY_CHAIN');
    expect(codeOf(() => validateX509Svid([Buffer.from([0x30, 0x03, 1, 2, 3])], bundle))).toBe('ERR_X509SVID_MALFORMED');
  });

  it('validity is judged at the given time', () => {
    const later = new Date(Date.now() + 10 * 86_400_000);
    expect(codeOf(() => validateX509Svid(pem.good as string, bundle, { now: later }))).toBe('ERR_X509SVID_EXPIRED');
  });
});
