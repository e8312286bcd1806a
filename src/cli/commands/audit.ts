/**
 * `nevertrust audit …`: query, tail, show (with inclusion proof), verify, reindex, checkpoint.
 * All but `verify` and `reindex` talk to the running server (`--server URL`, admin token from the
 * data dir). `verify` runs directly against the database by default (SQLite in the data dir or
 * `--database`), so it needs no server and trusts nothing the server says; with `--server` it asks
 * the server. `reindex` always runs against the database.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import type { ExternalCheckpoint, Outcome, StoredAuditEvent, VerifyReport } from '../../audit/index.js';
import { parseDuration } from '../../util/duration.js';
import { adminClient } from '../admin-client.js';
import { exactly } from '../choices.js';
import { resolveConfig } from '../context.js';
import { CliError } from '../errors.js';

/** The audit module's OUTCOMES, in its order (that module is loaded only by the actions that need it). */
const OUTCOMES = exactly<Outcome>()(['allow', 'deny', 'step_up', 'error']);

/** `1h`, `30m`, `2d` (ago), epoch ms, or ISO-8601 → epoch ms. */
export function parseTimeFlag(flag: string, v: string, now = Date.now()): number {
  if (/^\d{11,}$/.test(v)) return Number(v);
  if (/^\d+(\.\d+)?[smhdw]?$/.test(v) || /^(\d+[smhd])+$/.test(v)) {
    try {
      return now - parseDuration(v) * 1000;
    } catch {}
  }
  const t = Date.parse(v);
  if (Number.isNaN(t))
    throw new CliError(`${flag}: "${v}" is not a time: use 1h, 30m, 2d (ago) or ISO-8601 like 2026-11-22T10:00:00Z`, 2);
  return t;
}

function out(text: string): void {
  process.stdout.write(text);
}

function short(s: string | undefined, n: number): string {
  if (!s) return '-';
  return s.length > n ? `…${s.slice(s.length - n + 1)}` : s;
}

function table(events: StoredAuditEvent[]): string {
  const rows = events.map((e) => [
    String(e.seq),
    new Date(e.time).toISOString(),
    e.kind,
    e.outcome ?? '-',
    short(e.source?.spiffe_id ?? e.source?.user ?? e.source?.ip, 48),
    short(e.target?.service ?? e.target?.spiffe_id ?? e.target?.resource, 32),
    `${e.target?.method ?? ''} ${e.target?.path ?? ''}`.trim() || '-',
    short(e.reason, 60),
  ]);
  const header = ['SEQ', 'TIME', 'KIND', 'OUTCOME', 'SOURCE', 'TARGET', 'REQUEST', 'REASON'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `${cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()}\n`;
  return line(header) + rows.map(line).join('');
}

function printReport(r: VerifyReport): void {
  if (r.ok) {
    out(
      `audit log OK: ${r.treeSize} events, root ${r.root}\n  ${r.checkpointsChecked} signed checkpoints matched, ${r.externalCheckpointsChecked} external checkpoints matched, ${r.segmentsChecked} sealed segments verified\n`,
    );
    for (const [a, b] of r.unverifiedRanges)
      out(`  note: sealed events ${a}..${b - 1} not checked (segment file not available)\n`);
    if (!r.indexChecked) out('  note: the query index was not checked (the database predates migration 0005)\n');
    return;
  }
  for (const c of r.badCheckpoints) process.stderr.write(`bad checkpoint: ${c.message}\n`);
  if (r.firstBad) {
    throw new CliError(
      `audit log TAMPERED: first bad index ${r.firstBad.index} (${r.firstBad.kind}): ${r.firstBad.message}`,
      1,
    );
  }
  throw new CliError('audit log TAMPERED: a checkpoint is not validly signed (see above)', 1);
}

/** Adds `nevertrust audit` and its subcommands. */
export function registerAuditCommands(program: Command): void {
  const audit = program
    .command('audit')
    .description('the tamper-evident audit log: query, tail, show with proof, verify')
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust audit query --source spiffe://example.org/ns/prod/sa/api --outcome deny --since 1h
  $ nevertrust audit tail -f
  $ nevertrust audit show 0193c4c2-8a4e-7c1d-9f00-1a2b3c4d5e6f
  $ nevertrust audit verify --from-checkpoint /secure/audit-checkpoints.ndjson`,
    );
  const withServer = (c: Command) =>
    c.option('--server <url>', 'server URL (default http://<server.host>:<server.port>)');

  withServer(
    audit
      .command('query')
      .description('find events (newest first)')
      .option('--source <id>', 'caller: SPIFFE ID, user, IP, or a service name (every SPIFFE ID that names it)')
      .option('--target <id>', 'callee: SPIFFE ID, or a service name (every SPIFFE ID that names it)')
      .addOption(new Option('--outcome <outcome>', 'decision outcome').choices([...OUTCOMES]))
      .option('--kind <kind>', 'event kind, e.g. access.decision, admin.action, anomaly')
      .option('--decision-id <id>', 'one decision')
      .option('--user <user>', "the caller's user, exactly (source.user)")
      .option('--device <id>', "the device, exactly (source.device_id, or the access proxy's details.device)")
      .option('--rule <rule>', 'the rule that decided, exactly')
      .option('--reason <text>', 'a part of the reason, in any case')
      .option('--since <time>', 'from: 1h, 30m, 2d (ago) or ISO-8601')
      .option('--until <time>', 'until (exclusive): same forms')
      .option('--limit <n>', 'at most n events (1–1000, default 50)', '50')
      .option('--cursor <seq>', 'continue from a previous page (its next cursor)')
      .addOption(
        new Option('--format <format>', 'output format').choices(['table', 'json', 'ndjson']).default('table'),
      ),
  )
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust audit query --target payments --outcome deny --since 1h --limit 20
  $ nevertrust audit query --source spiffe://example.org/ns/prod/sa/api --format ndjson > api.ndjson
  $ nevertrust audit query --decision-id "$ID"   # ID: the x-nevertrust-decision-id a caller got
  $ nevertrust audit query --kind access.decision --user alice --reason "default deny" --since 24h

--user, --device, --rule and --reason are checked on the events the other filters find, at most
100,000 per page: when a page stops there, it says so and gives the cursor to go on from.`,
    )
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      // An empty filter (an unset shell variable, say) would silently match everything.
      for (const [flag, v] of Object.entries({
        source: o.source,
        target: o.target,
        kind: o.kind,
        'decision-id': o.decisionId,
        user: o.user,
        device: o.device,
        rule: o.rule,
        reason: o.reason,
      })) {
        if (v !== undefined && v.trim() === '') throw new CliError(`--${flag}: empty value`, 2);
      }
      const p = new URLSearchParams();
      if (o.source) p.set('source', o.source);
      if (o.target) p.set('target', o.target);
      if (o.outcome) p.set('outcome', o.outcome);
      if (o.kind) p.set('kind', o.kind);
      if (o.decisionId) p.set('decision_id', o.decisionId);
      // Their length (≤ 200) is the server's to check: it answers a 400 naming the parameter.
      for (const k of ['user', 'device', 'rule', 'reason'] as const) if (o[k]) p.set(k, o[k]);
      if (o.since) p.set('since', String(parseTimeFlag('--since', o.since)));
      if (o.until) p.set('until', String(parseTimeFlag('--until', o.until)));
      if (!/^\d+$/.test(o.limit ?? '')) throw new CliError(`--limit: not a number: ${o.limit}`, 2);
      p.set('limit', o.limit as string);
      if (o.cursor) p.set('cursor', o.cursor);
      const r = (await (await adminClient(cmd)).callUnchecked('GET', `/v1/admin/audit/events?${p}`)) as {
        events: StoredAuditEvent[];
        next_cursor?: number;
        scan_limited?: boolean;
        examined?: number;
      };
      if (o.format === 'json') out(`${JSON.stringify(r, null, 2)}\n`);
      else if (o.format === 'ndjson') for (const e of r.events) out(`${JSON.stringify(e)}\n`);
      else {
        out(table(r.events));
        if (r.scan_limited)
          out(`(searched ${r.examined ?? 'the bound of'} events and stopped; more: --cursor ${r.next_cursor})\n`);
        else if (r.next_cursor !== undefined) out(`(more: --cursor ${r.next_cursor})\n`);
      }
      // ndjson is for pipes: the note goes to stderr there, so a search that stopped early is not mistaken for complete.
      if (o.format === 'ndjson' && r.scan_limited)
        process.stderr.write(`searched ${r.examined} events and stopped; more: --cursor ${r.next_cursor}\n`);
    });

  withServer(
    audit
      .command('tail')
      .description('print the newest events as JSON lines; -f keeps following')
      .option('-f, --follow', 'keep the stream open and print new events as they are stored')
      .option('-n, --lines <n>', 'how many recent events to start with', '20'),
  )
    .addHelpText('after', '\nExamples:\n  $ nevertrust audit tail -f\n  $ nevertrust audit tail -n 100 | jq .outcome')
    .action(async (o: { follow?: boolean; lines: string }, cmd: Command) => {
      const stream = await (await adminClient(cmd)).stream(
        `/v1/admin/audit/tail?last=${encodeURIComponent(o.lines)}${o.follow ? '&follow=1' : ''}`,
      );
      for await (const chunk of stream) out(chunk.toString());
    });

  withServer(
    audit
      .command('show <id>')
      .description('one event (by id or seq) with its inclusion proof, checked here against the signed checkpoint')
      .option(
        '--public-key <file>',
        'trust this PEM public key for the checkpoint (default: the key the server reports)',
      )
      .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text')),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust audit show 42\n  $ nevertrust audit show 0193c4c2-8a4e-7c1d-9f00-1a2b3c4d5e6f --format json',
    )
    .action(async (id: string, o: { publicKey?: string; format: string }, cmd: Command) => {
      const r = (await (
        await adminClient(cmd)
      ).callUnchecked('GET', `/v1/admin/audit/events/${encodeURIComponent(id)}`)) as {
        event: StoredAuditEvent;
        inclusion: null | {
          seq: number;
          tree_size: number;
          leaf_hash: string;
          proof: string[];
          checkpoint: ExternalCheckpoint;
        };
        public_key: string;
        note?: string;
      };
      let proofOk: boolean | undefined;
      let sigOk: boolean | undefined;
      if (r.inclusion) {
        const { verifyCheckpoint, verifyInclusion } = await import('../../audit/index.js');
        const i = r.inclusion;
        proofOk = verifyInclusion(
          i.seq,
          i.tree_size,
          Buffer.from(i.leaf_hash, 'hex'),
          i.proof.map((h) => Buffer.from(h, 'hex')),
          Buffer.from(i.checkpoint.root_hash, 'hex'),
        );
        const key = o.publicKey ? readFileSync(o.publicKey, 'utf8') : r.public_key;
        sigOk = verifyCheckpoint(i.checkpoint, key);
      }
      if (o.format === 'json')
        out(`${JSON.stringify({ ...r, proof_verified: proofOk, checkpoint_signature_verified: sigOk }, null, 2)}\n`);
      else {
        out(`${JSON.stringify(r.event, null, 2)}\n`);
        if (r.inclusion) {
          const i = r.inclusion;
          out(
            `inclusion: leaf ${i.seq} of ${i.tree_size}, leaf hash ${i.leaf_hash}\n  proof (${i.proof.length} hashes): ${i.proof.join(' ') || '(none)'}\n  checkpoint: size ${i.checkpoint.tree_size}, root ${i.checkpoint.root_hash}, signed ${new Date(i.checkpoint.time).toISOString()} by key ${i.checkpoint.key_id}\n  proof ${proofOk ? 'verified' : 'DOES NOT VERIFY'}; checkpoint signature ${sigOk ? 'verified' : 'DOES NOT VERIFY'}\n`,
          );
        } else out(`inclusion: not available (${r.note ?? 'sealed'})\n`);
      }
      if (proofOk === false || sigOk === false)
        throw new CliError('the inclusion proof or checkpoint signature does not verify', 1);
    });

  audit
    .command('verify')
    .description('recompute the whole log and check every signed checkpoint; exit 1 naming the first bad index')
    .option('--from-checkpoint <file>', 'also check against checkpoints kept outside the database (JSON lines)')
    .option('--database <url>', 'database to verify (default: SQLite in the data dir, or database.url)')
    .option('--segments <dir>', 'sealed segment files (default <data_dir>/audit-segments)')
    .option('--public-key <file>', 'trust this PEM public key instead of the one in the database')
    .option('--server <url>', 'ask the running server to verify instead of opening the database here')
    .addHelpText(
      'after',
      `
Runs directly against the database unless --server is given (it needs no running server).

Examples:
  $ nevertrust audit verify
  $ nevertrust audit verify --from-checkpoint /secure/audit-checkpoints.ndjson
  $ nevertrust audit verify --database postgres://nevertrust@db/nevertrust --from-checkpoint cps.ndjson`,
    )
    .action(
      async (
        o: { fromCheckpoint?: string; database?: string; segments?: string; publicKey?: string; server?: string },
        cmd: Command,
      ) => {
        const { readCheckpointFile, verifyLog } = await import('../../audit/index.js');
        let external: ExternalCheckpoint[] | undefined;
        if (o.fromCheckpoint) {
          try {
            external = readCheckpointFile(o.fromCheckpoint);
          } catch (e) {
            throw new CliError(`--from-checkpoint: ${(e as Error).message}`, 2);
          }
        }
        let report: VerifyReport;
        if (o.server) {
          report = (await (
            await adminClient(cmd)
          ).callUnchecked('POST', '/v1/admin/audit/verify', {
            checkpoints: external,
          })) as VerifyReport;
        } else {
          const config = await resolveConfig(cmd, [
            { flag: '--database', option: 'database', field: ['database', 'url'] },
          ]);
          const { openStore } = await import('../../store/index.js');
          const store = await openStore({ url: config.database.url, dataDir: config.data_dir, migrate: false });
          try {
            report = await verifyLog(store, {
              externalCheckpoints: external,
              segmentDir: o.segments ?? join(config.data_dir, 'audit-segments'),
              publicKey: o.publicKey ? readFileSync(o.publicKey, 'utf8') : undefined,
            });
          } finally {
            await store.close();
          }
        }
        printReport(report);
      },
    );

  audit
    .command('reindex')
    .description('rebuild the query index from the stored events (the repair when verify says the index disagrees)')
    .option('--database <url>', 'database to reindex (default: SQLite in the data dir, or database.url)')
    .addHelpText(
      'after',
      `
Runs directly against the database; safe while a server appends (each block is rebuilt under the
lock appenders take). The index is not part of what the log proves: rebuilding it changes no hash.

Examples:
  $ nevertrust audit reindex
  $ nevertrust audit reindex --database postgres://nevertrust@db/nevertrust`,
    )
    .action(async (_o: { database?: string }, cmd: Command) => {
      const { reindexLog } = await import('../../audit/index.js');
      const config = await resolveConfig(cmd, [{ flag: '--database', option: 'database', field: ['database', 'url'] }]);
      const { openStore } = await import('../../store/index.js');
      // Not migrated here: a database that predates the index is upgraded by the server that owns it.
      const store = await openStore({ url: config.database.url, dataDir: config.data_dir, migrate: false });
      try {
        const r = await reindexLog(store).catch((e: Error) => {
          if (/audit_block/.test(e.message)) {
            throw new CliError(
              'the database predates the query index (migration 0005): start the server once to upgrade it',
              1,
            );
          }
          throw e;
        });
        out(
          `audit query index rebuilt: ${r.events} events in ${r.blocks} blocks (${r.removed} stray blocks removed)\n`,
        );
      } finally {
        await store.close();
      }
    });

  withServer(audit.command('checkpoint').description('sign a checkpoint of the log now and print it'))
    .addHelpText('after', '\nExamples:\n  $ nevertrust audit checkpoint >> /secure/audit-checkpoints.ndjson')
    .action(async (_o: unknown, cmd: Command) => {
      const cp = (await (await adminClient(cmd)).callUnchecked('POST', '/v1/admin/audit/checkpoint')) as Record<
        string,
        unknown
      >;
      const { public_key } = (await (
        await adminClient(cmd)
      ).callUnchecked('GET', '/v1/admin/audit/checkpoints?limit=1')) as { public_key: string };
      out(`${JSON.stringify({ ...cp, public_key })}\n`);
    });
}
