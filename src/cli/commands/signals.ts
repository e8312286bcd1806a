/**
 * `nevertrust revoke …`, `nevertrust risk set …` and `nevertrust signals list` (issue #23): raise a
 * revocation or a risk score through the admin API, and read the signals the server keeps. Every
 * enforcement point following the server's signal stream acts on them within a second.
 */
import type { Command } from 'commander';
import type { SequencedSignal } from '../../api/signals.js';
import { adminClient } from '../admin-client.js';
import { CliError } from '../errors.js';
import { printJson, table } from '../output.js';

const ADMIN_SERVER_OPT = [
  '--server <url>',
  'server API URL (default: http://<server.host>:<server.port> from the config)',
] as const;
const REASON_OPT = ['--reason <text>', 'why, for people: shown in the audit log and to the person cut off'] as const;

const signalsApi = () => import('../../api/signals.js');

/** One row of `signals list`. */
function row(m: SequencedSignal, subjectOf: (s: SequencedSignal['signal']) => string): Record<string, unknown> {
  return {
    seq: m.seq,
    received_at: m.received_at,
    kind: m.signal.kind,
    subject: subjectOf(m.signal),
    source: m.signal.source,
    reason: m.signal.reason,
  };
}

const COLUMNS = ['seq', 'received_at', 'kind', 'subject', 'source', 'reason'];

/** A whole number ≥ 0 from a flag, or a usage error naming the flag. */
function seqFlag(flag: string, text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d{1,15}$/.test(text)) throw new CliError(`${flag}: a sequence number (an integer ≥ 0), not "${text}"`, 2);
  return Number(text);
}

async function raise(cmd: Command, path: string, body: Record<string, unknown>, json: boolean | undefined) {
  const { raisedSignalSchema } = await signalsApi();
  const r = await (await adminClient(cmd)).call('POST', path, body, raisedSignalSchema);
  if (json) return printJson(r);
  const ended = r.ended_sessions > 0 ? `; ${r.ended_sessions} session(s) ended` : '';
  process.stdout.write(`${r.kind} ${r.subject} kept as signal ${r.seq}${ended}\n`);
}

export function registerSignalCommands(program: Command): void {
  const revoke = program
    .command('revoke')
    .description('revoke a session, a person, a device or an SVID now: every enforcement point cuts it (admin)')
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust revoke session 7f3c…            # one browser session (ids: nevertrust up, the audit log)
  $ nevertrust revoke user alice --reason "laptop stolen"   # every session of alice, everywhere
  $ nevertrust revoke device laptop-alice      # the device is revoked, its sessions cut
  $ nevertrust revoke svid 3f9a01…             # refused at its next handshake by every sidecar`,
    );
  const targets: [string, string, string][] = [
    ['session', 'id', 'end one session at every access proxy'],
    ['user', 'name', 'end every session of a person (signed out everywhere)'],
    ['device', 'id', 'revoke a device (final) and cut its sessions'],
    ['svid', 'serial', 'revoke an X.509-SVID by serial (hex)'],
  ];
  for (const [target, arg, description] of targets) {
    revoke
      .command(`${target} <${arg}>`)
      .description(description)
      .option(...REASON_OPT)
      .option('--json', 'print the answer as JSON')
      .option(...ADMIN_SERVER_OPT)
      .action(async (value: string, o: { reason?: string; json?: boolean }, cmd: Command) =>
        raise(
          cmd,
          '/v1/admin/revoke',
          { [target]: value, ...(o.reason !== undefined && { reason: o.reason }) },
          o.json,
        ),
      );
  }

  const risk = program.command('risk').description('risk scores of people and devices (admin)');
  risk
    .command('set <target> <id> <score>')
    .description('set the risk score (0 to 1) of a user or a device; policies read it as source.risk_score')
    .option(...REASON_OPT)
    .option('--json', 'print the answer as JSON')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust risk set user alice 0.9 --reason "impossible travel"
  $ nevertrust risk set device laptop-alice 0.2`,
    )
    .action(
      async (target: string, id: string, scoreText: string, o: { reason?: string; json?: boolean }, cmd: Command) => {
        if (target !== 'user' && target !== 'device') throw new CliError(`target: user or device, not "${target}"`, 2);
        const score = Number(scoreText);
        if (scoreText.trim() === '' || !Number.isFinite(score) || score < 0 || score > 1)
          throw new CliError(`score: a number from 0 to 1, not "${scoreText}"`, 2);
        await raise(
          cmd,
          '/v1/admin/risk',
          { [target]: id, score, ...(o.reason !== undefined && { reason: o.reason }) },
          o.json,
        );
      },
    );

  const signals = program.command('signals').description('the revocation, risk and posture signals the server keeps');
  signals
    .command('list')
    .description('list kept signals, oldest first; --follow prints each new one as it is kept (admin)')
    .option('--after <seq>', 'only signals after this sequence number', '0')
    .option('--limit <n>', 'at most this many (1 to 1000)', '100')
    .option('--follow', 'then keep printing new signals until interrupted')
    .option('--json', 'print JSON (with --follow: one signal per line)')
    .option(...ADMIN_SERVER_OPT)
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust signals list
  $ nevertrust signals list --after 120 --json
  $ nevertrust signals list --follow          # watch revocations as they happen`,
    )
    .action(async (o: { after?: string; limit?: string; follow?: boolean; json?: boolean }, cmd: Command) => {
      const api = await signalsApi();
      const after = seqFlag('--after', o.after);
      const limit = seqFlag('--limit', o.limit);
      if (limit < 1 || limit > 1000) throw new CliError('--limit: an integer from 1 to 1000', 2);
      const client = await adminClient(cmd);
      if (!o.follow) {
        const r = await client.call(
          'GET',
          `/v1/admin/signals?after=${after}&limit=${limit}`,
          undefined,
          api.signalListSchema,
        );
        if (o.json) return printJson(r);
        process.stdout.write(
          table(
            r.signals.map((m) => row(m, api.signalSubject)),
            COLUMNS,
          ),
        );
        process.stdout.write(`head ${r.head}, oldest kept ${r.oldest}\n`);
        return;
      }
      // --follow: the same stream enforcement points follow, on the API port with the admin token.
      const body = await client.stream(`/v1/signals/stream?after=${after}`);
      let buf = '';
      for await (const chunk of body) {
        buf += chunk.toString('utf8');
        let nl = buf.indexOf('\n');
        while (nl >= 0) {
          const text = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          nl = buf.indexOf('\n');
          const m = api.signalStreamMessageSchema.safeParse(JSON.parse(text));
          if (!m.success)
            throw new CliError(`the server sent a line that is not a stream message: ${text.slice(0, 200)}`);
          if (m.data.type !== 'signal') continue;
          const { type: _type, ...sequenced } = m.data;
          if (o.json) process.stdout.write(`${JSON.stringify(sequenced)}\n`);
          else {
            const r = row(sequenced, api.signalSubject);
            process.stdout.write(`${COLUMNS.map((c) => String(r[c])).join('  ')}\n`);
          }
        }
      }
      throw new CliError('the server ended the signal stream');
    });
}
