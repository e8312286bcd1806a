/**
 * What `nevertrust up` shows a person: the services and their identities, allowed and denied
 * counts, the latest denials with the rule and reason, anomaly signals, and what to try by hand.
 */
import { join } from 'node:path';
import type { DeviceRecord } from '../api/devices.js';
import type { LocalMesh } from './local-mesh.js';
import type { People, PeopleDecisions } from './people.js';
import { EXPORT_PATH, PEOPLE, PEOPLE_STEPS, type Person } from './people-scenario.js';
import { STEPS } from './scenario.js';

export interface AnomalyLine {
  time: string;
  reason: string;
}

/** People's figures, read before rendering: live sessions from the store, the proxy's audited decisions. */
export interface PeopleStats {
  sessions: number;
  decisions: PeopleDecisions;
  /** The managed device as the server keeps it, and the decisions of the device pair's latest answers (from the audit log). */
  device?: {
    record: DeviceRecord | undefined;
    decisions: Partial<Record<'managed' | 'none', { outcome: string; reason: string }>>;
  };
  /** When the proxy's `access.cut` event of the live session's connection says it cut it (ms), once in the audit log. */
  liveCutAt?: number;
}

/** The time of the proxy's `access.cut` of session `id`, among the latest cuts. */
async function auditedCut(people: People, id: string | undefined): Promise<number | undefined> {
  if (id === undefined) return undefined;
  const { queryAuditLog } = await import('../audit/index.js');
  const { events } = await queryAuditLog(people.store, { kind: 'access.cut', limit: 100 });
  const e = events.find((x) => (x.details as { session?: unknown } | undefined)?.session === id);
  return e ? new Date(e.time).getTime() : undefined;
}

/** The audit log's decision `id` (outcome and reason), once it arrived. */
async function auditedDecision(people: People, id: string | undefined) {
  if (id === undefined) return undefined;
  const { queryAuditLog } = await import('../audit/index.js');
  const e = (await queryAuditLog(people.store, { decision_id: id, limit: 1 })).events[0];
  return e ? { outcome: e.outcome ?? 'unknown', reason: e.reason ?? '' } : undefined;
}

/** Reads what the people's lines show (the summary itself renders synchronously). */
export async function peopleStats(people: People): Promise<PeopleStats> {
  const live = people.live;
  const [sessions, decisions, record, managed, none, liveCutAt] = await Promise.all([
    people.activeSessions(),
    people.decisions(),
    people.store.devices.get(people.device.id),
    auditedDecision(people, people.deviceAnswers.managed?.decisionId),
    auditedDecision(people, people.deviceAnswers.none?.decisionId),
    live?.ended ? auditedCut(people, live.id) : undefined,
  ]);
  return {
    ...(liveCutAt !== undefined ? { liveCutAt } : {}),
    sessions,
    decisions,
    device: { record, decisions: { ...(managed ? { managed } : {}), ...(none ? { none } : {}) } },
  };
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** The managed device and the one request that gets two decisions: from it, and from a client without one. */
function deviceLines(people: People, stats: PeopleStats | undefined, dataDir: string): string[] {
  const d = stats?.device?.record;
  const out = [
    `devices (this machine, enrolled with a one-time token; its posture collected here, signed, sent over mTLS):`,
  ];
  if (!d) out.push(`  … ${people.device.id} (owner ${people.device.owner})`);
  else {
    const p = d.posture;
    const age = p ? `${Math.max(0, Math.round((Date.now() - Date.parse(p.collected_at)) / 1000))} s old` : '';
    out.push(
      `  ${d.revokedAt === null ? '●' : '○'} ${d.id}  owner ${d.owner}  ${d.revokedAt === null ? `certificate until ${new Date(d.certNotAfter).toISOString().slice(0, 16)}Z` : 'REVOKED'}`,
    );
    out.push(
      p
        ? `    posture (${p.source}, ${age}): managed ${yesNo(p.managed)} · encrypted ${yesNo(p.encrypted)} · os_patched ${yesNo(p.os_patched)} · edr_active ${yesNo(p.edr_active)} · firewall ${yesNo(p.firewall_active)}${p.unknown.length ? ` · unknown: ${p.unknown.join(', ')}` : ''}`
        : '    posture: … (the first report is being collected)',
    );
  }
  out.push(`  GET ${EXPORT_PATH} as alice — the same request, only the device differs:`);
  const rows = [
    ['managed', `from her managed device ${people.device.id}`],
    ['none', 'from her 2nd browser, no device certificate'],
  ] as const;
  for (const [which, what] of rows) {
    const a = people.deviceAnswers[which];
    const dec = stats?.device?.decisions[which];
    const mark = a ? (a.asExpected ? '✓' : '✗') : '…';
    const outcome = dec?.outcome ?? (a ? `status ${a.status}` : '…');
    out.push(`    ${mark} ${what}: ${outcome}${dec ? ` — ${dec.reason}` : ''}`);
  }
  out.push(
    `  look at it: npx nevertrust device list --data-dir ${dataDir} · npx nevertrust device show ${people.device.id} --data-dir ${dataDir}`,
  );
  return out;
}

const hms = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** The live session: who, since when, and the command that revokes it; once revoked, how fast its connection was cut. */
function liveLines(people: People, stats: PeopleStats | undefined, apiUrl: string, dataDir: string): string[] {
  const l = people.live;
  if (!l) return [];
  const out = [
    "live sessions (a person's client holding a keep-alive connection through the proxy, a request every 2 s):",
  ];
  const who = `${l.id}  ${l.user}  device ${l.deviceId ?? '—'}  since ${hms(l.since)}Z`;
  if (!l.ended) {
    out.push(`  ● ${who}  ${l.requests} requests on ${l.connections} connection${l.connections === 1 ? '' : 's'}`);
    out.push(`    revoke it: npx nevertrust revoke session ${l.id} --data-dir ${dataDir} --server ${apiUrl}`);
    return out;
  }
  const e = l.ended;
  out.push(`  ○ ${who}  ENDED: revoked at ${hms(e.revokedAt)}Z (signal ${e.seq}${e.reason ? `, "${e.reason}"` : ''})`);
  const cut = stats?.liveCutAt;
  const ms = (t: number) => `${Math.max(0, t - e.revokedAt)} ms`;
  out.push(
    `    ${e.closedAt - e.revokedAt <= 1000 ? '✓' : '✗'} connection cut ${ms(e.closedAt)} after the revocation (the client saw it close)${cut !== undefined ? ` · the proxy's access.cut audit event at ${hms(cut)}Z` : ''}; its cookie now gets ${l.afterStatus ?? '…'}`,
  );
  return out;
}

function peopleLines(people: People, stats: PeopleStats | undefined): string[] {
  const out: string[] = [''];
  out.push(`people (signed in at the built-in OpenID provider ${people.issuer}):`);
  const up = (p: { exitCode: number | null; signalCode: string | null }) =>
    p.exitCode === null && p.signalCode === null ? '●' : '○';
  out.push(`  ${up(people.proxy)} ${'access-proxy'.padEnd(16)} ${people.proxyId}   ${people.url}/`);
  out.push(
    `  ${up(people.app)} ${'backoffice'.padEnd(16)} the example app, only through the proxy (verifies its assertion)`,
  );
  // The admins of the people's scenario may use the console; a destructive action asks for a fresh factor.
  out.push(`console: ${people.consoleUrl} (alice, after MFA)`);
  out.push(`people's sessions: ${stats ? stats.sessions : '…'} active (in the store)`);
  out.push(
    `people's decisions: ${stats ? `${stats.decisions.allow} allowed, ${stats.decisions.stepUp} sent to MFA, ${stats.decisions.deny} denied` : '…'} (the access proxy's audit events)`,
  );
  const byLabel = new Map<string, { ok: number; bad: number }>();
  for (const r of people.results) {
    const e = byLabel.get(r.step.label) ?? { ok: 0, bad: 0 };
    if (r.asExpected) e.ok++;
    else e.bad++;
    byLabel.set(r.step.label, e);
  }
  out.push("people's traffic (expected outcome / not):");
  const kinds = { allowed: 'allow ', denied: 'deny  ', 'step-up': 'mfa   ' } as const;
  for (const step of PEOPLE_STEPS) {
    const e = byLabel.get(step.label);
    if (!e) continue;
    out.push(
      `  ${e.bad === 0 ? '✓' : '✗'} ${kinds[step.kind]} ${`${step.label} → ${step.expect}`.padEnd(52)} ${e.ok}/${e.ok + e.bad}`,
    );
  }
  return out;
}

/** The line telling a person how to try people's access in a browser. */
export function peopleTryIt(people: People, dataDir: string): string {
  const who = (Object.keys(PEOPLE) as Person[])
    .map((p) => `${p} / ${people.credentials[p]} (${PEOPLE[p].role})`)
    .join(' · ');
  return `  ${people.url}/  ${who} — the CA is ${join(dataDir, 'people', 'ca.pem')} (or accept the browser's warning)`;
}

/** How to get past `/admin`'s MFA step-up, and how to enroll a factor. */
export function peopleMfa(people: People): string[] {
  const secret = people.aliceTotpSecret;
  return [
    `  /admin asks for a second factor: alice's authenticator app (TOTP) secret is ${secret ?? '… (being enrolled by the traffic)'}`,
    `  enroll a factor: bob's one-time link ${people.enrollLink('bob')} (24 h; more: nevertrust user enroll-link USER)`,
  ];
}

export function renderSummary(
  mesh: LocalMesh,
  extra: { anomalies: AnomalyLine[]; elapsedS: number; apiUrl: string; dataDir: string; people?: PeopleStats },
): string {
  const out: string[] = [];
  out.push(
    `nevertrust up — local zero-trust mesh (${Math.round(extra.elapsedS)} s)   API ${extra.apiUrl}   Ctrl-C to stop`,
  );
  out.push('');
  out.push('services (identity from the Workload API, attested by uid + binary path):');
  for (const s of mesh.services.values()) {
    out.push(`  ${s.ready ? '●' : '○'} ${s.name.padEnd(16)} ${s.spiffeId}   mTLS 127.0.0.1:${s.port}`);
  }
  out.push('');
  out.push(`decisions: ${mesh.counts.allow} allowed, ${mesh.counts.deny} denied (every one in the audit log)`);
  const byLabel = new Map<string, { ok: number; bad: number; kind: string }>();
  for (const r of mesh.results) {
    const e = byLabel.get(r.step.label) ?? { ok: 0, bad: 0, kind: r.step.kind };
    if (r.asExpected) e.ok++;
    else e.bad++;
    byLabel.set(r.step.label, e);
  }
  out.push('traffic (expected outcome / not):');
  for (const step of STEPS) {
    const e = byLabel.get(step.label);
    if (!e) continue;
    const mark = e.bad === 0 ? '✓' : '✗';
    out.push(
      `  ${mark} ${step.kind === 'allowed' ? 'allow ' : 'attack'} ${step.label.padEnd(52)} ${e.ok}/${e.ok + e.bad}`,
    );
  }
  if (mesh.people)
    out.push(
      ...peopleLines(mesh.people, extra.people),
      ...liveLines(mesh.people, extra.people, extra.apiUrl, extra.dataDir),
      ...deviceLines(mesh.people, extra.people, extra.dataDir),
    );
  out.push('');
  out.push('latest denials:');
  const denials = mesh.decisions
    .filter((d) => d.outcome !== 'allow')
    .slice(-5)
    .reverse();
  if (denials.length === 0) out.push('  (none yet)');
  for (const d of denials) {
    const who = (d.source ?? 'unknown').replace(/^spiffe:\/\/[^/]+/, '');
    out.push(
      `  ${new Date(d.time).toISOString().slice(11, 19)} ${who} → ${d.service} ${d.method ?? ''} ${d.path ?? ''}`,
    );
    out.push(`           rule: ${d.policy ?? '—'}${d.rule ? `/${d.rule}` : ''}   reason: ${d.reason}`);
  }
  out.push('');
  out.push('anomaly signals:');
  if (extra.anomalies.length === 0) out.push('  (none yet)');
  for (const a of extra.anomalies.slice(0, 4)) out.push(`  ${a.time.slice(11, 19)} ${a.reason}`);
  out.push('');
  const gw = mesh.services.get('api-gateway');
  const pay = mesh.services.get('payment-service');
  out.push('try it:');
  if (gw?.publicPort)
    out.push(
      `  curl -s -X POST http://127.0.0.1:${gw.publicPort}/charge -d '{"amount": 4200}'     # allowed: gateway → payments → audit`,
    );
  if (pay)
    out.push(
      `  curl -sk -X POST https://127.0.0.1:${pay.port}/v1/charges                       # refused: no client certificate`,
    );
  out.push(
    `  npx nevertrust audit query --outcome deny --limit 5 --data-dir ${extra.dataDir}   # the same denials from the audit log`,
  );
  if (mesh.people) {
    out.push("try it in a browser (people's access):");
    out.push(peopleTryIt(mesh.people, extra.dataDir));
    out.push(...peopleMfa(mesh.people));
  }
  return `${out.join('\n')}\n`;
}
