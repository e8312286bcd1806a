/**
 * Receiving SETs from one transmitter, whichever way they come (an RFC 8935 push or an RFC 8936
 * poll): verify ({@link verifySet}), map ({@link signalsFromSet}), raise each signal. One SET at a
 * time per transmitter, and its `jti` is recorded only once every signal is raised: a SET whose
 * signals could not be kept (the store down) is answered 5xx / left unacknowledged, so the
 * transmitter sends it again and it is not refused as a replay.
 *
 * @example
 * ```ts
 * const rx = createSetReceiver({ issuer, audience, keys: () => jwks, maxAgeSeconds: 300,
 *   seen: createMemorySeenSet(), sink: signals });
 * const { seqs, ignored } = await rx.receive(body); // throws SsfError (its toPushError()) when refused
 * ```
 */
import type { JWTVerifyGetKey } from 'jose';
import type { Signal } from '../../api/signals.js';
import { SsfError } from './errors.js';
import { type IgnoredEvent, signalsFromSet } from './events.js';
import { type SeenJtis, verifySet } from './set.js';

/** Where received signals go: the server's signals handle (`SignalsHandle.raise`). */
export interface SignalSink {
  /** Keeps, audits and streams a signal; its sequence number. */
  raise(signal: Signal): Promise<number>;
}

export interface SetReceiverOptions {
  issuer: string;
  audience: string;
  /** The transmitter's keys; undefined while they are not known yet (refused 503: retry later). */
  keys: () => JWTVerifyGetKey | undefined;
  maxAgeSeconds: number;
  seen: SeenJtis;
  sink: SignalSink;
}

/** What one accepted SET did. */
export interface ReceivedSet {
  jti: string;
  /** The sequence numbers of the signals it raised, in order. */
  seqs: number[];
  signals: Signal[];
  ignored: IgnoredEvent[];
}

export interface SetReceiver {
  /** Verifies, maps and raises one SET; throws {@link SsfError} when it is refused (nothing raised). */
  receive(jwt: unknown): Promise<ReceivedSet>;
}

export function createSetReceiver(options: SetReceiverOptions): SetReceiver {
  let chain: Promise<unknown> = Promise.resolve();
  const one = async (jwt: unknown): Promise<ReceivedSet> => {
    const jwks = options.keys();
    if (!jwks) throw new SsfError('ERR_SSF_KEYS_UNAVAILABLE', "the transmitter's keys are not known yet");
    // verifySet records the jti last; here it is only staged, and recorded after the raises.
    let staged: { jti: string; until: Date } | undefined;
    const set = await verifySet(jwt, {
      issuer: options.issuer,
      audience: options.audience,
      jwks,
      maxAgeSeconds: options.maxAgeSeconds,
      seen: {
        has: (jti) => options.seen.has(jti),
        add: (jti, until) => {
          staged = { jti, until };
          return true;
        },
      },
    });
    const { signals, ignored } = signalsFromSet(set);
    const seqs: number[] = [];
    for (const s of signals) seqs.push(await options.sink.raise(s));
    if (staged && (await options.seen.add(staged.jti, staged.until)) === false) {
      // Cannot happen while SETs of one transmitter are received one at a time; kept as a guard.
      throw new SsfError('ERR_SSF_REPLAYED', 'this jti was already received');
    }
    return { jti: set.jti, seqs, signals, ignored };
  };
  return {
    receive(jwt) {
      const p = chain.then(() => one(jwt));
      chain = p.catch(() => {});
      return p;
    },
  };
}
