/**
 * Signals at the access proxy (issue #23): it follows the server's signal stream with its SVID,
 * folds every signal into a {@link RevocationState}, and answers, for a request or a live connection,
 * whether a signal takes its access away: the session revoked, the person cut off (disabled, logged
 * out everywhere, credentials changed) since the session began, the device revoked, lost or
 * non-compliant (until a newer posture). It also says when the stream has been silent longer than
 * `max_disconnected`: people's routes with `on_signals_lost: deny` then refuse (`signals_unavailable`).
 */
import { type Signal, signalSubject } from '../../api/signals.js';
import type { X509SvidSource } from '../../pep/mtls/index.js';
import { serverIdFor } from '../../pep/server-id.js';
import { followSignals, type SignalFollower } from '../../signals/follow.js';
import { RevocationState, type SignalRef } from '../../signals/state.js';
import { parseSpiffeId } from '../../spiffe/index.js';
import type { DeviceRecord } from '../../api/devices.js';
import type { PersonIdentity } from '../identity.js';

/** Why a signal refuses: the refusal's error code, reason, and the signal (audit). */
export interface SignalRefusal {
  error: 'session_revoked' | 'user_cut_off' | 'device_revoked' | 'device_non_compliant';
  reason: string;
  signal: { seq: number; kind: string; subject: string };
}

/** What the proxy knows of a request for the signal check. */
export interface SignalSubjectOf {
  person: PersonIdentity;
  session?: { id: string; startedAt?: number };
  device?: DeviceRecord;
  deviceId?: string;
}

const ref = (r: SignalRef, subject: string) => ({ seq: r.seq, kind: r.kind, subject });

/**
 * The signal that takes this access away, if any (a pure question of the state).
 *
 * @example
 * ```ts
 * const no = signalRefusal(state, { person, session: { id, startedAt } });
 * if (no) refuse(403, no.error, no.reason);
 * ```
 */
export function signalRefusal(
  state: RevocationState,
  s: SignalSubjectOf,
  /** `policy`: a device's non-compliance refuses nothing by itself; the policies judge its posture. */
  deviceNonCompliant: 'refuse' | 'policy' = 'refuse',
): SignalRefusal | undefined {
  if (s.session) {
    const r = state.sessionRevoked(s.session.id);
    if (r) {
      return {
        error: 'session_revoked',
        reason: `the session was revoked (${r.reason})`,
        signal: ref(r, `session:${s.session.id}`),
      };
    }
  }
  const users = [
    ...(s.person.user !== undefined ? [s.person.user] : []),
    ...(s.person.email !== undefined ? [s.person.email] : []),
    { issuer: s.person.issuer, sub: s.person.sub },
  ];
  // A session from before the cutoff is dead; a bearer token (no session) is judged by when the
  // person authenticated, unknown counting as before (fail closed).
  const began = s.session?.startedAt ?? (s.person.authTime !== undefined ? s.person.authTime * 1000 : 0);
  const cut = state.userSessionCut(users, began);
  if (cut) {
    return {
      error: 'user_cut_off',
      reason: `the person's access was cut off (${cut.kind}: ${cut.reason})`,
      signal: ref(cut, `user:${s.person.user ?? s.person.email ?? s.person.sub}`),
    };
  }
  const deviceId = s.device?.id ?? s.deviceId;
  if (deviceId !== undefined) {
    const rv = state.deviceRevoked(deviceId);
    if (rv) {
      return {
        error: 'device_revoked',
        reason: `device ${deviceId} was revoked (${rv.kind}: ${rv.reason})`,
        signal: ref(rv, `device:${deviceId}`),
      };
    }
    const nc = deviceNonCompliant === 'refuse' ? state.deviceNonCompliant(deviceId) : undefined;
    // It stands until a compliant posture collected after it (there is no "compliant" signal).
    const p = s.device?.posture;
    const newer = nc !== undefined && p?.compliant === true && Date.parse(p.collected_at) > nc.atMs;
    if (nc && !newer) {
      return {
        error: 'device_non_compliant',
        reason: `device ${deviceId} is not compliant (${nc.reason})`,
        signal: ref(nc, `device:${deviceId}`),
      };
    }
  }
  return undefined;
}

/**
 * `source.risk_score` for policy: the higher of the person's and the device's newest scores, if any.
 */
export function riskScore(state: RevocationState, person: PersonIdentity, deviceId?: string): number | undefined {
  const scores = [
    state.risk({ user: person.user ?? person.email ?? person.sub }),
    state.risk({ user: { issuer: person.issuer, sub: person.sub } }),
    ...(deviceId !== undefined ? [state.risk({ deviceId })] : []),
  ].flatMap((r) => (r ? [r.score] : []));
  return scores.length > 0 ? Math.max(...scores) : undefined;
}

/** The proxy's `signals` section, parsed. */
export interface ProxySignalsConfig {
  /** The server's agent port. */
  server: string;
  server_id?: string;
  /** Seconds without contact after which people's `on_signals_lost: deny` routes refuse. */
  max_disconnected: number;
  device_non_compliant?: 'refuse' | 'policy';
}

export interface ProxySignals {
  readonly state: RevocationState;
  /** What a `device.non-compliant` signal does: refuse the device's requests, or leave it to policy. */
  readonly deviceNonCompliant: 'refuse' | 'policy';
  /** The stream has been silent longer than `max_disconnected` (or never answered). */
  lost(now?: number): boolean;
  stop(): Promise<void>;
}

/**
 * Follows the server's stream with the proxy's SVID; `onSignal` hears each new signal after it is
 * folded in (the proxy re-decides its live connections then).
 */
export function startProxySignals(opts: {
  config: ProxySignalsConfig;
  source: X509SvidSource;
  onSignal: (seq: number, signal: Signal, subject: string) => void;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}): ProxySignals {
  const state = new RevocationState();
  const ownId = String(opts.source.svid.spiffeId);
  const trustDomain = parseSpiffeId(ownId).trustDomain.name;
  const startedAt = Date.now();
  const follower: SignalFollower = followSignals({
    url: opts.config.server,
    serverId: serverIdFor(ownId, opts.config.server_id),
    tls: () => {
      const b = opts.source.bundles.get(trustDomain);
      return {
        cert: opts.source.svid.certChainPem,
        key: opts.source.svid.privateKeyPem,
        ca: b ? b.toPem() : '',
      };
    },
    after: 0,
    onSignal: (m) => {
      if (state.apply(m.seq, m.signal, m.received_at)) opts.onSignal(m.seq, m.signal, signalSubject(m.signal));
    },
    onGap: (g) => opts.log('signals were lost (the server no longer keeps them)', { ...g }),
    log: {
      info: (o, msg) => opts.log(msg ?? 'signals', { ...o }),
      warn: (o, msg) => opts.log(msg ?? 'signals', { ...o }),
    },
  });
  const boundMs = opts.config.max_disconnected * 1000;
  return {
    state,
    deviceNonCompliant: opts.config.device_non_compliant ?? 'refuse',
    lost(now = Date.now()) {
      // Before the first contact, the bound runs from the start.
      const last = follower.lastContactAt() || startedAt;
      return now - last > boundMs;
    },
    stop: () => follower.stop(),
  };
}
