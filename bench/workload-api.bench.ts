/**
 * Workload API transport: our gRPC server over node:http2 (src/agent/grpc) against @grpc/grpc-js's
 * own Server, both on a Unix socket, both serving the very same WorkloadApiHandlers, in one run.
 *
 * - FetchX509SVID: time from opening the stream to the first message (client: grpc-js from the .proto).
 * - FetchJWTSVID: calls per second, 16 in flight (the resolver returns a cached token, as the agent
 *   does, so this measures the API path, not ECDSA signing).
 *
 * grpc-js cannot give the peer's fd, so for a like-for-like transport figure both servers use the same
 * fixed selectors; a third figure shows ours with real SO_PEERCRED + /proc attestation on every call.
 * Rounds alternate between peer and ours so drifting machine load hits both alike.
 *
 * Run: npx tsx bench/workload-api.bench.ts   (or: npm run bench workload-api)
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GrpcError } from '../src/agent/grpc/index.js';
import { parseSelector, type Selector } from '../src/agent/unix-attestor.js';
import {
  type WorkloadApiHandlers,
  WorkloadApiServer,
  type WorkloadIdentity,
  type WorkloadResolver,
  type WorkloadStreamCall,
} from '../src/agent/workload-api.js';
import { CertificateAuthority, Kek, MemoryCaStateStore } from '../src/ca/index.js';
import type { TrustBundle } from '../src/spiffe/index.js';
import { workloadProtoPath } from '../src/workload/paths.js';
import { type Figure, type LatencyStats, measureAsync, percentile, report } from './harness.js';

const ROUNDS = Number(process.env.ROUNDS ?? 4);
const ROUND_SECONDS = Number(process.env.ROUND_SECONDS ?? 1.5);
const ID = 'spiffe://example.org/ns/bench/sa/workload';

class BenchResolver extends EventEmitter implements WorkloadResolver {
  private readonly tokens = new Map<string, string>();
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly identity: WorkloadIdentity,
  ) {
    super();
  }
  identitiesFor(): WorkloadIdentity[] {
    return [this.identity];
  }
  bundles(): TrustBundle[] {
    return [this.ca.bundle()];
  }
  async mintJwtSvid(spiffeId: string, audience: readonly string[]): Promise<string> {
    const key = `${spiffeId}|${audience.join(',')}`;
    let t = this.tokens.get(key);
    if (!t) {
      t = (await this.ca.mintJwtSvid({ spiffeId, audience })).token;
      this.tokens.set(key, t);
    }
    return t;
  }
}

type Cb = (err: grpc.ServiceError | null, res: unknown) => void;
interface Client extends grpc.Client {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTSVID(req: object, md: grpc.Metadata, cb: Cb): grpc.ClientUnaryCall;
}

const pkgDef = protoLoader.loadSync(workloadProtoPath(), { keepCase: true, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(pkgDef) as unknown as {
  SpiffeWorkloadAPI: (new (
    t: string,
    c: grpc.ChannelCredentials,
    o?: grpc.ClientOptions,
  ) => Client) & { service: grpc.ServiceDefinition };
};

function md(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('workload.spiffe.io', 'true');
  return m;
}

function mdRecord(m: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.getMap())) out[k] = String(v);
  return out;
}

function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  return e instanceof GrpcError
    ? { code: e.grpcStatus, details: e.message }
    : { code: grpc.status.INTERNAL, details: 'internal error' };
}

/** The same handlers, served by @grpc/grpc-js's Server (the peer). */
async function grpcJsServer(h: WorkloadApiHandlers, path: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  const stream =
    (f: (req: object, call: WorkloadStreamCall<never>) => Promise<void>) =>
    (call: grpc.ServerWritableStream<object, unknown>) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      f(call.request, {
        metadata: mdRecord(call.metadata),
        peer: undefined,
        peerError: undefined,
        signal: ac.signal,
        send: (m) => new Promise<void>((r) => call.write(m, () => r())),
      }).then(
        () => call.end(),
        (e) => call.emit('error', toServiceError(e)),
      );
    };
  const unary =
    <Req, Res>(f: (req: Req, call: Parameters<WorkloadApiHandlers['fetchJwtSvid']>[1]) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      f(call.request, {
        metadata: mdRecord(call.metadata),
        peer: undefined,
        peerError: undefined,
        signal: new AbortController().signal,
      }).then(
        (r) => cb(null, r),
        (e) => cb(toServiceError(e)),
      );
    };
  server.addService(pkg.SpiffeWorkloadAPI.service, {
    FetchX509SVID: stream((r, c) => h.fetchX509Svid(r as never, c)),
    FetchX509Bundles: stream((r, c) => h.fetchX509Bundles(r as never, c)),
    FetchJWTBundles: stream((r, c) => h.fetchJwtBundles(r as never, c)),
    FetchJWTSVID: unary((r, c) => h.fetchJwtSvid(r as never, c)),
    ValidateJWTSVID: unary((r, c) => h.validateJwtSvid(r as never, c)),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
  );
  return server;
}

/**
 * Opens FetchX509SVID, waits for the first message, cancels. The channel is replaced every 500
 * streams: Node's nghttp2 (both servers) ends a connection whose client resets streams faster than
 * its rapid-reset limit (burst 1000), which a benchmark loop would otherwise hit.
 */
function firstX509(target: string): () => Promise<void> {
  // A local subchannel pool: a new client must mean a new connection, not the shared one.
  const fresh = () =>
    new pkg.SpiffeWorkloadAPI(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  let client = fresh();
  let n = 0;
  return () =>
    new Promise<void>((resolve, reject) => {
      if (++n % 500 === 0) {
        client.close();
        client = fresh();
      }
      const s = client.FetchX509SVID({}, md());
      s.once('data', () => {
        s.cancel();
        resolve();
      });
      s.on('error', (e: grpc.ServiceError) => {
        if (e.code !== grpc.status.CANCELLED) reject(e);
      });
    });
}

function jwtCall(client: Client): () => Promise<void> {
  return () =>
    new Promise<void>((resolve, reject) =>
      client.FetchJWTSVID({ audience: ['bench'] }, md(), (e) => (e ? reject(e) : resolve())),
    );
}

function combine(rounds: LatencyStats[]): { opsPerSec: number; p50us: number; p99us: number } {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const med = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      50,
    );
  return {
    opsPerSec: mean(rounds.map((r) => r.opsPerSec)),
    p50us: med(rounds.map((r) => r.p50us)),
    p99us: med(rounds.map((r) => r.p99us)),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nt-bench-wl-'));
  const ca = await CertificateAuthority.open({
    trustDomain: 'example.org',
    store: new MemoryCaStateStore(),
    kek: Kek.fromBytes(randomBytes(32)),
  });
  const minted = ca.mintX509Svid({ spiffeId: ID });
  const identity: WorkloadIdentity = {
    spiffeId: ID,
    x509Chain: minted.chain,
    privateKeyPkcs8: minted.privateKey.export({ format: 'der', type: 'pkcs8' }),
  };
  const resolver = new BenchResolver(ca, identity);
  const fixed: Selector[] = [parseSelector('unix:uid:0')];
  const fixedAttest = async () => fixed;

  const oursFixed = new WorkloadApiServer({ socketPath: join(dir, 'ours.sock'), resolver, attest: fixedAttest });
  const oursReal = new WorkloadApiServer({ socketPath: join(dir, 'ours-attest.sock'), resolver });
  await oursFixed.start();
  await oursReal.start();
  const peer = await grpcJsServer(oursFixed.handlers, join(dir, 'grpcjs.sock'));

  const cOurs = new pkg.SpiffeWorkloadAPI(`unix://${join(dir, 'ours.sock')}`, grpc.credentials.createInsecure());
  const cReal = new pkg.SpiffeWorkloadAPI(`unix://${join(dir, 'ours-attest.sock')}`, grpc.credentials.createInsecure());
  const cPeer = new pkg.SpiffeWorkloadAPI(`unix://${join(dir, 'grpcjs.sock')}`, grpc.credentials.createInsecure());

  const x509 = { peer: [] as LatencyStats[], ours: [] as LatencyStats[], real: [] as LatencyStats[] };
  const jwt = { peer: [] as LatencyStats[], ours: [] as LatencyStats[], real: [] as LatencyStats[] };
  for (let r = 0; r < ROUNDS; r++) {
    const o = { seconds: ROUND_SECONDS, warmup: r === 0 ? 200 : 20 };
    x509.peer.push(await measureAsync(firstX509(`unix://${join(dir, 'grpcjs.sock')}`), o));
    x509.ours.push(await measureAsync(firstX509(`unix://${join(dir, 'ours.sock')}`), o));
    x509.real.push(await measureAsync(firstX509(`unix://${join(dir, 'ours-attest.sock')}`), o));
    const oj = { ...o, concurrency: 16 };
    jwt.peer.push(await measureAsync(jwtCall(cPeer), oj));
    jwt.ours.push(await measureAsync(jwtCall(cOurs), oj));
    jwt.real.push(await measureAsync(jwtCall(cReal), oj));
  }
  const xp = combine(x509.peer);
  const xo = combine(x509.ours);
  const xr = combine(x509.real);
  const jp = combine(jwt.peer);
  const jo = combine(jwt.ours);
  const jr = combine(jwt.real);
  const figures: Figure[] = [
    {
      bench: 'workload-api',
      metric: 'FetchX509SVID first response p50',
      unit: 'µs',
      peerName: 'grpc-js Server',
      peer: xp.p50us,
      ours: xo.p50us,
      higherIsBetter: false,
    },
    {
      bench: 'workload-api',
      metric: 'FetchX509SVID first response p99',
      unit: 'µs',
      peerName: 'grpc-js Server',
      peer: xp.p99us,
      ours: xo.p99us,
      higherIsBetter: false,
    },
    {
      bench: 'workload-api',
      metric: 'FetchJWTSVID calls/s (16 in flight)',
      unit: 'calls/s',
      peerName: 'grpc-js Server',
      peer: jp.opsPerSec,
      ours: jo.opsPerSec,
      higherIsBetter: true,
    },
    {
      bench: 'workload-api',
      metric: 'FetchX509SVID p50, ours with SO_PEERCRED+/proc attestation',
      unit: 'µs',
      peerName: 'grpc-js Server (no attestation)',
      peer: xp.p50us,
      ours: xr.p50us,
      higherIsBetter: false,
    },
    {
      bench: 'workload-api',
      metric: 'FetchJWTSVID calls/s, ours with attestation',
      unit: 'calls/s',
      peerName: 'grpc-js Server (no attestation)',
      peer: jp.opsPerSec,
      ours: jr.opsPerSec,
      higherIsBetter: true,
    },
  ];
  report(figures);

  cOurs.close();
  cReal.close();
  cPeer.close();
  await oursFixed.close();
  await oursReal.close();
  await new Promise<void>((r) => peer.tryShutdown(() => r()));
  rmSync(dir, { recursive: true, force: true });
}

await main();
