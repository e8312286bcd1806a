/**
 * The one place a refusal becomes an audit record: an `admin.action` deny with the caller's address,
 * the path (clipped to the schema's limit, so a 16 KB path is recorded rather than refused by the
 * log) and why. A caller's repeated refusals for the same reason are one event with their count
 * (`ServerEvents.refusals`), and a note's warning is logged once per such run, not once per request.
 */
import { clipText } from '../audit/clip.js';
import { TARGET_LIMITS } from '../audit/event.js';
import type { Logger } from '../util/logger.js';
import type { ServerEvents } from './events.js';
import type { RefusalHook } from './router.js';

/**
 * The refusal hook of a router whose refusals are recorded on `ctx.events`.
 *
 * @example
 * router.onRefusal(refusalRecorder(ctx)); // handlers then `throw refusal(new HttpError(403, …))`
 */
export function refusalRecorder(ctx: { events: ServerEvents; logger: Pick<Logger, 'warn'> }): RefusalHook {
  return (req, url, err, note) => {
    const ip = req.socket.remoteAddress;
    const path = url.pathname;
    const first = ctx.events.refusals.refused(`${note.by ?? ip}\n${err.status}\n${err.reason}\n${err.message}`, {
      kind: 'admin.action',
      outcome: 'deny',
      source: { id: note.by, ip },
      target: { resource: clipText(path, TARGET_LIMITS.resource) as string, method: req.method },
      reason: note.context ? `${note.context}: ${err.message}` : err.message,
    });
    if (first && note.log) ctx.logger.warn({ path: clipText(path, 256), ip, reason: err.message }, note.log);
  };
}
