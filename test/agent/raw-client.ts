/**
 * A Workload API client built only from the spec's .proto with @grpc/grpc-js and @grpc/proto-loader
 * (not from our client library), as any SPIFFE client would be.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { workloadProtoPath } from '../../src/workload/paths.js';

type Cb<T> = (err: grpc.ServiceError | null, res: T) => void;
export interface RawWorkloadClient extends grpc.Client {
  FetchJWTSVID(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Cb<unknown>): grpc.ClientUnaryCall;
  FetchJWTSVID(req: object, cb: Cb<unknown>): grpc.ClientUnaryCall;
  ValidateJWTSVID(req: object, md: grpc.Metadata, cb: Cb<unknown>): grpc.ClientUnaryCall;
  FetchX509SVID(req: object, md?: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchX509Bundles(req: object, md?: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTBundles(req: object, md?: grpc.Metadata): grpc.ClientReadableStream<unknown>;
}

const pkgDef = protoLoader.loadSync(workloadProtoPath(), { keepCase: true, defaults: true, longs: String });
const Ctor = (grpc.loadPackageDefinition(pkgDef) as unknown as { SpiffeWorkloadAPI: typeof grpc.Client })
  .SpiffeWorkloadAPI as unknown as new (
  address: string,
  creds: grpc.ChannelCredentials,
) => RawWorkloadClient;

/** A raw client on `target` (`unix:///path` or `host:port`). */
export function rawClient(target: string): RawWorkloadClient {
  return new Ctor(target, grpc.credentials.createInsecure());
}

/** Metadata with the Workload API security header. */
export function workloadMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

export function unaryCall<T>(
  f: (md: grpc.Metadata, opts: grpc.CallOptions, cb: Cb<unknown>) => unknown,
  md: grpc.Metadata = workloadMetadata(),
  opts: grpc.CallOptions = {},
): Promise<T> {
  return new Promise((resolve, reject) => f(md, opts, (e, r) => (e ? reject(e) : resolve(r as T))));
}
