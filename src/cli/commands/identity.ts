/**
 * Identity commands: mint and validate X.509-SVIDs and JWT-SVIDs, show the trust bundle.
 * Minting goes through the running server (admin credential from the data dir); when no server
 * answers, it opens the data dir's CA directly. Keys for minted SVIDs are generated here, in this
 * process, and only a CSR leaves it.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { KeyType } from '../../ca/index.js';
import { parseDuration } from '../../util/duration.js';
import type { caOpener } from '../../server/plugins/ca.js';
import type { TrustBundle, TrustDomain } from '../../spiffe/index.js';
import { type AdminClient, adminClient } from '../admin-client.js';
import { resolveConfig } from '../context.js';
import { CliError } from '../errors.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const SERVER_OPT = [
  '--server <url>',
  'server API URL (default: from the config); without a server, the data dir is used',
] as const;

function isUnreachable(e: unknown): boolean {
  return e instanceof CliError && /cannot reach the nevertrust server/.test(e.message);
}

/** Runs `remote` against the server, or `local` against the data dir's CA when no server answers. */
async function viaServerOrDataDir<T>(
  cmd: Command,
  remote: (client: AdminClient) => Promise<T>,
  local: (ca: Awaited<ReturnType<Awaited<ReturnType<typeof caOpener>>['open']>>) => Promise<T>,
): Promise<T> {
  try {
    return await remote(await adminClient(cmd));
  } catch (e) {
    const explicitServer = cmd.optsWithGlobals<{ server?: string }>().server !== undefined;
    if (explicitServer || !(isUnreachable(e) || (e instanceof CliError && /no admin credential/.test(e.message))))
      throw e;
  }
  const config = await resolveConfig(cmd);
  const [{ openStore }, { caOpener }] = await Promise.all([
    import('../../store/index.js'),
    import('../../server/plugins/ca.js'),
  ]);
  const store = await openStore({ url: config.database.url, dataDir: config.data_dir });
  try {
    const { open, kekGenerated, kekFile } = await caOpener(config, store);
    if (kekGenerated) process.stderr.write(`warning: generated a new key-encryption key ${kekFile}: back it up\n`);
    return await local(await open());
  } finally {
    await store.close();
  }
}

function seconds(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v);
  } catch (e) {
    throw new CliError(`${what}: ${(e as Error).message}`, 2);
  }
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const isJwks = (text: string) => text.trimStart().startsWith('{');

/**
 * The trust domain a bundle file belongs to, as its X.509 authorities name it (X509-SVID §3.2: a
 * signing certificate's URI SAN is `spiffe://<td>`); undefined when none does. Several different
 * names are refused: a bundle belongs to one trust domain.
 */
async function trustDomainNamedBy(file: string, text: string): Promise<string | undefined> {
  const { certificatesFromPem, parseSpiffeId } = await import('../../spiffe/index.js');
  let ders: Buffer[];
  try {
    ders = isJwks(text)
      ? ((JSON.parse(text) as { keys?: { use?: unknown; x5c?: unknown }[] }).keys ?? [])
          .filter((k) => k.use === 'x509-svid' && Array.isArray(k.x5c) && typeof k.x5c[0] === 'string')
          .map((k) => Buffer.from((k.x5c as string[])[0] as string, 'base64'))
      : certificatesFromPem(text);
  } catch (e) {
    throw new CliError(`bundle ${file}: ${(e as Error).message}`);
  }
  const named = new Set<string>();
  for (const der of ders) {
    let uris: string[] = [];
    try {
      uris = (new X509Certificate(der).subjectAltName ?? '')
        .split(', ')
        .filter((n) => n.startsWith('URI:spiffe://'))
        .map((n) => n.slice(4));
    } catch {
      continue; // bundleFromFile reports the broken certificate
    }
    for (const uri of uris) {
      try {
        const id = parseSpiffeId(uri);
        if (id.isTrustDomainId) named.add(id.trustDomain.name);
      } catch {
        // not a trust-domain ID: names nothing
      }
    }
  }
  if (named.size > 1) {
    throw new CliError(
      `bundle ${file} names several trust domains (${[...named].join(', ')}): a bundle belongs to one`,
    );
  }
  return [...named][0];
}

/** `--trust-domain`, parsed; a malformed one is a usage error. */
async function trustDomainOption(value: string): Promise<TrustDomain> {
  const { parseTrustDomain } = await import('../../spiffe/index.js');
  try {
    return parseTrustDomain(value);
  } catch (e) {
    throw new CliError(`--trust-domain: ${(e as Error).message}`, 2);
  }
}

/** `--spiffe-id` for minting: a valid SPIFFE ID that is not reserved for the server's own use. */
async function mintableSpiffeId(value: string): Promise<void> {
  const { parseSpiffeId, reservedIdReason } = await import('../../spiffe/index.js');
  let reserved: string | undefined;
  try {
    reserved = reservedIdReason(parseSpiffeId(value));
  } catch (e) {
    throw new CliError(`--spiffe-id: ${(e as Error).message}`, 2);
  }
  if (reserved !== undefined) throw new CliError(`--spiffe-id: ${reserved}`, 2);
}

/** A bundle file is PEM (CA certificates) or SPIFFE JWKS JSON, of the given trust domain. */
async function bundleFromFile(
  file: string,
  trustDomain: string,
  text = readText(file, 'bundle'),
): Promise<TrustBundle> {
  const { TrustBundle } = await import('../../spiffe/index.js');
  try {
    return isJwks(text) ? TrustBundle.fromJwks(trustDomain, text) : TrustBundle.fromPem(trustDomain, text);
  } catch (e) {
    throw new CliError(`bundle ${file}: ${(e as Error).message}`);
  }
}

export function registerIdentityCommands(program: Command): void {
  const x509 = program.command('x509').description('X.509-SVIDs: mint and validate');

  x509
    .command('mint')
    .description(
      'issue an X.509-SVID: writes svid.pem (leaf first, then chain), svid.key (PKCS#8, mode 0600) and bundle.pem',
    )
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID of the SVID, in this trust domain')
    .option('--ttl <duration>', 'lifetime (default ca.x509_svid_ttl, 1h; capped by the CA)')
    .option('--dns <name>', 'DNS SAN (repeatable)', collect)
    .option('--key-type <type>', 'ec-p256 (default), ec-p384 or rsa-2048', 'ec-p256')
    .requiredOption('--out <dir>', 'directory to write svid.pem, svid.key and bundle.pem into')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust x509 mint --spiffe-id spiffe://example.org/ns/payments/sa/api-gateway --out ./certs
  $ nevertrust x509 mint --spiffe-id spiffe://example.org/web --dns web.internal --ttl 30m --out /tmp/web`,
    )
    .action(
      async (o: { spiffeId: string; ttl?: string; dns?: string[]; keyType: string; out: string }, cmd: Command) => {
        if (!['ec-p256', 'ec-p384', 'rsa-2048'].includes(o.keyType))
          throw new CliError(`--key-type: unknown key type ${o.keyType}`, 2);
        const { certificatesToPem, createCsr, csrToPem, generatePrivateKey } = await import('../../ca/index.js');
        // Checked here too, because without a server the data dir's CA signs directly.
        await mintableSpiffeId(o.spiffeId);
        const ttl = seconds(o.ttl, '--ttl');
        const key = generatePrivateKey(o.keyType as KeyType);
        const csr = createCsr(key);
        const out = await viaServerOrDataDir(
          cmd,
          async (client) =>
            client.call(
              'POST',
              '/v1/admin/x509/sign',
              {
                csr: csrToPem(csr),
                spiffe_id: o.spiffeId,
                dns_names: o.dns ?? [],
                ...(ttl !== undefined && { ttl }),
              },
              (await import('../../api/ca.js')).adminX509SvidSchema,
            ),
          async (ca) => {
            const svid = await ca.signX509SvidFromCsrAsync({
              csr,
              spiffeId: o.spiffeId,
              dnsNames: o.dns ?? [],
              ttlSeconds: ttl,
            });
            await ca.tick();
            return {
              chain_pem: certificatesToPem(svid.chain),
              bundle_pem: ca.bundle().toPem(),
              spiffe_id: svid.spiffeId.toString(),
              not_after: svid.notAfter.toISOString(),
            };
          },
        );
        await mkdir(o.out, { recursive: true });
        writeFileSync(join(o.out, 'svid.pem'), out.chain_pem);
        writeFileSync(join(o.out, 'svid.key'), key.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
        writeFileSync(join(o.out, 'bundle.pem'), out.bundle_pem);
        process.stdout.write(
          `${out.spiffe_id}\nwrote ${join(o.out, 'svid.pem')}, svid.key, bundle.pem (valid until ${out.not_after})\n`,
        );
      },
    );

  x509
    .command('validate <cert>')
    .description(
      'validate an X.509-SVID (PEM, leaf first) against a bundle: prints the SPIFFE ID (exit 0) or the reason (exit 1)',
    )
    .requiredOption('--bundle <file>', 'trust bundle: PEM CA certificates or SPIFFE JWKS of one trust domain')
    .option(
      '--trust-domain <td>',
      "the bundle's trust domain (default: the one its CA certificates name); the SVID must belong to it",
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust x509 validate --bundle certs/bundle.pem certs/svid.pem\n  $ nevertrust x509 validate --trust-domain example.org --bundle bundle.json certs/svid.pem',
    )
    .action(async (cert: string, o: { bundle: string; trustDomain?: string }) => {
      const pem = readText(cert, 'certificate');
      const bundleText = readText(o.bundle, 'bundle');
      const { spiffeIdFromCertificate, validateX509Svid } = await import('../../spiffe/index.js');
      // The bundle decides the trust domain, never the SVID under test: a bundle belongs to one trust domain.
      const td = o.trustDomain
        ? (await trustDomainOption(o.trustDomain)).name
        : await trustDomainNamedBy(o.bundle, bundleText);
      if (td === undefined) {
        throw new CliError(
          `invalid: bundle ${o.bundle} does not name its trust domain (no spiffe://<td> URI SAN on its CA certificates); pass --trust-domain`,
        );
      }
      try {
        const claimed = spiffeIdFromCertificate(new X509Certificate(pem)).trustDomain.name;
        if (claimed !== td)
          throw new Error(`the SVID's trust domain ${claimed} is not the bundle's trust domain ${td}`);
        process.stdout.write(`${validateX509Svid(pem, await bundleFromFile(o.bundle, td, bundleText)).toString()}\n`);
      } catch (e) {
        if (e instanceof CliError) throw e;
        throw new CliError(`invalid: ${(e as Error).message}`);
      }
    });

  const jwt = program.command('jwt').description('JWT-SVIDs: mint and validate');

  jwt
    .command('mint')
    .description('issue a JWT-SVID and print it')
    .requiredOption('--spiffe-id <id>', "SPIFFE ID (the token's sub)")
    .requiredOption('--audience <aud>', 'audience (repeatable)', collect)
    .option('--ttl <duration>', 'lifetime (default ca.jwt_svid_ttl, 5m)')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust jwt mint --spiffe-id spiffe://example.org/ns/payments/sa/api-gateway --audience payment-service',
    )
    .action(async (o: { spiffeId: string; audience: string[]; ttl?: string }, cmd: Command) => {
      await mintableSpiffeId(o.spiffeId);
      const ttl = seconds(o.ttl, '--ttl');
      const out = await viaServerOrDataDir(
        cmd,
        async (client) =>
          client.call(
            'POST',
            '/v1/admin/jwt/mint',
            { spiffe_id: o.spiffeId, audience: o.audience, ...(ttl !== undefined && { ttl }) },
            (await import('../../api/ca.js')).adminJwtSvidSchema,
          ),
        async (ca) => {
          const t = await ca.mintJwtSvid({ spiffeId: o.spiffeId, audience: o.audience, ttlSeconds: ttl });
          await ca.tick();
          return { token: t.token };
        },
      );
      process.stdout.write(`${out.token}\n`);
    });

  jwt
    .command('validate <token>')
    .description('validate a JWT-SVID for an audience: prints the SPIFFE ID (exit 0) or the reason (exit 1)')
    .requiredOption('--audience <aud>', "the audience this validator is (must be in the token's aud)")
    .option('--bundle <file>', "SPIFFE JWKS bundle file; default: the server's /v1/bundle, else the data dir")
    .option(
      '--trust-domain <td>',
      "the bundle's trust domain (default: the one the bundle's CA certificates name, else the config's); the token's sub must belong to it",
    )
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust jwt validate --audience payment-service eyJhbGciOiJFUzI1NiIs…\n  $ nevertrust jwt validate --audience payment-service --trust-domain example.org --bundle bundle.json "$TOKEN"',
    )
    .action(async (token: string, o: { audience: string; bundle?: string; trustDomain?: string }, cmd: Command) => {
      const { parseTrustDomain, validateJwtSvid } = await import('../../spiffe/index.js');
      // The bundle decides the trust domain, never the token's own sub: a bundle belongs to one trust domain.
      const wanted = o.trustDomain ? (await trustDomainOption(o.trustDomain)).name : undefined;
      let td: string;
      let bundle: TrustBundle;
      if (o.bundle !== undefined) {
        const text = readText(o.bundle, 'bundle');
        td = wanted ?? (await trustDomainNamedBy(o.bundle, text)) ?? (await resolveConfig(cmd)).trust_domain;
        bundle = await bundleFromFile(o.bundle, td, text);
      } else {
        // The server's bundle is the bundle of the server's trust domain.
        td = (await resolveConfig(cmd)).trust_domain;
        if (wanted !== undefined && wanted !== td) {
          throw new CliError(`--trust-domain ${wanted}: the server's bundle is the bundle of ${td}; pass --bundle`, 2);
        }
        bundle = await fetchBundle(cmd, td);
      }
      try {
        const svid = await validateJwtSvid(token, bundle, o.audience, { trustDomain: parseTrustDomain(td) });
        process.stdout.write(`${svid.spiffeId.toString()}\n`);
      } catch (e) {
        throw new CliError(`invalid: ${(e as Error).message}`);
      }
    });

  const ca = program.command('ca').description('the certificate authority of the trust domain');
  ca.command('show')
    .description('show the CA generations (prepared, active, retired), their validity and the bundle sequence')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust ca show')
    .action(async (_o: unknown, cmd: Command) => {
      process.stdout.write(
        `${JSON.stringify(await (await adminClient(cmd)).callUnchecked('GET', '/v1/admin/ca'), null, 2)}\n`,
      );
    });
  ca.command('rotate')
    .description(
      'advance the CA rotation now: prepare the next CA, or activate the prepared one (retired CAs stay in the bundle until their SVIDs expire)',
    )
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust ca rotate     # run twice: prepare and publish, then activate')
    .action(async (_o: unknown, cmd: Command) => {
      const { caRotateSchema } = await import('../../api/ca.js');
      const r = await (await adminClient(cmd)).call('POST', '/v1/admin/ca/rotate', undefined, caRotateSchema);
      process.stdout.write(`${r.changed ? 'rotated' : 'nothing to rotate'} (bundle sequence ${r.sequence})\n`);
    });

  program
    .command('bundle')
    .description('the trust bundle')
    .command('show')
    .description('print the trust bundle (PEM CA certificates, or SPIFFE JWKS with the JWT keys)')
    .option('--format <format>', 'pem or spiffe', 'pem')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust bundle show > bundle.pem\n  $ nevertrust bundle show --format spiffe',
    )
    .action(async (o: { format: string }, cmd: Command) => {
      if (o.format !== 'pem' && o.format !== 'spiffe') throw new CliError('--format must be pem or spiffe', 2);
      const config = await resolveConfig(cmd);
      const bundle = await fetchBundle(cmd, config.trust_domain);
      process.stdout.write(o.format === 'pem' ? bundle.toPem() : `${JSON.stringify(bundle.toJwks(), null, 2)}\n`);
    });
}

/** The bundle from the server's public endpoint, or from the data dir's CA when no server answers. */
async function fetchBundle(cmd: Command, trustDomain: string): Promise<TrustBundle> {
  const config = await resolveConfig(cmd);
  const [{ request }, { TrustBundle }] = await Promise.all([import('undici'), import('../../spiffe/index.js')]);
  const server = cmd.optsWithGlobals<{ server?: string }>().server;
  const base = (server ?? `http://${config.server.host}:${config.server.port}`).replace(/\/+$/, '');
  try {
    const res = await request(`${base}/v1/bundle`);
    if (res.statusCode !== 200) throw new CliError(`server refused (${res.statusCode}) the bundle request`);
    return TrustBundle.fromJwks(trustDomain, await res.body.text());
  } catch (e) {
    if (e instanceof CliError || server !== undefined)
      throw e instanceof CliError ? e : new CliError(`cannot reach ${base}: ${(e as Error).message}`);
  }
  const [{ openStore }, { caOpener }] = await Promise.all([
    import('../../store/index.js'),
    import('../../server/plugins/ca.js'),
  ]);
  const store = await openStore({ url: config.database.url, dataDir: config.data_dir });
  try {
    const { open } = await caOpener(config, store);
    return (await open()).bundle();
  } finally {
    await store.close();
  }
}
