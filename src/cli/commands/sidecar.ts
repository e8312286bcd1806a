/**
 * `nevertrust sidecar --config FILE`: the enforcing proxy beside a service (see docs/enforcement.md).
 */
import type { Command } from 'commander';
import { loadSidecarConfig, SidecarConfigError, startSidecar } from '../../pep/sidecar.js';

/**
 * Registers `nevertrust sidecar`.
 *
 * @example
 * ```ts
 * registerSidecarCommands(program); // nevertrust sidecar --config sidecar.yaml
 * ```
 */
export function registerSidecarCommands(program: Command): void {
  program
    .command('sidecar')
    .description('run the mTLS sidecar: inbound policy enforcement, outbound mTLS origination')
    .requiredOption('--config <file>', 'sidecar YAML config')
    .action(async (o: { config: string }) => {
      let config: ReturnType<typeof loadSidecarConfig>;
      try {
        config = loadSidecarConfig(o.config);
      } catch (e) {
        if (e instanceof SidecarConfigError) {
          process.stderr.write(`error: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
      const log = (msg: string, fields?: Record<string, unknown>) =>
        process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg, ...fields })}\n`);
      const sc = await startSidecar(config, {
        log,
        // Until the sidecar ships decisions to the audit log, each one is a JSON line on stderr.
        recorder: { record: (e) => log('access decision', { ...e }) },
      });
      log('sidecar ready', { inbound: sc.inboundPort, outbound: sc.outboundPort });
      const stop = () => {
        void sc.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
