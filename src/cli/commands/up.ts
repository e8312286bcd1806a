/**
 * `nevertrust up` (what `npm start` runs) and `nevertrust demo`: the payments scenario and people's
 * access as a whole local mesh — server, agent, three services, the built-in OpenID provider, the
 * back-office app behind the access proxy, a traffic generator, and a live summary.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDuration } from '../../util/duration.js';
import type { LocalMesh } from '../../mesh/local-mesh.js';
import { PEOPLE_STEPS } from '../../mesh/people-scenario.js';
import { STEPS } from '../../mesh/scenario.js';
import { type AnomalyLine, type PeopleStats, peopleStats, renderSummary } from '../../mesh/summary.js';
import { commandLogger, resolveConfig } from '../context.js';
import { CliError } from '../errors.js';
import { SERVER_BINDINGS, type ServerPluginsFactory, withServerOptions } from './server.js';

async function anomalies(mesh: LocalMesh): Promise<AnomalyLine[]> {
  const { queryAuditLog } = await import('../../audit/index.js');
  const { events } = await queryAuditLog(mesh.server.store, { kind: 'anomaly', limit: 5 });
  return events.map((e) => ({ time: new Date(e.time).toISOString(), reason: e.reason ?? '' }));
}

/**
 * Runs the traffic generator until `until()` says stop: every interval, the next step of the payments
 * scenario and, beside it (they share nothing), the next of people's.
 */
async function traffic(mesh: LocalMesh, intervalMs: number, until: () => boolean): Promise<void> {
  let i = 0;
  while (!until()) {
    const step = STEPS[i % STEPS.length];
    const person = PEOPLE_STEPS[i % PEOPLE_STEPS.length];
    i++;
    await Promise.all([step && mesh.run(step), person && mesh.people?.run(person)]);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Every step of both scenarios has run at least once. */
function allExercised(mesh: LocalMesh): boolean {
  const ran = new Set([...mesh.results, ...(mesh.people?.results ?? [])].map((r) => r.step.label));
  return [...STEPS, ...(mesh.people ? PEOPLE_STEPS : [])].every((s) => ran.has(s.label));
}

async function stats(mesh: LocalMesh): Promise<PeopleStats | undefined> {
  return mesh.people ? peopleStats(mesh.people) : undefined;
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
  const flag = cmd.opts<{ peoplePort?: string }>().peoplePort;
  const port = flag === undefined ? undefined : Number(flag);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535))
    throw new CliError(`--people-port: expected a port number 0–65535, got "${flag}"`, 2);
  const mesh = await LocalMesh.start({
    config,
    logger,
    plugins: await plugins(config),
    people: { port: port || undefined },
  });
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
        "run a whole zero-trust mesh locally (SQLite): server, agent, the payments example, people's access (OpenID provider, access proxy, back-office app) and a traffic generator, with a live summary",
      ),
  )
    .option('--interval <duration>', 'time between generated requests', '300ms')
    .option(
      '--people-port <port>',
      "the access proxy's port (https://backoffice.localhost:<port>/); default a free one",
    )
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust up                       # what \`npm start\` runs
  $ nevertrust up --data-dir /tmp/nt --port 9181 --agent-port 9081
  $ nevertrust up --people-port 8443    # then open https://backoffice.localhost:8443/`,
    )
    .action(async (o: { interval: string }, cmd: Command) => {
      const interval = durationFlag('--interval', o.interval) * 1000;
      const { config, mesh } = await startMesh(cmd, plugins);
      // A session held open for a person to revoke with the command the summary prints.
      await mesh.people
        ?.openLive()
        .catch((err: unknown) => process.stderr.write(`live session not opened: ${(err as Error).message}\n`));
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
          people: await stats(mesh).catch(() => undefined),
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
        "run the payments and people's scenarios non-interactively: exit 0 only if every expected call was allowed, every attack denied, and the audit log verifies",
      ),
  )
    .option('--duration <duration>', 'how long to generate traffic', '20s')
    .option('--interval <duration>', 'time between generated requests', '100ms')
    .option(
      '--people-port <port>',
      "the access proxy's port (https://backoffice.localhost:<port>/); default a free one",
    )
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
        // At least `duration`, and until every step ran once (people's steps are slower: a sign-in
        // is several round trips and a scrypt), with a bound in case one never ends.
        await traffic(
          mesh,
          interval,
          () => Date.now() - started >= duration && (allExercised(mesh) || Date.now() - started >= duration + 60_000),
        );
        // Let the last decisions reach the audit log before it is verified.
        await new Promise((r) => setTimeout(r, 1500));
        const anomalyLines = await anomalies(mesh);
        const people = await stats(mesh);
        process.stdout.write(
          renderSummary(mesh, {
            anomalies: anomalyLines,
            elapsedS: (Date.now() - started) / 1000,
            apiUrl: mesh.server.url,
            dataDir: resolve(config.data_dir),
            people: people,
          }),
        );
        const ran = new Set([...mesh.results, ...(mesh.people?.results ?? [])].map((r) => r.step.label));
        const missing = [...STEPS, ...(mesh.people ? PEOPLE_STEPS : [])]
          .filter((s) => !ran.has(s.label))
          .map((s) => s.label);
        const wrong = [...mesh.results, ...(mesh.people?.results ?? [])].filter((r) => !r.asExpected);
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
          ...(people && (people.decisions.allow === 0 || people.decisions.deny === 0 || people.decisions.stepUp === 0)
            ? ["the access proxy's decisions (allowed, sent to MFA, denied) did not reach the audit log"]
            : []),
        ];
        if (problems.length) throw new CliError(`demo failed:\n  ${problems.join('\n  ')}`);
        process.stdout.write(
          `demo passed: ${mesh.results.length + (mesh.people?.results.length ?? 0)} requests, every allowed call allowed, every attack denied\n`,
        );
      } finally {
        await mesh.stop();
      }
    });
}
