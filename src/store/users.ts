import type { Kysely } from 'kysely';
import { NevertrustError } from '../errors.js';
import type { Database, UserTable } from './schema.js';

/** A person of the built-in OpenID provider, as stored (the hash never leaves the server). */
export interface UserRecord {
  username: string;
  email?: string;
  name?: string;
  groups: string[];
  passwordHash: string;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface NewUser {
  username: string;
  email?: string;
  name?: string;
  groups: string[];
  passwordHash: string;
  disabled?: boolean;
}

/** Fields an update may change; `null` clears email or name. */
export interface UserChanges {
  email?: string | null;
  name?: string | null;
  groups?: string[];
  passwordHash?: string;
  disabled?: boolean;
}

/** A user with this username exists already. */
export class DuplicateUserError extends NevertrustError<'ERR_DUPLICATE_USER'> {
  override readonly name = 'DuplicateUserError';
  readonly code = 'ERR_DUPLICATE_USER';
  constructor(username: string) {
    super(`user "${username}" already exists`, { status: 409 });
  }
}

function fromRow(r: UserTable): UserRecord {
  return {
    username: r.username,
    ...(r.email !== null && { email: r.email }),
    ...(r.name !== null && { name: r.name }),
    groups: JSON.parse(r.groups) as string[],
    passwordHash: r.password_hash,
    disabled: Number(r.disabled) === 1,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

const sortedGroups = (g: string[]) => JSON.stringify([...new Set(g)].sort());

/** People of the built-in OpenID provider; the only SQL on the `users` table. */
export class UserRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(u: NewUser): Promise<UserRecord> {
    const now = Date.now();
    const res = await this.db
      .insertInto('users')
      .values({
        username: u.username,
        email: u.email ?? null,
        name: u.name ?? null,
        groups: sortedGroups(u.groups),
        password_hash: u.passwordHash,
        disabled: u.disabled ? 1 : 0,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) => oc.column('username').doNothing())
      .executeTakeFirst();
    if (Number(res.numInsertedOrUpdatedRows ?? 0) !== 1) throw new DuplicateUserError(u.username);
    const created = await this.get(u.username);
    if (!created) throw new DuplicateUserError(u.username);
    return created;
  }

  async get(username: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    return row ? fromRow(row) : undefined;
  }

  async list(): Promise<UserRecord[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('username').execute();
    return rows.map(fromRow);
  }

  /** Applies the changes; undefined when there is no such user. */
  async update(username: string, c: UserChanges): Promise<UserRecord | undefined> {
    const res = await this.db
      .updateTable('users')
      .set({
        ...(c.email !== undefined && { email: c.email }),
        ...(c.name !== undefined && { name: c.name }),
        ...(c.groups !== undefined && { groups: sortedGroups(c.groups) }),
        ...(c.passwordHash !== undefined && { password_hash: c.passwordHash }),
        ...(c.disabled !== undefined && { disabled: c.disabled ? 1 : 0 }),
        updated_at: Date.now(),
      })
      .where('username', '=', username)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) return undefined;
    return this.get(username);
  }

  /** True when the user existed. */
  async remove(username: string): Promise<boolean> {
    const res = await this.db.deleteFrom('users').where('username', '=', username).executeTakeFirst();
    return Number(res.numDeletedRows) === 1;
  }
}
