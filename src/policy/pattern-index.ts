/**
 * A string-keyed index for Istio's exact/prefix/suffix/presence patterns, used by the compiled
 * snapshot for targets and source principals.
 */
import { flatString } from './fastmatch.js';
import type { StringMatcher } from './model.js';

/**
 * A string-keyed index for exact/prefix/suffix/presence patterns. Prefix and suffix patterns are
 * hashed by their length, so a lookup costs one hash probe per distinct pattern length (a flat
 * trie): bounded by key length, independent of the number of patterns.
 */
export class PatternIndex<T> {
  private readonly exact = new Map<string, T[]>();
  private readonly prefix = new Map<number, Map<string, T[]>>();
  private readonly suffix = new Map<number, Map<string, T[]>>();
  private readonly presence: T[] = [];
  private prefixLengths: number[] = [];
  private suffixLengths: number[] = [];

  add(m: StringMatcher, v: T): void {
    if (m.kind === 'presence') {
      this.presence.push(v);
      return;
    }
    // Keys are flat copies: a lookup that finds its key compares characters with it, and a
    // slice of the policy text would drag that text into the cache on every decision.
    if (m.kind === 'exact') {
      push(this.exact, flatString(m.value), v);
      return;
    }
    const byLen = m.kind === 'prefix' ? this.prefix : this.suffix;
    let map = byLen.get(m.value.length);
    if (!map) {
      map = new Map();
      byLen.set(m.value.length, map);
    }
    push(map, flatString(m.value), v);
  }

  /** Call after the last `add`. */
  seal(): void {
    this.prefixLengths = [...this.prefix.keys()].sort((a, b) => a - b);
    this.suffixLengths = [...this.suffix.keys()].sort((a, b) => a - b);
  }

  /** Appends to `out` every value whose pattern matches `s` (a value may come more than once). */
  collect(s: string | undefined, out: T[]): void {
    if (s === undefined) return;
    const e = this.exact.get(s);
    if (e !== undefined) for (let i = 0; i < e.length; i++) out.push(e[i] as T);
    const pl = this.prefixLengths;
    for (let j = 0; j < pl.length; j++) {
      const len = pl[j] as number;
      if (len > s.length) break;
      const hit = this.prefix.get(len)?.get(s.slice(0, len));
      if (hit !== undefined) for (let i = 0; i < hit.length; i++) out.push(hit[i] as T);
    }
    const sl = this.suffixLengths;
    for (let j = 0; j < sl.length; j++) {
      const len = sl[j] as number;
      if (len > s.length) break;
      const hit = this.suffix.get(len)?.get(s.slice(s.length - len));
      if (hit !== undefined) for (let i = 0; i < hit.length; i++) out.push(hit[i] as T);
    }
    const pr = this.presence;
    if (s !== '') for (let i = 0; i < pr.length; i++) out.push(pr[i] as T);
  }

  get size(): number {
    return this.exact.size + this.prefixLengths.length + this.suffixLengths.length + this.presence.length;
  }
}

function push<K, T>(m: Map<K, T[]>, k: K, v: T): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}
