import type { Kysely, Selectable } from 'kysely';
import type { AgentRecord } from '../api/agents.js';
import type { AgentTable, Database } from './schema.js';

/** The model type of an agent lives with its wire form in src/api/agents.ts. */
export type { AgentRecord } from '../api/agents.js';

const toAgent = (r: Selectable<AgentTable>): AgentRecord => ({
  spiffeId: r.spiffe_id,
  attestation: r.attestation,
  serial: r.serial,
  svidExpiresAt: Number(r.svid_expires_at),
  attestedAt: Number(r.attested_at),
  renewedAt: Number(r.renewed_at),
  banned: Number(r.banned) === 1,
  remoteAddr: r.remote_addr,
});

/** Attested agents: their current SVID serial (renewal must present it), expiry, and ban flag. */
export class AgentRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(a: Omit<AgentRecord, 'banned' | 'renewedAt'>): Promise<void> {
    await this.db
      .insertInto('agents')
      .values({
        spiffe_id: a.spiffeId,
        attestation: a.attestation,
        serial: a.serial,
        svid_expires_at: a.svidExpiresAt,
        attested_at: a.attestedAt,
        renewed_at: a.attestedAt,
        banned: 0,
        remote_addr: a.remoteAddr,
      })
      .execute();
  }

  async get(spiffeId: string): Promise<AgentRecord | undefined> {
    const r = await this.db.selectFrom('agents').selectAll().where('spiffe_id', '=', spiffeId).executeTakeFirst();
    return r ? toAgent(r) : undefined;
  }

  async list(): Promise<AgentRecord[]> {
    return (await this.db.selectFrom('agents').selectAll().orderBy('attested_at').execute()).map(toAgent);
  }

  /** Records a renewal, only if the agent still holds `previousSerial` and is not banned. */
  async renew(spiffeId: string, previousSerial: string, serial: string, svidExpiresAt: number): Promise<boolean> {
    const res = await this.db
      .updateTable('agents')
      .set({ serial, svid_expires_at: svidExpiresAt, renewed_at: Date.now() })
      .where('spiffe_id', '=', spiffeId)
      .where('serial', '=', previousSerial)
      .where('banned', '=', 0)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  async ban(spiffeId: string): Promise<boolean> {
    const res = await this.db
      .updateTable('agents')
      .set({ banned: 1 })
      .where('spiffe_id', '=', spiffeId)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  async delete(spiffeId: string): Promise<boolean> {
    const res = await this.db.deleteFrom('agents').where('spiffe_id', '=', spiffeId).executeTakeFirst();
    return Number(res.numDeletedRows) === 1;
  }
}
