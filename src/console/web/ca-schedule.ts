/** The CA's rotation schedule as the console shows it. Pure: no DOM, no Preact. */
import type { CaState } from './wire.js';

/**
 * The next step of the CA's rotation schedule, as src/ca/rotation.ts runs it (the admin API does
 * not state it): with no prepared generation, one is prepared at half the active one's lifetime;
 * a prepared one is activated when a sixth of the active one's lifetime is left.
 */
export function nextRotation(gens: CaState['authorities']): { step: string; at: string } | null {
  const active = gens.find((g) => g.status === 'active');
  if (!active) return null;
  const from = Date.parse(active.notBefore);
  const to = Date.parse(active.notAfter);
  const prepared = gens.some((g) => g.status === 'prepared');
  const at = prepared ? to - (to - from) / 6 : from + (to - from) / 2;
  return {
    step: prepared ? 'activate the prepared generation' : 'prepare the next generation',
    at: new Date(at).toISOString(),
  };
}
