/**
 * `nevertrust sidecar --config FILE`: the enforcing proxy beside a service (see docs/enforcement.md).
 */
import type { Command } from 'commander';
import { dirname, join, resolve } from 'node:path';
import { CliError } from '../errors.js';

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
    .option('--config <file>', 'sidecar YAML config (required)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust sidecar --config sidecar.yaml\n\nThe config format is in docs/enforcement.md.',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      // `--config` is also the program-wide option, which commander parses first: read it from there.
      const file = cmd.optsWithGlobals<{ config?: string }>().config;
      if (!file) throw new CliError('sidecar: --config FILE is required (see docs/enforcement.md)', 2);
      const o = { config: file };
      // The proxy, its logger and the audit shipper are loaded only when the sidecar runs.
      const [
        { pino },
        { loadSidecarConfig, SidecarConfigError, sidecarShipper, startSidecar },
        { announceReady, runPrimary, workerIndex },
        { default: cluster },
      ] = await Promise.all([
        import('pino'),
        import('../../pep/sidecar/index.js'),
        import('../../pep/sidecar/workers.js'),
        import('node:cluster'),
      ]);
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
      // Asynchronous, buffered log writes: a decision must never wait for a terminal or a pipe, and one
      // write per 32 KiB instead of one per line (flushed at least every 250 ms and on exit): each
      // write costs the event loop about as much as a request does.
      const dest = pino.destination({ dest: 2, sync: false, minLength: 32 * 1024, maxWrite: 64 * 1024 });
      const flusher = setInterval(() => dest.flush(), 250);
      flusher.unref();
      const worker = workerIndex();
      const logger = pino(
        { base: { service: 'nevertrust-sidecar', ...(worker === undefined ? {} : { worker }) } },
        dest,
      );
      const log = (msg: string, fields?: Record<string, unknown>) => logger.info(fields ?? {}, msg);
      // One line per decision, in pino's line format, written without pino's generic serializer
      // (a decision record is plain JSON); that serializer was ~5 % of the sidecar's CPU per request.
      const lineBase = JSON.stringify({
        service: 'nevertrust-sidecar',
        ...(worker === undefined ? {} : { worker }),
      }).slice(1, -1);
      const decisionLine = (e: object) => {
        const fields = JSON.stringify(e);
        dest.write(
          `{"level":30,"time":${Date.now()},${lineBase}${fields.length > 2 ? `,${fields.slice(1, -1)}` : ''},"msg":"access decision"}\n`,
        );
      };
      if (config.workers > 1 && cluster.isPrimary) {
        // The primary only supervises; every worker runs this same command as a whole sidecar.
        const code = await runPrimary({ workers: config.workers, log });
        await new Promise<void>((r) => dest.flush(() => r()));
        process.exit(code);
      }
      const audit = config.audit;
      // One spill directory per worker: a recorder ships what it finds there at start.
      const spillDir = audit
        ? join(
            resolve(audit.spill_dir ?? join(dirname(o.config), '.nevertrust-sidecar-spill')),
            worker === undefined ? '' : `worker-${worker}`,
          )
        : '';
      let sc: Awaited<ReturnType<typeof startSidecar>>;
      try {
        sc = await startSidecar(config, {
          log: (msg, fields) => log(msg, fields),
          // Decisions go to the audit log (non-blocking, spilled while the server is away), else to the log.
          ship: audit
            ? (source) => {
                const shipper = sidecarShipper(audit, source, o.config, { spillDir, logger });
                // Decision records are audit events as they are: the recorder takes them directly.
                return { recorder: shipper, close: () => shipper.close(5000) };
              }
            : undefined,
          recorder: { record: decisionLine },
        });
      } catch (e) {
        if (e instanceof SidecarConfigError) {
          process.stderr.write(`error: ${e.message}\n`);
          process.exitCode = 2;
          await new Promise<void>((r) => dest.flush(() => r()));
          return;
        }
        throw e;
      }
      if (worker === undefined) log('sidecar ready', { inbound: sc.inboundPort, outbound: sc.outboundPort });
      else {
        log('sidecar worker ready', { pid: process.pid, inbound: sc.inboundPort, outbound: sc.outboundPort });
        dest.flush(); // before the primary says the group is ready
        announceReady({ inbound: sc.inboundPort, outbound: sc.outboundPort });
      }
      const stop = () => {
        void sc
          .close()
          .then(() => new Promise<void>((r) => dest.flush(() => r())))
          .finally(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
