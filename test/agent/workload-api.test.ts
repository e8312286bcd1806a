import { type ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from '../../src/agent/grpc/index.js';
import { WorkloadApiServer } from '../../src/agent/workload-api.js';
import { splitDerChain } from '../../src/spiffe/cert.js';
import { TrustBundle, validateJwtSvid } from '../../src/spiffe/index.js';
import { packageRoot } from '../../src/util/package-root.js';
import { workloadProtoPath } from '../../src/workload/paths.js';
import { newCa, TD, TestResolver } from './fixtures.js';
import { sharedTempDir } from './peer.js';
import { type RawWorkloadClient, rawClient, unaryCall, workloadMetadata } from './raw-client.js';

const ROOT_ID = `spiffe://${TD}/ns/prod/sa/root-workload`;
const NOBODY_ID = `spiffe://${TD}/ns/prod/sa/nobody-workload`;
const dir = sharedTempDir();
const sock = join(dir, 'agent', 'agent.sock');
let resolver: TestResolver;
let server: WorkloadApiServer;
let client: RawWorkloadClient;

interface X509Resp {
  svids: { spiffe_id: string; x509_svid: Buffer; x509_svid_key: Buffer; bundle: Buffer; hint: string }[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

beforeAll(async () => {
  resolver = new TestResolver(await newCa());
  resolver.add(ROOT_ID, ['unix:uid:0'], { hint: 'internal' });
  server = new WorkloadApiServer({ socketPath: sock, resolver });
  await server.start();
  client = rawClient(`unix://${sock}`);
});
afterAll(async () => {
  client.close();
  await server.close();
});

/** Reads `n` messages from a stream, then the final status. */
function collect<T>(stream: grpc.ClientReadableStream<unknown>) {
  const messages: T[] = [];
  const waiters: (() => void)[] = [];
  let status: grpc.StatusObject | undefined;
  const statusP = new Promise<grpc.StatusObject>((r) =>
    stream.on('status', (s) => {
      status = s;
      r(s);
    }),
  );
  stream.on('data', (m) => {
    messages.push(m as T);
    for (const w of waiters.splice(0)) w();
  });
  stream.on('error', () => {});
  return {
    messages,
    status: statusP,
    get ended() {
      return status !== undefined;
    },
    async next(count: number, timeoutMs = 5000): Promise<T> {
      const t0 = Date.now();
      while (messages.length < count) {
        if (status) throw new Error(`stream ended with ${status.code} ${status.details}`);
        if (Date.now() - t0 > timeoutMs) throw new Error('timeout waiting for a stream message');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return messages[count - 1] as T;
    },
  };
}

/** Runs a grpc-js client (from the .proto only) in a child process under `uid`. */
function childFetch(
  uid: number,
  method: 'FetchX509SVID' | 'FetchJWTSVID',
): Promise<{ ids?: string[]; code?: number; details?: string }> {
  const script = `
const grpc=require('@grpc/grpc-js');const pl=require('@grpc/proto-loader');
const d=pl.loadSync(${JSON.stringify(workloadProtoPath())},{keepCase:true,defaults:true});
const C=grpc.loadPackageDefinition(d).SpiffeWorkloadAPI;
const c=new C(${JSON.stringify(`unix://${sock}`)},grpc.credentials.createInsecure());
const md=new grpc.Metadata();md.set('workload.spiffe.io','true');
const out=(o)=>{process.stdout.write(JSON.stringify(o));process.exit(0)};
if(${JSON.stringify(method)}==='FetchX509SVID'){const s=c.FetchX509SVID({},md);
s.on('data',m=>out({ids:m.svids.map(x=>x.spiffe_id)}));s.on('error',e=>out({code:e.code,details:e.details}));}
else c.FetchJWTSVID({audience:['a']},md,(e,r)=>e?out({code:e.code,details:e.details}):out({ids:r.svids.map(x=>x.spiffe_id)}));`;
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, ['-e', script], {
      cwd: packageRoot(),
      uid,
      gid: uid,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`child output ${out} ${err}`));
      }
    });
  });
}

describe('Workload API over the unix socket (raw grpc-js client from the .proto)', () => {
  it("serves exactly the caller's X.509-SVID: DER chain leaf first, PKCS#8 key, DER bundle", async () => {
    const s = collect<X509Resp>(client.FetchX509SVID({}, workloadMetadata()));
    const m = await s.next(1);
    expect(m.svids.map((x) => x.spiffe_id)).toEqual([ROOT_ID]);
    const svid = m.svids[0]!;
    expect(svid.hint).toBe('internal');
    const chain = splitDerChain(svid.x509_svid).map((d) => new X509Certificate(d));
    expect(chain[0]?.subjectAltName).toContain(`URI:${ROOT_ID}`);
    const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
    expect(chain[0]?.checkPrivateKey(key)).toBe(true);
    const bundle = splitDerChain(svid.bundle).map((d) => new X509Certificate(d));
    expect(bundle.length).toBeGreaterThan(0);
    expect(bundle.every((c) => c.ca)).toBe(true);
    expect(chain[chain.length - 1]?.checkIssued(bundle[0]!)).toBe(true);
    expect(m.federated_bundles).toEqual({});
    s.status.catch(() => {});
  });

  it('answers INVALID_ARGUMENT on every RPC without the security header', async () => {
    const none = new grpc.Metadata();
    for (const f of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles'] as const) {
      const s = collect(client[f]({}, none));
      expect((await s.status).code).toBe(Status.INVALID_ARGUMENT);
    }
    await expect(
      unaryCall((md, o, cb) => client.FetchJWTSVID({ audience: ['a'] }, md, o, cb), none),
    ).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(
      unaryCall((md, _o, cb) => client.ValidateJWTSVID({ audience: 'a', svid: 'x' }, md, cb), none),
    ).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    const wrong = new grpc.Metadata();
    wrong.set('workload.spiffe.io', 'yes');
    expect((await collect(client.FetchX509SVID({}, wrong)).status).code).toBe(Status.INVALID_ARGUMENT);
  });

  it('denies a process under another uid (65534) whose selectors match no entry', async () => {
    expect(await childFetch(65534, 'FetchX509SVID')).toMatchObject({ code: Status.PERMISSION_DENIED });
    expect(await childFetch(65534, 'FetchJWTSVID')).toMatchObject({ code: Status.PERMISSION_DENIED });
  });

  it('gives the uid-65534 process exactly its own SVID once an entry matches it', async () => {
    resolver.add(NOBODY_ID, ['unix:uid:65534', 'unix:user:nobody']);
    try {
      expect(await childFetch(65534, 'FetchX509SVID')).toEqual({ ids: [NOBODY_ID] });
      expect(await childFetch(65534, 'FetchJWTSVID')).toEqual({ ids: [NOBODY_ID] });
    } finally {
      resolver.remove(NOBODY_ID);
    }
  });

  it('pushes a new full response on rotation and ends the stream with PERMISSION_DENIED when the entry goes', async () => {
    const id = `spiffe://${TD}/rotating`;
    resolver.add(id, ['unix:uid:0']);
    const s = collect<X509Resp>(client.FetchX509SVID({}, workloadMetadata()));
    const first = await s.next(1);
    expect(first.svids.map((x) => x.spiffe_id).sort()).toEqual([id, ROOT_ID].sort());
    resolver.rotate(id);
    const second = await s.next(2);
    const leaf = (m: X509Resp) =>
      new X509Certificate(splitDerChain(m.svids.find((x) => x.spiffe_id === id)!.x509_svid)[0]!).serialNumber;
    expect(leaf(second)).not.toBe(leaf(first));
    expect(second.svids).toHaveLength(2); // complete state, not a delta
    resolver.remove(id);
    const third = await s.next(3);
    expect(third.svids.map((x) => x.spiffe_id)).toEqual([ROOT_ID]);
    // A change that alters nothing for this caller sends nothing.
    resolver.emit('change');
    await new Promise((r) => setTimeout(r, 100));
    expect(s.messages).toHaveLength(3);
    resolver.remove(ROOT_ID);
    expect((await s.status).code).toBe(Status.PERMISSION_DENIED);
    resolver.add(ROOT_ID, ['unix:uid:0'], { hint: 'internal' });
  });

  it('streams X.509 and JWT bundles, including federated ones, and pushes bundle changes', async () => {
    const partner = await newCa('partner.example');
    resolver.extraBundles = [partner.bundle()];
    const fed = `spiffe://${TD}/federated`;
    resolver.add(fed, ['unix:uid:0'], { federatesWith: ['partner.example'] });
    const x = collect<{ bundles: Record<string, Buffer> }>(client.FetchX509Bundles({}, workloadMetadata()));
    const xb = await x.next(1);
    expect(Object.keys(xb.bundles).sort()).toEqual([`spiffe://${TD}`, 'spiffe://partner.example']);
    expect(splitDerChain(xb.bundles[`spiffe://${TD}`]!)[0]).toEqual(resolver.ca.bundle().x509Authorities[0]);
    const j = collect<{ bundles: Record<string, Buffer> }>(client.FetchJWTBundles({}, workloadMetadata()));
    const jb = await j.next(1);
    const ours = TrustBundle.fromJwks(TD, jb.bundles[`spiffe://${TD}`]!.toString('utf8'));
    expect([...ours.jwtAuthorities.keys()]).toEqual([...resolver.ca.bundle().jwtAuthorities.keys()]);
    expect(ours.x509Authorities).toHaveLength(0);
    const s = collect<X509Resp>(client.FetchX509SVID({}, workloadMetadata()));
    expect(Object.keys((await s.next(1)).federated_bundles)).toEqual(['spiffe://partner.example']);
    // A CA rotation changes the bundle: every bundle stream gets the new state.
    await resolver.ca.rotate();
    resolver.emit('change');
    const xb2 = await x.next(2);
    expect(splitDerChain(xb2.bundles[`spiffe://${TD}`]!).length).toBeGreaterThan(
      splitDerChain(xb.bundles[`spiffe://${TD}`]!).length,
    );
    await j.next(2);
    resolver.remove(fed);
    resolver.extraBundles = [];
  });

  it('FetchJWTSVID: audience required, spiffe_id restricts to an entitled identity, tokens validate', async () => {
    const call = (req: object) =>
      unaryCall<{ svids: { spiffe_id: string; svid: string; hint: string }[] }>((md, o, cb) =>
        client.FetchJWTSVID(req, md, o, cb),
      );
    await expect(call({ audience: [] })).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(call({ audience: ['a'], spiffe_id: 'not-a-spiffe-id' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
    await expect(call({ audience: ['a'], spiffe_id: NOBODY_ID })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    const res = await call({ audience: ['payments', 'ledger'], spiffe_id: ROOT_ID });
    expect(res.svids).toHaveLength(1);
    expect(res.svids[0]).toMatchObject({ spiffe_id: ROOT_ID, hint: 'internal' });
    const v = await validateJwtSvid(res.svids[0]!.svid, resolver.ca.bundle(), 'ledger');
    expect(v.spiffeId.toString()).toBe(ROOT_ID);
  });

  it('ValidateJWTSVID returns the SPIFFE ID and the claims as a Struct; bad tokens are INVALID_ARGUMENT', async () => {
    const token = (await resolver.ca.mintJwtSvid({ spiffeId: ROOT_ID, audience: ['payments'] })).token;
    const validate = (req: object) =>
      unaryCall<{ spiffe_id: string; claims: { fields: Record<string, Record<string, unknown>> } }>((md, _o, cb) =>
        client.ValidateJWTSVID(req, md, cb),
      );
    const r = await validate({ audience: 'payments', svid: token });
    expect(r.spiffe_id).toBe(ROOT_ID);
    expect(r.claims.fields.sub).toMatchObject({ stringValue: ROOT_ID });
    expect(r.claims.fields.aud).toMatchObject({ listValue: { values: [{ stringValue: 'payments' }] } });
    expect(typeof r.claims.fields.exp?.numberValue).toBe('number');
    await expect(validate({ audience: 'other', svid: token })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(/aud/),
    });
    await expect(validate({ audience: '', svid: token })).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(validate({ audience: 'payments', svid: '' })).rejects.toMatchObject({ code: Status.INVALID_ARGUMENT });
    await expect(validate({ audience: 'payments', svid: 'a.b.c' })).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
    });
  });

  it('fans one resolver listener out to every stream and drops streams the client cancels', async () => {
    const before = server.handlers.openStreams;
    const streams = Array.from({ length: 20 }, () => client.FetchX509SVID({}, workloadMetadata()));
    const collected = streams.map((st) => collect<X509Resp>(st));
    await Promise.all(collected.map((c) => c.next(1)));
    expect(server.handlers.openStreams).toBe(before + 20);
    expect(resolver.listenerCount('change')).toBe(1);
    for (const st of streams) st.cancel();
    const t0 = Date.now();
    while (server.handlers.openStreams !== before && Date.now() - t0 < 3000)
      await new Promise((r) => setTimeout(r, 20));
    expect(server.handlers.openStreams).toBe(before);
  });

  it('answers UNIMPLEMENTED for a method outside the spec', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(
        '/SpiffeWorkloadAPI/FetchWITSVID',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        workloadMetadata(),
        (e) => resolve(e as grpc.ServiceError),
      ),
    );
    expect(err.code).toBe(Status.UNIMPLEMENTED);
  });

  it('refuses an unsafe socket directory', async () => {
    const { chmodSync, mkdirSync } = await import('node:fs');
    const bad = join(dir, 'world-writable');
    mkdirSync(bad);
    chmodSync(bad, 0o777);
    const s = new WorkloadApiServer({ socketPath: join(bad, 'agent.sock'), resolver });
    await expect(s.start()).rejects.toThrow(/not group\/world-writable/);
  });
});
