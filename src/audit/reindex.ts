/**
 * `audit reindex`: rebuilds the block query index (`audit_block`, `audit_block_column`) from the
 * rows, which are the truth — the repair for what `verify` reports as "the query index disagrees" —
 * and drops the service graph's block summaries (`audit_block_edges`), made again on first use.
 * The index is not hashed, so rebuilding it changes nothing the log proves. Safe while a server
 * appends: each block is rebuilt in its own transaction that first takes the head-row lock, which
 * every appender takes too.
 */
import { sql } from 'kysely';
import { BLOCK_EVENTS, blockEvents, builderFrom, writeBlocks } from '../store/audit-blocks.js';
import type { Store } from '../store/index.js';

export interface ReindexResult {
  /** Blocks written. */
  blocks: number;
  /** Events indexed. */
  events: number;
  /** Block rows removed because no event of theirs is in the database (sealed, or past the log). */
  removed: number;
}

/**
 * Rebuilds the whole block index from the stored rows.
 *
 * @example
 * const { blocks, events } = await reindexLog(store);
 */
export async function reindexLog(store: Store): Promise<ReindexResult> {
  const db = store.db;
  const result: ReindexResult = { blocks: 0, events: 0, removed: 0 };
  const first = await db.selectFrom('audit_head').select(['sealed_size']).where('id', '=', 1).executeTakeFirst();
  let block = Math.floor(Number(first?.sealed_size ?? 0) / BLOCK_EVENTS);
  for (;;) {
    const done = await db.transaction().execute(async (trx) => {
      // The appenders' lock: the block cannot grow while it is rebuilt.
      const head = await sql<{ tree_size: number | string }>`update audit_head set tree_size = tree_size
        where id = 1 returning tree_size`.execute(trx);
      const size = Number(head.rows[0]?.tree_size ?? 0);
      const start = block * BLOCK_EVENTS;
      if (start >= size) return true;
      const end = Math.min(start + BLOCK_EVENTS, size);
      const rows = await blockEvents(trx, start, end);
      await trx.deleteFrom('audit_block_column').where('block', '=', block).execute();
      await trx.deleteFrom('audit_block').where('block', '=', block).execute();
      // The graph's summary is derived from the same rows: dropped, made again on first use.
      await trx.deleteFrom('audit_block_edges').where('block', '=', block).execute();
      if (rows.length > 0) {
        await writeBlocks(trx, builderFrom(start, rows, end).take());
        result.blocks++;
        result.events += rows.length;
      } else result.removed++;
      return false;
    });
    if (done) break;
    block++;
  }
  // Blocks outside what the rows cover — wholly sealed, or past the end of the log — under the
  // same lock, so a block an appender has just started is not taken for a stray one.
  await db.transaction().execute(async (trx) => {
    const head = await sql<{ tree_size: number | string; sealed_size: number | string }>`update audit_head
      set tree_size = tree_size where id = 1 returning tree_size, sealed_size`.execute(trx);
    const low = Math.floor(Number(head.rows[0]?.sealed_size ?? 0) / BLOCK_EVENTS);
    const high = Math.ceil(Number(head.rows[0]?.tree_size ?? 0) / BLOCK_EVENTS);
    const stray = await trx
      .selectFrom('audit_block')
      .select('block')
      .where((eb) => eb.or([eb('block', '<', low), eb('block', '>=', high)]))
      .execute();
    await trx
      .deleteFrom('audit_block_column')
      .where((eb) => eb.or([eb('block', '<', low), eb('block', '>=', high)]))
      .execute();
    await trx
      .deleteFrom('audit_block')
      .where((eb) => eb.or([eb('block', '<', low), eb('block', '>=', high)]))
      .execute();
    await trx
      .deleteFrom('audit_block_edges')
      .where((eb) => eb.or([eb('block', '<', low), eb('block', '>=', high)]))
      .execute();
    result.removed += stray.length;
  });
  return result;
}
