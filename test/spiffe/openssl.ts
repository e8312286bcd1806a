/**
 * Test PKI made with the openssl CLI, so X.509 tests never trust nevertrust's own builder.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class OpenSslPki {
  readonly dir: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'nt-pki-'));
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), '1000\n');
    writeFileSync(join(this.dir, 'req.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      [
        '[ca]',
        'default_ca=CA_default',
        '[CA_default]',
        `dir=${this.dir}`,
        'database=$dir/index.txt',
        'serial=$dir/serial',
        'new_certs_dir=$dir',
        'default_md=sha256',
        'policy=policy_any',
        'unique_subject=no',
        'copy_extensions=none',
        'email_in_dn=no',
        '[policy_any]',
        'commonName=optional',
        'organizationName=optional',
        '',
      ].join('\n'),
    );
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  openssl(args: string[], input?: string): string {
    return execFileSync('openssl', args, { cwd: this.dir, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString('utf8');
  }

  /** Generates a private key file and returns its path. */
  key(name: string, type: 'ec' | 'rsa' = 'ec'): string {
    const out = this.path(`${name}.key`);
    if (type === 'ec')
      this.openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);
    else this.openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', out]);
    return out;
  }

  /** Self-signed certificate with the given extensions (`-addext` lines). Returns PEM. */
  selfSigned(name: string, subj: string, exts: string[], days = 2): string {
    const key = this.key(name);
    const out = this.path(`${name}.pem`);
    const args = [
      'req',
      '-x509',
      '-new',
      '-config',
      this.path('req.cnf'),
      '-key',
      key,
      '-subj',
      subj,
      '-days',
      String(days),
      '-out',
      out,
    ];
    for (const e of exts) args.push('-addext', e);
    this.openssl(args);
    return readFileSync(out, 'utf8');
  }

  /**
   * Issues a certificate for a fresh key, signed by `issuer` (name of a previous cert/key pair),
   * with an extension section given as lines. Dates as openssl `YYMMDDHHMMSSZ` strings.
   */
  issue(
    name: string,
    issuer: string,
    opts: {
      subj: string;
      exts: string[];
      startdate?: string;
      enddate?: string;
      days?: number;
      keyType?: 'ec' | 'rsa';
      /** Reuse the key of an earlier certificate instead of generating one. */
      keyOf?: string;
    },
  ): string {
    const key = opts.keyOf ? this.path(`${opts.keyOf}.key`) : this.key(name, opts.keyType);
    const csr = this.path(`${name}.csr`);
    this.openssl(['req', '-new', '-config', this.path('req.cnf'), '-key', key, '-subj', opts.subj, '-out', csr]);
    const ext = this.path(`${name}.ext`);
    writeFileSync(ext, `[ext]\n${opts.exts.join('\n')}\n`);
    const out = this.path(`${name}.pem`);
    const args = [
      'ca',
      '-batch',
      '-config',
      this.path('ca.cnf'),
      '-notext',
      '-rand_serial',
      '-cert',
      this.path(`${issuer}.pem`),
      '-keyfile',
      this.path(`${issuer}.key`),
      '-in',
      csr,
      '-out',
      out,
      '-extfile',
      ext,
      '-extensions',
      'ext',
      '-subj',
      opts.subj,
    ];
    if (opts.startdate) args.push('-startdate', opts.startdate);
    if (opts.enddate) args.push('-enddate', opts.enddate);
    if (!opts.enddate) args.push('-days', String(opts.days ?? 1));
    this.openssl(args);
    return readFileSync(out, 'utf8');
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const CA_EXTS = (td: string): string[] => [
  'basicConstraints=critical,CA:TRUE',
  'keyUsage=critical,keyCertSign,cRLSign',
  'subjectKeyIdentifier=hash',
  `subjectAltName=URI:spiffe://${td}`,
];

export const LEAF_EXTS = (id: string): string[] => [
  'basicConstraints=critical,CA:FALSE',
  'keyUsage=critical,digitalSignature,keyEncipherment,keyAgreement',
  'extendedKeyUsage=serverAuth,clientAuth',
  `subjectAltName=URI:${id}`,
  'subjectKeyIdentifier=hash',
  'authorityKeyIdentifier=keyid',
];

/** openssl date string `YYMMDDHHMMSSZ` for a Date. */
export function osslDate(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
}
