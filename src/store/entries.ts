import { randomUUID } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { RegistrationEntry } from '../api/entries.js';
import { StoreConflictError } from './errors.js';
import type { Database, RegistrationEntryTable } from './schema.js';
import { NevertrustError } from '../errors.js';

export type NewEntry = Omit<RegistrationEntry, 'id' | 'revision' | 'createdAt' | 'updatedAt'>;

export class DuplicateEntryError extends NevertrustError<'ERR_ENTRY_DUPLICATE'> {
  override readonly name = 'DuplicateEntryError';
  readonly code = 'ERR_ENTRY_DUPLICATE';
  constructor(readonly existingId: string) {
    super(`an entry with the same SPIFFE ID, parent and selectors already exists (${existingId})`, { status: 409 });
  }
}

function toEntry(r: Selectable<RegistrationEntryTable>): RegistrationEntry {
  return {
    id: r.id,
    spiffeId: r.spiffe_id,
    parentId: r.parent_id,
    selectors: JSON.parse(r.selectors) as string[],
    x509SvidTtl: Number(r.x509_svid_ttl),
    jwtSvidTtl: Number(r.jwt_svid_ttl),
    dnsNames: JSON.parse(r.dns_names) as string[],
    hint: r.hint,
    admin: Number(r.admin) === 1,
    expiresAt: r.expires_at === null ? null : Number(r.expires_at),
    revision: Number(r.revision),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

const canonicalSelectors = (s: string[]) => JSON.stringify([...new Set(s)].sort());

/** Registration entries. Deletion is soft so that other servers' change detection sees it. */
export class EntryRepository {
  constructor(private readonly db: Kysely<Database>) {}

  private live() {
    return this.db.selectFrom('registration_entries').selectAll().where('deleted_at', 'is', null);
  }

  async create(e: NewEntry): Promise<RegistrationEntry> {
    const now = Date.now();
    const selectors = canonicalSelectors(e.selectors);
    const dup = await this.live()
      .where('spiffe_id', '=', e.spiffeId)
      .where('parent_id', '=', e.parentId)
      .where('selectors', '=', selectors)
      .executeTakeFirst();
    if (dup) throw new DuplicateEntryError(dup.id);
    const row = {
      id: randomUUID(),
      spiffe_id: e.spiffeId,
      parent_id: e.parentId,
      selectors,
      x509_svid_ttl: e.x509SvidTtl,
      jwt_svid_ttl: e.jwtSvidTtl,
      dns_names: JSON.stringify(e.dnsNames),
      hint: e.hint,
      admin: e.admin ? 1 : 0,
      expires_at: e.expiresAt,
      revision: 1,
      created_at: now,
      updated_at: now,
      deleted_at: null,
    };
    try {
      await this.db.insertInto('registration_entries').values(row).execute();
    } catch (err) {
      // The unique index catches a concurrent duplicate from another server.
      if (/unique|duplicate/i.test((err as Error).message)) throw new DuplicateEntryError('created concurrently');
      throw err;
    }
    return toEntry(row);
  }

  async get(id: string): Promise<RegistrationEntry | undefined> {
    const r = await this.live().where('id', '=', id).executeTakeFirst();
    return r ? toEntry(r) : undefined;
  }

  async list(filter: { parentId?: string; spiffeId?: string; selector?: string } = {}): Promise<RegistrationEntry[]> {
    let q = this.live();
    if (filter.parentId) q = q.where('parent_id', '=', filter.parentId);
    if (filter.spiffeId) q = q.where('spiffe_id', '=', filter.spiffeId);
    const rows = await q.orderBy('spiffe_id').orderBy('id').execute();
    const out = rows.map(toEntry);
    return filter.selector ? out.filter((e) => e.selectors.includes(filter.selector as string)) : out;
  }

  /** Replaces fields; `expectedRevision` makes it a compare-and-set. */
  async update(
    id: string,
    patch: Partial<NewEntry>,
    expectedRevision?: number,
  ): Promise<RegistrationEntry | undefined> {
    const current = await this.get(id);
    if (!current) return undefined;
    if (expectedRevision !== undefined && expectedRevision !== current.revision) {
      throw new StoreConflictError(`entry ${id} (revision ${current.revision}, you sent ${expectedRevision})`);
    }
    const next = { ...current, ...patch };
    const res = await this.db
      .updateTable('registration_entries')
      .set({
        spiffe_id: next.spiffeId,
        parent_id: next.parentId,
        selectors: canonicalSelectors(next.selectors),
        x509_svid_ttl: next.x509SvidTtl,
        jwt_svid_ttl: next.jwtSvidTtl,
        dns_names: JSON.stringify(next.dnsNames),
        hint: next.hint,
        admin: next.admin ? 1 : 0,
        expires_at: next.expiresAt,
        revision: current.revision + 1,
        updated_at: Math.max(Date.now(), current.updatedAt + 1),
      })
      .where('id', '=', id)
      .where('revision', '=', current.revision)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw new StoreConflictError(`entry ${id}`);
    return this.get(id);
  }

  async delete(id: string): Promise<boolean> {
    const now = Date.now();
    const res = await this.db
      .updateTable('registration_entries')
      .set({ deleted_at: now, updated_at: now })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /**
   * A cheap fingerprint of the whole table that moves on every create (count), update (sum of
   * revisions) and delete (count of deleted rows), even several within one millisecond.
   */
  async changeMark(): Promise<string> {
    const r = await this.db
      .selectFrom('registration_entries')
      .select((eb) => [
        eb.fn.max('updated_at').as('m'),
        eb.fn.countAll().as('n'),
        eb.fn.sum('revision').as('r'),
        eb.fn.count('deleted_at').as('d'),
      ])
      .executeTakeFirst();
    return `${r?.m ?? 0}:${r?.n ?? 0}:${r?.r ?? 0}:${r?.d ?? 0}`;
  }
}
