/** gRPC (unary and server streaming) over `node:http2`, with the caller's peer credentials. */
export { DEFAULT_MAX_MESSAGE_BYTES, frameMessage, MessageReader, parseGrpcTimeout } from './framing.js';
export {
  type CallContext,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CALLS_PER_PEER,
  DEFAULT_MAX_CONNECTIONS_PER_PEER,
  GrpcServer,
  type GrpcServerOptions,
  type ListenAddress,
  type MethodDefinition,
  parseListenAddress,
  type ServerStreamCall,
  type ServerStreamHandler,
  type UnaryHandler,
} from './server.js';
export { decodeGrpcMessage, encodeGrpcMessage, GrpcError, Status, type StatusCode } from './status.js';
