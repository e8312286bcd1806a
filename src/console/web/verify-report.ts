/** The log's verification report (`POST /v1/admin/audit/verify`) in words. Pure. */
import type { VerifyReport } from './wire.js';

/** One sentence of a verification report. */
export function verifyText(r: VerifyReport): string {
  const parts = [
    `${r.ok ? 'Intact' : 'NOT intact'}: ${r.treeSize.toLocaleString()} events, root ${r.root.slice(0, 16)}…`,
    `${r.checkpointsChecked} signed checkpoints and ${r.segmentsChecked} sealed segments checked`,
  ];
  if (r.firstBad) parts.push(`first problem at event ${r.firstBad.index} (${r.firstBad.kind}): ${r.firstBad.message}`);
  if (r.badCheckpoints.length > 0) parts.push(`${r.badCheckpoints.length} bad checkpoints`);
  if (r.unverifiedRanges.length > 0)
    parts.push(`${r.unverifiedRanges.length} ranges unverified (segment files missing)`);
  return `${parts.join('; ')}.`;
}
