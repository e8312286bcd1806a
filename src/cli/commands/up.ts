/**
 * `nevertrust up` (what `npm start` runs) and `nevertrust demo`: the payments scenario as a whole
 * local mesh — server, agent, three services, a traffic generator, and a live summary.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDuration } from '../../util/duration.js';
import type { LocalMesh } from '../../mesh/local-mesh.js';
import { STEPS } from '../../mesh/scenario.js';
import { type AnomalyLine, renderSummary } from '../../mesh/summary.js';
import { commandLogger, resolveConfig } from '../context.js';
import { CliError } from '../errors.js';
import { SERVER_BINDINGS, type ServerPluginsFactory, withServerOptions } from './server.js';

async function anomalies(mesh: LocalMesh): Promise<AnomalyLine[]> {
  const { queryAuditLog } = await import('../../audit/index.js');
  const { events } = await queryAuditLog(mesh.server.store, { kind: 'anomaly', limit: 5 });
  return events.map((e) => ({ time: new Date(e.time).toISOString(), reason: e.reason ?? '' }));
}

/** Runs the traffic generator until `until()` says stop: one step of the scenario every interval. */
async function traffic(mesh: LocalMesh, intervalMs: number, until: () => boolean): Promise<void> {
  let i = 0;
  while (!until()) {
    const step = STEPS[i++ % STEPS.length];
    if (step) await mesh.run(step);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function startMesh(cmd: Command, plugins: ServerPluginsFactory) {
  const config = await resolveConfig(cmd, SERVER_BINDINGS);
  // The mesh prints its own summary; structured logs go to stdout only for warnings and errors.
  const logger = await commandLogger({
    ...config,
    log_level: cmd.optsWithGlobals<{ logLevel?: string }>().logLevel ? config.log_level : 'error',
  });
  // Checked before the heavy imports, so a missing addon is one line at once (LocalMesh checks too).
  const { requirePeerCredentials } = await import('../../agent/peercred.js');
  requirePeerCredentials();
  const { LocalMesh } = await import('../../mesh/local-mesh.js');
  const mesh = await LocalMesh.start({ config, logger, plugins: await plugins(config) });
  return { config, mesh };
}

/** A duration flag in seconds, or a usage error (exit 2) naming the flag. */
function durationFlag(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw new CliError(`${flag}: ${(e as Error).message}`, 2);
  }
}

export function registerUpCommands(program: Command, plugins: ServerPluginsFactory): void {
  withServerOptions(
    program
      .command('up')
      .description(
        'run a whole zero-trust mesh locally (SQLite): server, agent, the payments example and a traffic generator, with a live summary',
      ),
  )
    .option('--interval <duration>', 'time between generated requests', '300ms')
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust up                       # what \`npm start\` runs
  $ nevertrust up --data-dir /tmp/nt --port 9181 --agent-port 9081`,
    )
    .action(async (o: { interval: string }, cmd: Command) => {
      const interval = durationFlag('--interval', o.interval) * 1000;
      const { config, mesh } = await startMesh(cmd, plugins);
      const started = Date.now();
      let stop = false;
      const tty = process.stdout.isTTY;
      let last = '';
      const draw = async () => {
        const text = renderSummary(mesh, {
          anomalies: await anomalies(mesh).catch(() => []),
          elapsedS: (Date.now() - started) / 1000,
          apiUrl: mesh.server.url,
          dataDir: resolve(config.data_dir),
        });
        if (tty) process.stdout.write(`\x1b[H\x1b[2J${text}`);
        else if (text !== last) process.stdout.write(`${text}\n`);
        last = text;
      };
      const timer = setInterval(() => void draw(), tty ? 1000 : 5000);
      const gen = traffic(mesh, interval, () => stop);
      await draw();
      process.exitCode = await new Promise<number>((r) => {
        const onSignal = () => {
          if (stop) process.exit(130);
          stop = true;
          clearInterval(timer);
          process.stderr.write('\nstopping: services, agent, server…\n');
          void gen
            .then(() => mesh.stop())
            .then(
              () => r(0),
              () => r(1),
            );
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
    });

  withServerOptions(
    program
      .command('demo')
      .description(
        'run the payments scenario non-interactively: exit 0 only if every expected call was allowed, every attack denied, and the audit log verifies',
      ),
  )
    .option('--duration <duration>', 'how long to generate traffic', '20s')
    .option('--interval <duration>', 'time between generated requests', '100ms')
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust demo --duration 20s\n  $ nevertrust demo --duration 5s --data-dir /tmp/nt-demo --port 0 --agent-port 0',
    )
    .action(async (o: { duration: string; interval: string }, cmd: Command) => {
      const duration = durationFlag('--duration', o.duration) * 1000;
      const interval = durationFlag('--interval', o.interval) * 1000;
      const { config, mesh } = await startMesh(cmd, plugins);
      const started = Date.now();
      try {
        await traffic(mesh, interval, () => Date.now() - started >= duration);
        // Let the last decisions reach the audit log before it is verified.
        await new Promise((r) => setTimeout(r, 1500));
        const anomalyLines = await anomalies(mesh);
        process.stdout.write(
          renderSummary(mesh, {
            anomalies: anomalyLines,
            elapsedS: (Date.now() - started) / 1000,
            apiUrl: mesh.server.url,
            dataDir: resolve(config.data_dir),
          }),
        );
        const ran = new Set(mesh.results.map((r) => r.step.label));
        const missing = STEPS.filter((s) => !ran.has(s.label)).map((s) => s.label);
        const wrong = mesh.results.filter((r) => !r.asExpected);
        const { verifyLog } = await import('../../audit/index.js');
        const report = await verifyLog(mesh.server.store);
        process.stdout.write(
          `\naudit log: ${report.ok ? 'verifies' : 'DOES NOT VERIFY'} (${report.treeSize} events, ${report.checkpointsChecked} checkpoints)\n`,
        );
        const problems = [
          ...wrong.map((r) => `unexpected: ${r.step.label} → status ${r.status} (${r.detail})`),
          ...missing.map((l) => `not exercised: ${l}`),
          ...(report.ok ? [] : [`audit log: ${JSON.stringify(report.firstBad)}`]),
          ...(mesh.counts.allow === 0 || mesh.counts.deny === 0 ? ['no decisions were recorded'] : []),
        ];
        if (problems.length) throw new CliError(`demo failed:\n  ${problems.join('\n  ')}`);
        process.stdout.write(
          `demo passed: ${mesh.results.length} requests, every allowed call allowed, every attack denied\n`,
        );
      } finally {
        await mesh.stop();
      }
    });
}
