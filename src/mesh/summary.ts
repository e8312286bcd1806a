/**
 * What `nevertrust up` shows a person: the services and their identities, allowed and denied
 * counts, the latest denials with the rule and reason, anomaly signals, and what to try by hand.
 */
import type { LocalMesh } from './local-mesh.js';
import { STEPS } from './scenario.js';

export interface AnomalyLine {
  time: string;
  reason: string;
}

export function renderSummary(
  mesh: LocalMesh,
  extra: { anomalies: AnomalyLine[]; elapsedS: number; apiUrl: string; dataDir: string },
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
  return `${out.join('\n')}\n`;
}
