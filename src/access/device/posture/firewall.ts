/**
 * Firewall signal: nftables, iptables, ufw, firewalld. Each tool's parser says active, inactive or
 * unknown; reading rules needs root, and "could not read" is unknown, never "inactive".
 */
import type { FirewallTool, PostureFirewall } from '../../../api/index.js';
import { clip, firstLine, type ProbeOptions, type ProbeResult, runProbe } from './exec.js';

/** One tool's verdict: null = could not tell (with why). */
export interface ToolVerdict {
  active: boolean | null;
  reason: string;
}

const PERMISSION =
  /permission denied|operation not permitted|must be root|need to be root|not authorized|EPERM|EACCES/i;

/** Strips "quoted strings" (comments may say "drop") before looking for verdicts. */
const unquoted = (line: string): string => line.replace(/"(?:[^"\\]|\\.)*"/g, '""');

/**
 * `nft list ruleset`: active when a base chain (one with a `hook`) of a filter table has a `drop`
 * policy, or a `drop`/`reject` rule. Empty output is a machine with no rules (inactive).
 *
 * @example
 * ```ts
 * parseNftRuleset('table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n');
 * // { active: true, reason: 'inet filter/input: policy drop' }
 * ```
 */
export function parseNftRuleset(text: string): ToolVerdict {
  if (text.trim() === '') return { active: false, reason: 'nftables: the ruleset is empty' };
  let depth = 0;
  let table = '';
  let chain: { name: string; hooked: boolean; verdict?: string } | undefined;
  let sawTable = false;
  // `flags dormant` switches a whole table off: its chains filter nothing.
  let dormant = false;
  let found: string | undefined;
  for (const rawLine of text.split('\n')) {
    const line = unquoted(rawLine).trim();
    if (line === '' || line.startsWith('#')) continue;
    if (depth === 0) {
      const t = /^table\s+(\S+\s+)?(\S+)\s*\{$/.exec(line);
      if (!t) return { active: null, reason: clip(`nftables: unrecognised line ${JSON.stringify(line.slice(0, 60))}`) };
      sawTable = true;
      dormant = false;
      table = `${(t[1] ?? '').trim()} ${t[2]}`.trim();
    } else if (depth === 1) {
      const c = /^chain\s+(\S+)\s*\{$/.exec(line);
      if (c) chain = { name: c[1] as string, hooked: false };
      else if (/^flags\s.*\bdormant\b/.test(line)) dormant = true;
    } else if (depth === 2 && chain) {
      if (/\btype\s+filter\s+hook\s+\S+/.test(line)) {
        chain.hooked = true;
        if (/\bpolicy\s+drop\b/.test(line)) chain.verdict = 'policy drop';
      } else if (/(^|\s)(drop|reject)(\s|;|$)/.test(line)) {
        chain.verdict ??= `rule "${line.slice(0, 60)}"`;
      }
    }
    depth += (line.match(/\{/g) ?? []).length - (line.match(/\}/g) ?? []).length;
    if (depth < 0) return { active: null, reason: 'nftables: unbalanced braces' };
    if (depth <= 1 && chain) {
      if (chain.hooked && chain.verdict && !dormant && !found) found = `${table}/${chain.name}: ${chain.verdict}`;
      chain = undefined;
    }
  }
  if (depth !== 0) return { active: null, reason: 'nftables: the ruleset output is truncated' };
  if (!sawTable) return { active: null, reason: 'nftables: no table in the output' };
  if (found) return { active: true, reason: clip(`nftables ${found}`) };
  return { active: false, reason: 'nftables: no hooked filter chain drops or rejects' };
}

/**
 * `iptables -S`: active with `-P INPUT DROP` or any `-j DROP`/`-j REJECT` rule.
 *
 * @example
 * ```ts
 * parseIptablesRules('-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n'); // { active: false, … }
 * ```
 */
export function parseIptablesRules(text: string): ToolVerdict {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) return { active: null, reason: 'iptables: empty output (it always prints the policies)' };
  let sawPolicy = false;
  for (const line of lines) {
    if (!/^-[PAN]\s/.test(line))
      return { active: null, reason: clip(`iptables: unrecognised line ${JSON.stringify(line.slice(0, 60))}`) };
    if (line.startsWith('-P ')) sawPolicy = true;
    if (/^-P\s+INPUT\s+DROP$/.test(line)) return { active: true, reason: 'iptables: -P INPUT DROP' };
    if (/^-A\s.*\s-j\s+(DROP|REJECT)\b/.test(unquoted(line)))
      return { active: true, reason: clip(`iptables: ${line.slice(0, 80)}`) };
  }
  if (!sawPolicy) return { active: null, reason: 'iptables: no chain policies in the output (truncated?)' };
  return { active: false, reason: 'iptables: only ACCEPT policies and no DROP/REJECT rule' };
}

/** `ufw status`: `Status: active` or `Status: inactive`. */
export function parseUfwStatus(text: string): ToolVerdict {
  const m = /^Status:\s*(active|inactive)\s*$/m.exec(text);
  if (!m) return { active: null, reason: clip(`ufw: unrecognised status ${JSON.stringify(firstLine(text, 60))}`) };
  return { active: m[1] === 'active', reason: `ufw: Status: ${m[1]}` };
}

/** `firewall-cmd --state`: `running` or `not running`. */
export function parseFirewalldState(text: string): ToolVerdict {
  const s = text.trim();
  if (s === 'running') return { active: true, reason: 'firewalld: running' };
  if (s === 'not running') return { active: false, reason: 'firewalld: not running' };
  return { active: null, reason: clip(`firewalld: unrecognised state ${JSON.stringify(s.slice(0, 60))}`) };
}

interface ToolProbe {
  tool: FirewallTool;
  file: string;
  args: string[];
  parse: (stdout: string) => ToolVerdict;
  /** Exit codes that still carry an answer (firewall-cmd says "not running" with 252). */
  okCodes: number[];
}

// The front ends first: their own status is what their users configured.
const TOOLS: ToolProbe[] = [
  { tool: 'ufw', file: 'ufw', args: ['status'], parse: parseUfwStatus, okCodes: [0] },
  { tool: 'firewalld', file: 'firewall-cmd', args: ['--state'], parse: parseFirewalldState, okCodes: [0, 252] },
  { tool: 'nftables', file: 'nft', args: ['list', 'ruleset'], parse: parseNftRuleset, okCodes: [0] },
  { tool: 'iptables', file: 'iptables', args: ['-S'], parse: parseIptablesRules, okCodes: [0] },
];

/** A tool's run turned into a verdict; undefined when the tool is not installed. */
export function verdictOf(p: Pick<ToolProbe, 'file' | 'parse' | 'okCodes'>, r: ProbeResult): ToolVerdict | undefined {
  if (r.kind === 'absent') return undefined;
  if (r.kind === 'failed') return { active: null, reason: r.reason };
  if (!p.okCodes.includes(r.code)) {
    const why = firstLine(r.stderr) || firstLine(r.stdout);
    const perm = PERMISSION.test(r.stderr) || PERMISSION.test(r.stdout);
    return { active: null, reason: clip(`${p.file}: ${perm ? 'needs root' : `exited ${r.code}`} (${why})`) };
  }
  return p.parse(r.stdout);
}

/**
 * Combines the tools: active when any says active; inactive only when every installed tool answered
 * inactive; otherwise unknown with every tool's reason.
 */
export function combineFirewall(verdicts: { tool: FirewallTool; verdict: ToolVerdict }[]): PostureFirewall {
  const on = verdicts.find((v) => v.verdict.active === true);
  if (on) return { active: true, tool: on.tool, reason: clip(on.verdict.reason) };
  const reasons = clip(verdicts.map((v) => v.verdict.reason).join('; '));
  if (verdicts.length === 0)
    return { active: null, tool: null, reason: 'no firewall tool installed (nft, iptables, ufw, firewall-cmd)' };
  if (verdicts.some((v) => v.verdict.active === null)) return { active: null, tool: null, reason: reasons };
  return { active: false, tool: null, reason: reasons };
}

export async function collectFirewall(opts: ProbeOptions = {}): Promise<PostureFirewall> {
  const probe = { timeoutMs: 10_000, maxBytes: 4 * 1024 * 1024, ...opts };
  const runs = await Promise.all(TOOLS.map(async (t) => ({ t, r: await runProbe(t.file, t.args, probe) })));
  const verdicts: { tool: FirewallTool; verdict: ToolVerdict }[] = [];
  for (const { t, r } of runs) {
    const verdict = verdictOf(t, r);
    if (verdict) verdicts.push({ tool: t.tool, verdict });
  }
  return combineFirewall(verdicts);
}
