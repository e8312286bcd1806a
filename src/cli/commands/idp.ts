/**
 * `nevertrust idp --config FILE`: the built-in OpenID provider on its own (see docs/people.md).
 * `nevertrust up` runs the same `startIdentityProvider` in-process.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../errors.js';

const EXAMPLE = `
Example config (idp.yaml):
  issuer: https://idp.example.test:9443
  listen: { host: 0.0.0.0, port: 9443 }
  tls: { cert: idp.crt, key: idp.key }
  data_dir: ./.nevertrust            # the store with the users (or database_url: postgres://…)
  clients:
    - client_id: access-proxy
      client_secret_file: access-proxy.secret
      redirect_uris: [https://app.example.test/.nevertrust/callback]
      post_logout_redirect_uris: [https://app.example.test/]
      backchannel_logout_uri: https://app.example.test/.nevertrust/backchannel-logout`;

/**
 * Registers `nevertrust idp`.
 *
 * @example
 * ```ts
 * registerIdpCommands(program); // nevertrust idp --config idp.yaml
 * ```
 */
export function registerIdpCommands(program: Command): void {
  program
    .command('idp')
    .description('run the built-in OpenID Connect provider (people from `nevertrust user`)')
    .option('--config <file>', 'provider YAML config (required)')
    .addHelpText('after', `\nExamples:\n  $ nevertrust idp --config idp.yaml\n${EXAMPLE}`)
    .action(async (_opts: unknown, cmd: Command) => {
      // `--config` is also the program-wide option, which commander parses first: read it from there.
      const file = cmd.optsWithGlobals<{ config?: string }>().config;
      if (!file) throw new CliError('idp: --config FILE is required (see `nevertrust idp --help`)', 2);
      const [{ pino }, idp, { openStore }, { normalizeEvent }] = await Promise.all([
        import('pino'),
        import('../../access/idp/index.js'),
        import('../../store/index.js'),
        import('../../audit/index.js'),
      ]);
      let loaded: ReturnType<typeof idp.loadIdpConfig>;
      try {
        loaded = idp.loadIdpConfig(file);
      } catch (e) {
        if (e instanceof idp.IdpConfigFileError) throw new CliError(e.message, 2);
        throw e;
      }
      const logger = pino({ base: { service: 'nevertrust-idp' } }, pino.destination(2));
      const store = await openStore({ dataDir: loaded.dataDir, url: loaded.config.database_url });
      // The provider's keys are sealed in the store under the KEK, as the CA's (NEVERTRUST_KEK, else <data-dir>/kek).
      const { loadOrCreateKek } = await import('../../ca/kek.js');
      const { kek } = await loadOrCreateKek({ file: join(loaded.dataDir, 'kek') });
      const running = await idp.startIdentityProvider({
        kek,
        issuer: loaded.config.issuer,
        listen: loaded.config.listen,
        tls: loaded.tls,
        store,
        clients: loaded.clients,
        ...(loaded.outboundCa !== undefined && { outboundCa: loaded.outboundCa }),
        // Logins (allowed and refused) as audit-shaped log lines; never a password.
        record: (e) => logger.info({ audit: normalizeEvent(e) }, 'audit event'),
        onError: (err) => logger.error({ err }, 'identity provider internal error'),
      });
      process.stdout.write(`nevertrust idp: issuer ${running.issuer}, listening on ${running.url}\n`);
      await new Promise<void>((done) => {
        const stop = () => done();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await running.close();
      await store.close();
    });
}
