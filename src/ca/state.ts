/**
 * Where the CA keeps its state: a pluggable string store. The state holds certificates and
 * private keys sealed under the KEK only.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Persistence of the CA's (already sealed) state document. The integrator plugs the real store in.
 *
 * @example
 * ```ts
 * const store: CaStateStore = { load: async () => kv.get('ca'), save: async (s) => kv.set('ca', s) };
 * ```
 */
export interface CaStateStore {
  load(): Promise<string | null>;
  save(state: string): Promise<void>;
}

/** In-memory store, for tests and ephemeral servers. */
export class MemoryCaStateStore implements CaStateStore {
  state: string | null = null;
  async load(): Promise<string | null> {
    return this.state;
  }
  async save(state: string): Promise<void> {
    this.state = state;
  }
}

/**
 * JSON file store, written atomically (temp file + rename) with mode 0600.
 *
 * @example
 * ```ts
 * const store = new FileCaStateStore('/var/lib/nevertrust/ca-state.json');
 * ```
 */
export class FileCaStateStore implements CaStateStore {
  constructor(readonly path: string) {}

  async load(): Promise<string | null> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async save(state: string): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(state);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
  }
}
