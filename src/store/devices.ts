import { type Kysely, PostgresAdapter } from 'kysely';
import { type DevicePosture, type DeviceRecord, devicePostureSchema, type PostureSource } from '../api/devices.js';
import { sha256Hex as hashToken } from './access-sessions.js';
import { StoreConflictError } from './errors.js';
import type { Database } from './schema.js';

/** Reports kept per device; older ones are pruned when a new one arrives. */
export const DEVICE_REPORTS_KEPT = 100;

/** What a consumed enrollment token grants: the owner and, when the admin fixed one, the device id. */
export interface DeviceTokenGrant {
  owner: string;
  deviceId: string | null;
}

export interface NewDeviceToken {
  /** The secret (32 hex); only its SHA-256 is stored. */
  secret: string;
  owner: string;
  deviceId: string | null;
  createdBy: string;
  expiresAt: number;
}

export type NewDevice = Omit<DeviceRecord, 'renewedAt' | 'revokedAt' | 'revokedReason' | 'posture'>;

/** One kept report of a device's history. */
export interface DeviceReportRecord {
  seq: number;
  source: PostureSource;
  collectedAt: number;
  receivedAt: number;
  posture: DevicePosture;
  /** The report as received (JSON text). */
  report: string;
}

type DeviceRow = Database['devices'];

// A stored posture that no longer parses is treated as none (fail closed: not compliant, not fresh).
const parsePosture = (text: string | null): DevicePosture | null => {
  if (text === null) return null;
  try {
    const r = devicePostureSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
};

const fromRow = (r: DeviceRow): DeviceRecord => ({
  id: r.id,
  owner: r.owner,
  name: r.name,
  spiffeId: r.spiffe_id,
  enrolledAt: Number(r.enrolled_at),
  certSerial: r.cert_serial,
  certNotAfter: Number(r.cert_not_after),
  renewedAt: r.renewed_at === null ? null : Number(r.renewed_at),
  revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  revokedReason: r.revoked_reason,
  posture: parsePosture(r.posture),
});

const changed = (res: { numUpdatedRows?: bigint }): number => Number(res.numUpdatedRows ?? 0n);

/**
 * Enrolled devices (migration 0009): one-time enrollment tokens (stored hashed), the devices with
 * their current certificate serial, revocation, the latest posture and a bounded report history.
 * Every "use once" / "only if still current" is one conditional statement, so two servers on one
 * store never both accept the same token or renew from the same certificate.
 */
export class DeviceRepository {
  private readonly pg: boolean;
  constructor(private readonly db: Kysely<Database>) {
    this.pg = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async createToken(t: NewDeviceToken, now = Date.now()): Promise<void> {
    await this.db
      .insertInto('device_tokens')
      .values({
        token_hash: hashToken(t.secret),
        owner: t.owner,
        device_id: t.deviceId,
        created_by: t.createdBy,
        created_at: now,
        expires_at: t.expiresAt,
        used_at: null,
        used_by: null,
      })
      .execute();
  }

  /**
   * Uses a token once for `deviceId`: unused, unexpired and (when the token fixes a device id) for
   * that id, all in one UPDATE. Undefined when the token is unknown, used, expired or for another id.
   */
  async consumeToken(secret: string, deviceId: string, now = Date.now()): Promise<DeviceTokenGrant | undefined> {
    const h = hashToken(secret);
    const res = await this.db
      .updateTable('device_tokens')
      .set({ used_at: now, used_by: deviceId })
      .where('token_hash', '=', h)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .where((eb) => eb.or([eb('device_id', 'is', null), eb('device_id', '=', deviceId)]))
      .executeTakeFirst();
    if (changed(res) !== 1) return undefined;
    const row = await this.db
      .selectFrom('device_tokens')
      .select(['owner', 'device_id'])
      .where('token_hash', '=', h)
      .executeTakeFirstOrThrow();
    return { owner: row.owner, deviceId: row.device_id };
  }

  /** Why a token cannot be used (for the refusal's reason), or undefined when it could be. */
  async tokenProblem(
    secret: string,
    deviceId: string,
    now = Date.now(),
  ): Promise<'unknown' | 'used' | 'expired' | 'other_device' | undefined> {
    const row = await this.db
      .selectFrom('device_tokens')
      .select(['used_at', 'expires_at', 'device_id'])
      .where('token_hash', '=', hashToken(secret))
      .executeTakeFirst();
    if (!row) return 'unknown';
    if (row.used_at !== null) return 'used';
    if (Number(row.expires_at) <= now) return 'expired';
    if (row.device_id !== null && row.device_id !== deviceId) return 'other_device';
    return undefined;
  }

  /** Adds a device. An id that exists (enrolled or revoked: revocation is final) → StoreConflictError. */
  async create(d: NewDevice): Promise<void> {
    try {
      await this.db
        .insertInto('devices')
        .values({
          id: d.id,
          owner: d.owner,
          name: d.name,
          spiffe_id: d.spiffeId,
          enrolled_at: d.enrolledAt,
          cert_serial: d.certSerial,
          cert_not_after: d.certNotAfter,
          renewed_at: null,
          revoked_at: null,
          revoked_reason: null,
          posture: null,
          posture_at: null,
        })
        .execute();
    } catch (err) {
      if (/unique|duplicate/i.test((err as Error).message)) throw new StoreConflictError(`device ${d.id}`);
      throw err;
    }
  }

  /**
   * Replaces the certificate only while `oldSerial` is still the current one and the device is not
   * revoked (compare-and-set): false when another renewal or a revocation came first.
   */
  async renewCertificate(
    id: string,
    oldSerial: string,
    next: { serial: string; notAfter: number },
    now = Date.now(),
  ): Promise<boolean> {
    const res = await this.db
      .updateTable('devices')
      .set({ cert_serial: next.serial, cert_not_after: next.notAfter, renewed_at: now })
      .where('id', '=', id)
      .where('cert_serial', '=', oldSerial)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  /** Revokes (final). False when the device is unknown or already revoked. */
  async revoke(id: string, reason: string | null, now = Date.now()): Promise<boolean> {
    const res = await this.db
      .updateTable('devices')
      .set({ revoked_at: now, revoked_reason: reason })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return changed(res) === 1;
  }

  async get(id: string): Promise<DeviceRecord | undefined> {
    const r = await this.db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? fromRow(r) : undefined;
  }

  /** Devices by id, optionally only one owner's. */
  async list(filter: { owner?: string } = {}): Promise<DeviceRecord[]> {
    let q = this.db.selectFrom('devices').selectAll();
    if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
    return (await q.orderBy('id').execute()).map(fromRow);
  }

  /**
   * Keeps a report: the device's latest posture becomes `posture`, the report is appended to the
   * history and the history is pruned to the newest {@link DEVICE_REPORTS_KEPT}. Returns the posture
   * kept before (null when none), so the caller can tell a compliance change; undefined when the
   * device is unknown or revoked (nothing is written).
   */
  async addReport(
    id: string,
    r: { posture: DevicePosture; report: string },
    now = Date.now(),
  ): Promise<{ previous: DevicePosture | null } | undefined> {
    return this.db.transaction().execute(async (trx) => {
      let q = trx.selectFrom('devices').select(['posture', 'revoked_at']).where('id', '=', id);
      // Two servers taking reports of one device at once must not both see the same "previous"
      // (a compliance change would be told twice or not at all). SQLite's writer is one connection.
      if (this.pg) q = q.forUpdate();
      const before = await q.executeTakeFirst();
      if (!before || before.revoked_at !== null) return undefined;
      const collectedAt = Date.parse(r.posture.collected_at);
      const res = await trx
        .updateTable('devices')
        .set({ posture: JSON.stringify(r.posture), posture_at: now })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (changed(res) !== 1) return undefined;
      await trx
        .insertInto('device_reports')
        .values({
          device_id: id,
          source: r.posture.source,
          collected_at: collectedAt,
          received_at: now,
          posture: JSON.stringify(r.posture),
          report: r.report,
        })
        .execute();
      const keep = await trx
        .selectFrom('device_reports')
        .select('seq')
        .where('device_id', '=', id)
        .orderBy('seq', 'desc')
        .offset(DEVICE_REPORTS_KEPT - 1)
        .limit(1)
        .executeTakeFirst();
      if (keep)
        await trx.deleteFrom('device_reports').where('device_id', '=', id).where('seq', '<', keep.seq).execute();
      return { previous: parsePosture(before.posture) };
    });
  }

  /** A device's kept reports, newest first. */
  async history(id: string, limit = DEVICE_REPORTS_KEPT): Promise<DeviceReportRecord[]> {
    const rows = await this.db
      .selectFrom('device_reports')
      .selectAll()
      .where('device_id', '=', id)
      .orderBy('seq', 'desc')
      .limit(Math.max(1, Math.min(limit, DEVICE_REPORTS_KEPT)))
      .execute();
    const out: DeviceReportRecord[] = [];
    for (const r of rows) {
      const posture = parsePosture(r.posture);
      if (!posture) continue;
      out.push({
        seq: Number(r.seq),
        source: r.source as PostureSource,
        collectedAt: Number(r.collected_at),
        receivedAt: Number(r.received_at),
        posture,
        report: r.report,
      });
    }
    return out;
  }
}
