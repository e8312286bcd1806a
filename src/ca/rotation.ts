/**
 * The rotation schedule of CA generations, as SPIRE's: prepare the next generation at half of the
 * active one's lifetime (and publish it), activate it at a sixth left, and keep a retired one
 * published until everything it signed has expired. Pure over the generations and the time; the CA
 * persists the result and bumps `spiffe_sequence` when the bundle changed.
 */
import type { Generation } from './generation.js';

/** What rotation needs from the CA: a new generation, and a hook for the one it retires from active. */
export interface RotationHooks {
  newGeneration(t: number): Generation;
  /** Called when the active generation is retired (before the prepared one takes over). */
  retired(g: Generation): void;
}

/**
 * Advances `gens` to time `t` (`force`: rotate now). New generations are pushed onto `gens` and
 * statuses change in place; returns the generations still held and whether the bundle changed.
 */
export function advanceGenerations(
  gens: Generation[],
  t: number,
  force: boolean,
  hooks: RotationHooks,
): { gens: Generation[]; changed: boolean } {
  let changed = false;
  let active = gens.find((g) => g.status === 'active');
  let prepared = gens.find((g) => g.status === 'prepared');
  // After a long downtime the prepared generation may itself be due for replacement: never activate it.
  if (prepared && t >= prepared.notAfter - (prepared.notAfter - prepared.notBefore) / 6) {
    prepared.status = 'retired';
    prepared = undefined;
    changed = true;
  }
  if (active && !prepared) {
    const half = active.notBefore + (active.notAfter - active.notBefore) / 2;
    if (t >= half || force) {
      prepared = hooks.newGeneration(t);
      gens.push(prepared);
      changed = true;
    }
  }
  const activateAt = active ? active.notAfter - (active.notAfter - active.notBefore) / 6 : 0;
  if (!active || t >= activateAt || force) {
    if (!prepared) {
      prepared = hooks.newGeneration(t);
      gens.push(prepared);
    }
    if (active) {
      active.status = 'retired';
      hooks.retired(active);
    }
    prepared.status = 'active';
    active = prepared;
    changed = true;
  }
  for (const g of gens) {
    if (g.status !== 'retired') continue;
    // Unpublished only once the last credential it signed has expired.
    if (g.x509Published && t >= g.x509LastExpiry) {
      g.x509Published = false;
      changed = true;
    }
    if (g.jwtPublished && t >= g.jwtLastExpiry) {
      g.jwtPublished = false;
      changed = true;
    }
  }
  const held = gens.filter((g) => g.x509Published || g.jwtPublished || g.status !== 'retired');
  return { gens: held, changed };
}
