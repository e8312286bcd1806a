import type { Command } from 'commander';
import type { EntryWire } from '../../api/entries.js';
import { adminClient } from '../admin-client.js';
import { printJson, table } from '../output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const SERVER_OPT = [
  '--server <url>',
  'server API URL (default: http://<server.host>:<server.port> from the config)',
] as const;

/** The contracts, loaded when a command runs (the command tree stays light). */
const entryApi = () => import('../../api/entries.js');

function showEntry(e: EntryWire, json?: boolean): void {
  if (json) {
    printJson(e);
    return;
  }
  const rows: (keyof EntryWire)[] = [
    'id',
    'spiffe_id',
    'parent_id',
    'selectors',
    'x509_svid_ttl',
    'jwt_svid_ttl',
    'dns_names',
    'hint',
    'admin',
    'expires_at',
    'revision',
  ];
  for (const k of rows) {
    const v = e[k];
    process.stdout.write(`${k.padEnd(14)} ${Array.isArray(v) ? v.join(', ') : String(v ?? '')}\n`);
  }
}

export function registerEntryCommands(program: Command): void {
  const entry = program
    .command('entry')
    .description('manage registration entries: which workloads get which SPIFFE ID');

  entry
    .command('create')
    .description('create a registration entry')
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID to issue, in this trust domain')
    .requiredOption('--parent-id <id>', 'SPIFFE ID of the agent (or entry) allowed to issue it')
    .requiredOption('--selector <type:value>', 'selector the workload must match (repeatable; all must match)', collect)
    .option('--x509-svid-ttl <duration>', 'X.509-SVID lifetime (default ca.x509_svid_ttl, 1h)')
    .option('--jwt-svid-ttl <duration>', 'JWT-SVID lifetime (default ca.jwt_svid_ttl, 5m)')
    .option('--dns <name>', 'DNS SAN to add to the SVID (repeatable)', collect)
    .option('--hint <text>', 'hint returned with the SVID (tells several identities apart)')
    .option('--admin', 'the workload may call the admin API with this SVID')
    .option('--expires-at <iso-time>', 'the entry stops applying at this time')
    .option('--json', 'print the entry as JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      `
Examples:
  $ nevertrust entry create --spiffe-id spiffe://example.org/ns/payments/sa/api-gateway \\
      --parent-id spiffe://example.org/spire/agent/join_token/3f2a… --selector unix:uid:1000
  $ nevertrust entry create --spiffe-id spiffe://example.org/web --parent-id spiffe://example.org/agent/node1 \\
      --selector unix:uid:33 --selector unix:path:/usr/sbin/nginx --x509-svid-ttl 30m --dns web.internal`,
    )
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const body = {
        spiffe_id: o.spiffeId,
        parent_id: o.parentId,
        selectors: o.selector,
        ...(o.x509SvidTtl !== undefined && { x509_svid_ttl: o.x509SvidTtl }),
        ...(o.jwtSvidTtl !== undefined && { jwt_svid_ttl: o.jwtSvidTtl }),
        ...(o.dns !== undefined && { dns_names: o.dns }),
        ...(o.hint !== undefined && { hint: o.hint }),
        ...(o.admin !== undefined && { admin: true }),
        ...(o.expiresAt !== undefined && { expires_at: o.expiresAt }),
      };
      showEntry(
        await (await adminClient(cmd)).call('POST', '/v1/admin/entries', body, (await entryApi()).entrySchema),
        o.json === true,
      );
    });

  entry
    .command('list')
    .description('list registration entries')
    .option('--parent-id <id>', 'only entries with this parent')
    .option('--spiffe-id <id>', 'only entries for this SPIFFE ID')
    .option('--selector <type:value>', 'only entries with this selector')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust entry list\n  $ nevertrust entry list --parent-id spiffe://example.org/agent/node1 --json',
    )
    .action(async (o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const q = new URLSearchParams();
      if (typeof o.parentId === 'string') q.set('parent_id', o.parentId);
      if (typeof o.spiffeId === 'string') q.set('spiffe_id', o.spiffeId);
      if (typeof o.selector === 'string') q.set('selector', o.selector);
      const { entries } = await (await adminClient(cmd)).call(
        'GET',
        `/v1/admin/entries?${q}`,
        undefined,
        (await entryApi()).entryListSchema,
      );
      if (o.json) printJson(entries);
      else process.stdout.write(table(entries, ['id', 'spiffe_id', 'parent_id', 'selectors', 'x509_svid_ttl']));
    });

  entry
    .command('show <id>')
    .description('show one registration entry')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust entry show 0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      showEntry(
        await (await adminClient(cmd)).call(
          'GET',
          `/v1/admin/entries/${encodeURIComponent(id)}`,
          undefined,
          (await entryApi()).entrySchema,
        ),
        o.json,
      );
    });

  entry
    .command('update <id>')
    .description('change fields of a registration entry (only the flags given change)')
    .option('--spiffe-id <id>', 'new SPIFFE ID')
    .option('--parent-id <id>', 'new parent ID')
    .option('--selector <type:value>', 'replace the selectors (repeatable)', collect)
    .option('--x509-svid-ttl <duration>', 'X.509-SVID lifetime')
    .option('--jwt-svid-ttl <duration>', 'JWT-SVID lifetime')
    .option('--dns <name>', 'replace the DNS SANs (repeatable)', collect)
    .option('--hint <text>', 'hint')
    .option('--revision <n>', 'fail if the entry changed since this revision')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText(
      'after',
      '\nExamples:\n  $ nevertrust entry update 0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f --x509-svid-ttl 15m',
    )
    .action(async (id: string, o: Record<string, unknown>, cmd: Command) => {
      const body = {
        ...(o.spiffeId !== undefined && { spiffe_id: o.spiffeId }),
        ...(o.parentId !== undefined && { parent_id: o.parentId }),
        ...(o.selector !== undefined && { selectors: o.selector }),
        ...(o.x509SvidTtl !== undefined && { x509_svid_ttl: o.x509SvidTtl }),
        ...(o.jwtSvidTtl !== undefined && { jwt_svid_ttl: o.jwtSvidTtl }),
        ...(o.dns !== undefined && { dns_names: o.dns }),
        ...(o.hint !== undefined && { hint: o.hint }),
        ...(o.revision !== undefined && { revision: Number(o.revision) }),
      };
      showEntry(
        await (await adminClient(cmd)).call(
          'PATCH',
          `/v1/admin/entries/${encodeURIComponent(id)}`,
          body,
          (await entryApi()).entrySchema,
        ),
        o.json === true,
      );
    });

  entry
    .command('delete <id>')
    .description('delete a registration entry (its SVIDs stop being issued at once)')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust entry delete 0b6f5c1e-8f0a-4c55-9d2e-6a1b2c3d4e5f')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await (await adminClient(cmd)).call(
        'DELETE',
        `/v1/admin/entries/${encodeURIComponent(id)}`,
        undefined,
        (await entryApi()).entryDeletedSchema,
      );
      process.stdout.write(`deleted ${id}\n`);
    });
}

export function registerTokenCommands(program: Command): void {
  program
    .command('token')
    .description('join tokens for node attestation')
    .command('generate')
    .description('make a one-time join token for `nevertrust agent --join-token`')
    .option('--ttl <duration>', 'how long the token stays valid (default 10m)')
    .option('--json', 'print JSON')
    .option(...SERVER_OPT)
    .addHelpText('after', '\nExamples:\n  $ nevertrust token generate\n  $ nevertrust token generate --ttl 1h --json')
    .action(async (o: { ttl?: string; json?: boolean }, cmd: Command) => {
      const out = await (await adminClient(cmd)).call(
        'POST',
        '/v1/admin/join-tokens',
        { ...(o.ttl !== undefined && { ttl: o.ttl }) },
        (await import('../../api/join-tokens.js')).joinTokenSchema,
      );
      if (o.json) printJson(out);
      else process.stdout.write(`${out.token}\n(one use, expires ${out.expires_at})\n`);
    });
}
