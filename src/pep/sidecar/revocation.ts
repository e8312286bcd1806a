/**
 * The sidecar's side of continuous access evaluation (issue #23): it follows the server's signal
 * stream with its own SVID (resuming after the last seq it applied, so a reconnect loses nothing),
 * keeps the live inbound connections and HTTP/2 sessions by the peer's SPIFFE ID, and:
 *
 * - refuses, right after the handshake and before any byte is read, a peer SVID whose serial was
 *   revoked (`svid.revoked`), or one issued before its entry was deleted (`workload.entry-deleted`
 *   naming the SPIFFE ID);
 * - cuts the live connections of such a peer when the signal arrives: an HTTP/2 session gets GOAWAY
 *   (CANCEL) and is destroyed, resetting its streams; an HTTP/1.1 connection is destroyed at once;
 * - on `agent.banned`, cuts peers whose SVID is the agent's own ID. A sidecar cannot tell which agent
 *   vouched for a peer's SVID (the certificate does not say), so the workloads of a banned agent are
 *   cut by the `workload.entry-deleted` signals of their entries.
 *
 * Each refusal and cut is an audit event `access.cut` naming the signal (kind, subject, seq).
 */
import type { X509Certificate } from 'node:crypto';
import { constants as h2, type Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Signal } from '../../api/signals.js';
import type { AuditEventInput } from '../../audit/event.js';
import { followSignals, type SignalFollower } from '../../signals/follow.js';
import { RevocationState, type SignalRef } from '../../signals/state.js';
import { serialText, spiffeIdFromCertificate } from '../../spiffe/index.js';
import { tlsOptionsFrom, type X509SvidSource } from '../mtls/index.js';
import { serverIdFor } from '../server-id.js';
import type { SidecarConfig } from './config.js';

/** One live inbound connection. */
interface PeerConnection {
  spiffeId: string;
  serial: string;
  notBeforeMs: number;
  socket: TLSSocket;
  session?: Http2Session;
}

export interface ConnectionGuardOptions {
  /** This sidecar's SPIFFE ID (the target in audit events). */
  self: () => string;
  record?: (e: AuditEventInput) => void;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  state?: RevocationState;
}

/**
 * The registry of live connections and the decisions on them. `admit` is called for every accepted
 * socket (after the SPIFFE checks), `session` for every HTTP/2 session, `apply` for every signal.
 */
export class ConnectionGuard {
  readonly state: RevocationState;
  readonly #conns = new Set<PeerConnection>();
  /** The HTTP/2 session node:http2 made for the socket being accepted (emitted just before `admit`). */
  #pendingSession: Http2Session | undefined;

  constructor(private readonly opts: ConnectionGuardOptions) {
    this.state = opts.state ?? new RevocationState();
  }

  /** Live connections now (for tests and metrics). */
  get size(): number {
    return this.#conns.size;
  }

  /** node:http2 emits `session` inside its own `secureConnection` listener, before ours runs. */
  session(s: Http2Session): void {
    this.#pendingSession = s;
  }

  /**
   * Registers an accepted socket, or destroys it (and returns false) when its SVID is revoked.
   * Runs synchronously in `secureConnection`, so a refused peer has sent nothing that was read.
   */
  admit(socket: TLSSocket): boolean {
    const session = this.#pendingSession;
    this.#pendingSession = undefined;
    if (socket.destroyed) return false;
    let conn: PeerConnection;
    try {
      const cert = socket.getPeerX509Certificate() as X509Certificate;
      conn = {
        spiffeId: spiffeIdFromCertificate(cert).toString(),
        serial: cert.serialNumber,
        notBeforeMs: Date.parse(cert.validFrom),
        socket,
        ...(session && session.socket?.remotePort === socket.remotePort && { session }),
      };
    } catch (e) {
      // attachMtls admitted it, so this cannot happen; if it does, fail closed.
      this.opts.log('peer certificate unreadable after the handshake; connection closed', {
        error: (e as Error).message,
      });
      socket.destroy();
      return false;
    }
    const why = this.#revoked(conn);
    if (why) {
      this.#cut(conn, why, 'handshake');
      return false;
    }
    this.#conns.add(conn);
    socket.once('close', () => this.#conns.delete(conn));
    return true;
  }

  /** Applies a signal to the state, then cuts every live connection it now forbids. */
  apply(seq: number, signal: Signal, receivedAt?: string): void {
    if (!this.state.apply(seq, signal, receivedAt)) return;
    if (signal.kind !== 'svid.revoked' && signal.kind !== 'workload.entry-deleted' && signal.kind !== 'agent.banned')
      return;
    for (const c of [...this.#conns]) {
      const why = this.#revoked(c);
      if (why) this.#cut(c, why, 'live');
    }
  }

  /** What forbids this peer, if anything. */
  #revoked(c: PeerConnection): (SignalRef & { subject: string }) | undefined {
    const bySerial = this.state.svidRevoked(c.serial);
    if (bySerial) return { ...bySerial, subject: `svid:${serialText(c.serial)}` };
    // An SVID issued after the deletion belongs to an entry created again: not this signal's.
    const byEntry = this.state.spiffeIdCut(c.spiffeId);
    if (byEntry && c.notBeforeMs <= byEntry.atMs) return { ...byEntry, subject: c.spiffeId };
    const byAgent = this.state.agentBanned(c.spiffeId);
    if (byAgent) return { ...byAgent, subject: `agent:${c.spiffeId}` };
    return undefined;
  }

  #cut(c: PeerConnection, why: SignalRef & { subject: string }, phase: 'handshake' | 'live'): void {
    this.#conns.delete(c);
    const protocol = c.session ? 'h2' : 'http/1.1';
    if (c.session && !c.session.destroyed) c.session.destroy(undefined, h2.NGHTTP2_CANCEL);
    c.socket.destroy();
    const reason = `${why.kind} (seq ${why.seq}): ${why.reason}`.slice(0, 1024);
    this.opts.log(phase === 'handshake' ? 'peer refused: revoked' : 'peer connection cut: revoked', {
      peer: c.spiffeId,
      signal: why.kind,
      seq: why.seq,
    });
    // A failing audit sink must not stop the cuts after this one (the signal is applied once).
    try {
      this.#record(c, why, phase, protocol, reason);
    } catch (e) {
      this.opts.log('access.cut audit record failed', { error: (e as Error).message });
    }
  }

  #record(
    c: PeerConnection,
    why: SignalRef & { subject: string },
    phase: 'handshake' | 'live',
    protocol: string,
    reason: string,
  ): void {
    this.opts.record?.({
      kind: 'access.cut',
      outcome: 'deny',
      enforcer: 'sidecar',
      source: { spiffe_id: c.spiffeId },
      target: { spiffe_id: this.opts.self() },
      reason,
      details: {
        phase,
        protocol,
        signal_kind: why.kind,
        signal_seq: why.seq,
        signal_subject: why.subject,
        serial: serialText(c.serial),
      },
    });
  }
}

/**
 * Follows the signal stream into `guard` with the sidecar's SVID (material read again on every
 * connect, so rotation needs nothing).
 *
 * @example
 * ```ts
 * const follower = followForSidecar({ server: 'https://127.0.0.1:8081' }, source, guard, log);
 * await follower.stop();
 * ```
 */
export function followForSidecar(
  cfg: NonNullable<SidecarConfig['signals']>,
  source: X509SvidSource,
  guard: ConnectionGuard,
  log: (msg: string, fields?: Record<string, unknown>) => void,
): SignalFollower {
  return followSignals({
    url: cfg.server,
    serverId: serverIdFor(String(source.svid.spiffeId), cfg.server_id),
    tls: () => {
      const t = tlsOptionsFrom(source);
      return { cert: String(t.cert), key: String(t.key), ca: String(t.ca) };
    },
    after: guard.state.lastSeq,
    onSignal: (m) => guard.apply(m.seq, m.signal, m.received_at),
    onGap: (g) =>
      log('signals were lost before this sidecar saw them (pruned or another store); live peers are not re-checked', {
        ...g,
      }),
    log: {
      info: (o, msg) => log(msg ?? 'signals', { ...o }),
      warn: (o, msg) => log(msg ?? 'signals', { ...o }),
    },
  });
}
