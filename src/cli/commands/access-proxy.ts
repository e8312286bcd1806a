/**
 * `nevertrust access-proxy --config FILE`: the identity-aware HTTPS reverse proxy for people in
 * front of internal web apps (see docs/people.md).
 */
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../errors.js';

const EXAMPLE = `
Examples:
  $ nevertrust access-proxy --config access-proxy.yaml

An example config (all fields in docs/people.md):
  listen: 0.0.0.0:8443
  svid: { workload_api: unix:///run/nevertrust/agent.sock }
  policies: /etc/nevertrust/policies
  audit: { server: https://nevertrust.internal:8081 }
  assertion: { server: https://nevertrust.internal:8081 }
  auth: { issuer: https://accounts.example.com, client_id: wiki-proxy, client_secret_file: /etc/nevertrust/oidc.secret }
  mfa: { first_login_enrollment: false }   # people's second factors at /.nevertrust/mfa; STEP_UP rules challenge
  devices: { max_posture_age: 15m }        # device certificates bind sessions; older posture is unknown
  routes:
    - name: wiki
      from: { host: wiki.example.com }
      to: http://10.0.0.12:8080
    - name: grafana
      from: { host: ops.example.com, path_prefix: /grafana }
      to: https://10.0.0.13:8443
      to_spiffe_id: spiffe://example.com/ns/ops/sa/grafana
      websockets: true
`;

/**
 * Registers `nevertrust access-proxy`.
 *
 * @example
 * ```ts
 * registerAccessProxyCommands(program); // nevertrust access-proxy --config access-proxy.yaml
 * ```
 */
export function registerAccessProxyCommands(program: Command): void {
  program
    .command('access-proxy')
    .description(
      "run the access proxy: people sign in with the organization's OpenID provider; every request decided by policy",
    )
    .option('--config <file>', 'access proxy YAML config (required)')
    .addHelpText('after', EXAMPLE)
    .action(async (_opts: unknown, cmd: Command) => {
      // `--config` is also the program-wide option, which commander parses first: read it from there.
      const file = cmd.optsWithGlobals<{ config?: string }>().config;
      if (!file) throw new CliError('access-proxy: --config FILE is required (see docs/people.md)', 2);
      const [{ pino }, proxy, { sidecarShipper, SidecarConfigError }] = await Promise.all([
        import('pino'),
        import('../../access/proxy/index.js'),
        import('../../pep/sidecar/index.js'),
      ]);
      let config: ReturnType<typeof proxy.loadAccessProxyConfig>;
      try {
        config = proxy.loadAccessProxyConfig(file);
      } catch (e) {
        if (e instanceof proxy.AccessProxyConfigError) throw new CliError(e.message, 2);
        throw e;
      }
      const logger = pino({ base: { service: 'nevertrust-access-proxy' } }, pino.destination({ dest: 2, sync: false }));
      const log = (msg: string, fields?: Record<string, unknown>) => logger.info(fields ?? {}, msg);
      const audit = config.audit;
      const spillDir = audit ? resolve(audit.spill_dir ?? join(dirname(file), '.nevertrust-access-proxy-spill')) : '';
      if (!config.auth) throw new CliError(`${file}: auth: required (the OpenID provider and the sessions)`, 2);
      // Files named in the config are relative to the config file, as in the other config files.
      const base = dirname(resolve(file));
      const at = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
      const authConfig = {
        ...config.auth,
        client_secret_file: at(config.auth.client_secret_file),
        ca_file: at(config.auth.ca_file),
        session: { ...config.auth.session, key_file: at(config.auth.session.key_file) as string },
      };
      const [{ openStore }, { createOidcAuthenticator, AccessAuthError }] = await Promise.all([
        import('../../store/index.js'),
        import('../../access/auth/index.js'),
      ]);
      const store = await openStore({ url: config.store.url, dataDir: resolve(base, config.store.data_dir) });
      // Logins, logouts and ended sessions go where decisions go: bound once the SVID exists.
      const fallback = { record: (e: object) => logger.info(e, 'access event') };
      let recorder: { record(e: Parameters<typeof fallback.record>[0]): void } = fallback;
      let running: Awaited<ReturnType<typeof proxy.startAccessProxy>>;
      try {
        const authenticator = await createOidcAuthenticator(authConfig, {
          sessions: store.accessSessions,
          record: (e) => recorder.record(e),
          logger,
        });
        // `mfa:` turns on the proxy's own second factors; TOTP secrets are sealed under the session key.
        const mfaRecord = (e: Parameters<typeof fallback.record>[0]) => recorder.record(e);
        const mfa = config.mfa
          ? {
              service: (await import('../../access/mfa/index.js')).createMfaService({
                store,
                kek: authenticator.kek,
                record: mfaRecord,
                totpIssuer: config.mfa.webauthn.rp_name,
                ...(config.mfa.attempts ? { attempts: config.mfa.attempts } : {}),
              }),
              record: mfaRecord,
            }
          : undefined;
        running = await proxy.startAccessProxy(config, {
          authenticator,
          log,
          // Enrolled devices from the same store (the server's, when shared): revocation within a second.
          devices: proxy.cachedDeviceLookup({ get: (id) => store.devices.get(id) }),
          audit: (e) => recorder.record(e),
          ...(mfa ? { mfa } : {}),
          ship: audit
            ? (source) => {
                const shipper = sidecarShipper(audit, source, file, { spillDir, logger });
                recorder = shipper;
                return { recorder: shipper, close: () => shipper.close(5000) };
              }
            : undefined,
          // Without an audit server, decisions go to the log.
          recorder: fallback,
        });
      } catch (e) {
        await store.close().catch(() => {});
        if (e instanceof SidecarConfigError || e instanceof AccessAuthError)
          throw new CliError(`${file}: ${e.message}`, 2);
        throw e;
      }
      log('access proxy ready', { port: running.port, routes: config.routes.length });
      const stop = () => {
        void running
          .close()
          .then(() => store.close())
          .finally(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
