/**
 * `nevertrust/audit`: every decision as a structured event in a tamper-evident, queryable log.
 * See docs/audit.md.
 */
export { CLIP_MARK, clipText, normalizeClipped } from './clip.js';
export { OTHER_CALLERS, RefusalAggregator, type RefusalAggregatorOptions } from './refusals.js';
export {
  AuditEventError,
  AuditEventTooLargeError,
  AuditKeyError,
  AuditProofError,
  AuditRecorderClosedError,
} from './errors.js';
export {
  AUDIT_KINDS,
  AUDIT_SCHEMA_VERSION,
  type AuditEvent,
  type AuditEventInput,
  type AuditSource,
  type AuditTarget,
  auditEventInputSchema,
  canonicalJson,
  DEFAULT_MAX_EVENT_BYTES,
  type NormalizeOptions,
  normalizeEvent,
  OUTCOMES,
  type Outcome,
  REDACTED,
  type StoredAuditEvent,
  sourceKey,
  targetKey,
} from './event.js';
export {
  type AppendResult,
  AuditLog,
  type AuditLogger,
  type AuditLogOptions,
  type ConsistencyProofResult,
  type InclusionProofResult,
} from './log.js';
export type { ExternalCheckpoint } from './log-publish.js';
export { dbSubtreeSource, loadFrontier, NODE_MIN_LEVEL } from './log-tree.js';
export {
  consistencyProof,
  EMPTY_ROOT,
  type FrontierEntry,
  inclusionProof,
  leafHash,
  MerkleFrontier,
  memorySource,
  merkleRoot,
  nodeHash,
  rootFromInclusionProof,
  type SubtreeSource,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
export {
  type AuditQuery,
  type AuditQueryResult,
  auditQuerySchema,
  parseQueryParams,
  queryAuditLog,
  readAuditSince,
} from './query.js';
export {
  type SealedSegment,
  type SealOptions,
  type SegmentHeader,
  type SegmentVerifyResult,
  sealSegments,
  segmentPath,
  verifySegmentFile,
} from './retention.js';
export {
  AUDIT_KEY_FILE,
  AuditSigner,
  type Checkpoint,
  checkpointMessage,
  keyIdOf,
  type SignerOptions,
  verifyCheckpoint,
} from './signer.js';
export { type ReindexResult, reindexLog } from './reindex.js';
export { type ExportSink, fileSink, stdoutSink, webhookSink } from './sinks.js';
export {
  type ProblemKind,
  readCheckpointFile,
  type VerifyOptions,
  type VerifyProblem,
  type VerifyReport,
  verifyLog,
} from './verify.js';
export {
  type AccessDecisionEvent,
  type DecisionAnswer,
  type DecisionOutcome,
  type DecisionRequest,
  type DecisionSite,
  decisionEvent,
} from './decision-event.js';
export {
  AuditRecorder,
  type AuditSink,
  AuditSinkRejectedError,
  AGENT_PORT_INGEST_PATH,
  createHttpShipper,
  type HttpSinkOptions,
  httpSink,
  ingestionError,
  type RecorderOptions,
  type RecorderStats,
} from './recorder.js';
export {
  type AnomalyConfig,
  AnomalyDetector,
  type AnomalySignal,
  type AnomalySignalName,
  anomalyConfigSchema,
  anomalyEvent,
} from './anomaly.js';
