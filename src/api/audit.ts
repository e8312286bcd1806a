/**
 * The audit log's answers on the admin API, as types: the signed checkpoint, an event's inclusion
 * proof and the verification report. The log (src/audit/) produces them; the CLI and the console's
 * browser code read them (the console may import only from src/api/).
 */

/** A signed statement: "the log had `tree_size` leaves with root `root_hash` at `time`". */
export interface Checkpoint {
  tree_size: number;
  /** Hex MTH of the first `tree_size` leaves. */
  root_hash: string;
  /** Epoch milliseconds. */
  time: number;
  key_id: string;
  /** Base64 Ed25519 signature over the checkpoint message (src/audit/signer.ts `checkpointMessage`). */
  signature: string;
}

/** `GET /v1/admin/audit/events/<id>`'s `inclusion`: the audit path of one leaf to a checkpoint's root. */
export interface InclusionProofResult {
  seq: number;
  tree_size: number;
  leaf_hash: string;
  /** Sibling hashes (hex), leaf upwards, RFC 6962 §2.1.1. */
  proof: string[];
  checkpoint: Checkpoint;
}

export type ProblemKind = 'changed' | 'removed' | 'inserted';

export interface VerifyProblem {
  /** The first leaf index that was changed, removed or inserted. */
  index: number;
  kind: ProblemKind;
  message: string;
}

/** `POST /v1/admin/audit/verify`. */
export interface VerifyReport {
  ok: boolean;
  /** Leaves the verifier accounted for. */
  treeSize: number;
  /** Tree size recorded in the head row. */
  headSize: number;
  root: string;
  checkpointsChecked: number;
  externalCheckpointsChecked: number;
  segmentsChecked: number;
  /** Whether the block query index was checked against the rows (false: the database predates it). */
  indexChecked: boolean;
  /** Sealed ranges whose files were not available, trusted from stored subtree roots. */
  unverifiedRanges: [number, number][];
  firstBad?: VerifyProblem;
  /** Checkpoints whose signature or key is wrong (forged or tampered rows). */
  badCheckpoints: { tree_size: number; source: 'database' | 'external'; message: string }[];
}
