/**
 * Errors that point into YAML: file, line, column and the field path, computed from the
 * `yaml` library's node ranges. Pure (works on text already read).
 */
import { isMap, isScalar, isSeq, type LineCounter, type Node, type Document as YamlDocument } from 'yaml';
import type { SourceLocation } from './model.js';
import { NevertrustError } from '../errors.js';

/** One mistake in a policy or test file. */
export interface PolicyIssue {
  file: string;
  line: number;
  column: number;
  /** Dotted field path, e.g. `spec.rules[0].when[1].key`; `(document)` for whole-document errors. */
  field: string;
  message: string;
}

/** Thrown when a policy set is rejected; `issues` holds every mistake found, `message` the first. */
export class PolicyLoadError extends NevertrustError<'ERR_POLICY_INVALID'> {
  override readonly name = 'PolicyLoadError';
  readonly code = 'ERR_POLICY_INVALID';
  readonly issues: readonly PolicyIssue[];
  constructor(issues: PolicyIssue[]) {
    const first = issues[0];
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    super(first ? `${formatIssue(first)}${more}` : 'policy set rejected', { status: 400 });
    this.issues = issues;
  }
}

/** `file:line:col: field: message`. */
export function formatIssue(i: PolicyIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.field}: ${i.message}`;
}

/** `spec.rules[0].from` from `['spec', 'rules', 0, 'from']`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? String(seg) : `.${String(seg)}`;
  }
  return s === '' ? '(document)' : s;
}

/** One YAML document being parsed: collects issues with positions. */
export class DocContext {
  readonly issues: PolicyIssue[] = [];
  constructor(
    readonly file: string,
    readonly doc: YamlDocument.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /** Position of the node at `path` (or of the key `key` under it), falling back to the nearest parent. */
  locate(path: readonly PropertyKey[], key?: string): SourceLocation {
    let node: unknown = this.doc.contents;
    let offset = (this.doc.contents as Node | null)?.range?.[0] ?? this.doc.range[0];
    const segs = key === undefined ? path : [...path, key];
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i];
      let next: unknown;
      let keyNode: unknown;
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        next = pair?.value;
        keyNode = pair?.key;
      } else if (isSeq(node) && typeof seg === 'number') {
        next = node.items[seg];
      }
      const target = key !== undefined && i === segs.length - 1 ? keyNode : next;
      const r = (target as Node | undefined)?.range ?? (keyNode as Node | undefined)?.range;
      if (!r) break;
      offset = r[0];
      node = next;
    }
    const pos = this.lines.linePos(offset);
    return { file: this.file, line: pos.line, column: pos.col };
  }

  error(path: readonly PropertyKey[], message: string, key?: string): void {
    const loc = this.locate(path, key);
    this.issues.push({ ...loc, field: fieldPath(key === undefined ? path : [...path, key]), message });
  }
}
