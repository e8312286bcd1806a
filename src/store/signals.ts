import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { type SequencedSignal, type Signal, signalSchema, signalSubject } from '../api/signals.js';
import type { Database } from './schema.js';

/**
 * Revocation, risk and posture signals (issue #23), numbered in the order they are kept. The number
 * (`seq`) is the table's own auto-increment, so two servers on one PostgreSQL never hand out the same
 * one; a follower resumes with `after(lastSeq)` and misses nothing still kept.
 */
export class SignalRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Keeps a signal (validated again: the store never holds one the stream could not send); its seq. */
  async append(signal: Signal, receivedAt: number = Date.now()): Promise<number> {
    const s = signalSchema.parse(signal);
    const values = { kind: s.kind, subject: signalSubject(s), signal: JSON.stringify(s), received_at: receivedAt };
    if (!(this.db.getExecutor().adapter instanceof PostgresAdapter)) {
      const r = await this.db.insertInto('signals').values(values).returning('seq').executeTakeFirstOrThrow();
      return Number(r.seq);
    }
    // PostgreSQL hands out sequence numbers before commit: two concurrent inserts may commit as 6
    // then 5, and a follower that read 6 would never see 5. Holding a table lock that only writers
    // take makes numbering and commit order the same (readers are not blocked).
    return this.db.transaction().execute(async (trx) => {
      await sql`LOCK TABLE signals IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
      const r = await trx.insertInto('signals').values(values).returning('seq').executeTakeFirstOrThrow();
      return Number(r.seq);
    });
  }

  /**
   * The kept signals with seq > `after`, oldest first, at most `limit`. A row that no longer parses
   * (written by a newer version) is skipped rather than sent: the stream only carries valid signals.
   */
  async after(after: number, limit = 1000): Promise<SequencedSignal[]> {
    const rows = await this.db
      .selectFrom('signals')
      .select(['seq', 'signal', 'received_at'])
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(limit)
      .execute();
    const out: SequencedSignal[] = [];
    for (const r of rows) {
      const parsed = signalSchema.safeParse(safeJson(r.signal));
      if (!parsed.success) continue;
      out.push({
        seq: Number(r.seq),
        signal: parsed.data,
        received_at: new Date(Number(r.received_at)).toISOString(),
      });
    }
    return out;
  }

  /** The newest seq kept (0 when none was ever kept, or all were pruned and the table is empty). */
  async head(): Promise<number> {
    const r = await this.db
      .selectFrom('signals')
      .select((eb) => eb.fn.max('seq').as('m'))
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** The oldest seq still kept (0 when none is kept). */
  async oldest(): Promise<number> {
    const r = await this.db
      .selectFrom('signals')
      .select((eb) => eb.fn.min('seq').as('m'))
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /**
   * Forgets signals received before `beforeMs`, but always keeps the newest one, so `head()` never
   * goes back (a follower would otherwise see seq numbers it already had). Returns how many went.
   */
  async prune(beforeMs: number): Promise<number> {
    const head = await this.head();
    const res = await this.db
      .deleteFrom('signals')
      .where('received_at', '<', beforeMs)
      .where('seq', '<', head)
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
