/**
 * What the log sends out after a commit: stored events to in-process listeners and export sinks,
 * and every checkpoint, with the public key that signed it, to the external checkpoint file and
 * webhook (the evidence that survives a rewritten database). Failures here are logged and counted,
 * never undo a commit.
 */
import { appendFile } from 'node:fs/promises';
import { postJson } from '../util/post-json.js';
import type { StoredAuditEvent } from './event.js';
import type { AuditLogger, AuditLogOptions } from './log.js';
import type { Checkpoint } from './signer.js';

/** A checkpoint line in an external checkpoint file: the checkpoint plus the public key that signed it. */
export interface ExternalCheckpoint extends Checkpoint {
  public_key: string;
}

/** Sends committed events and checkpoints to whoever receives them. */
export class LogPublisher {
  private readonly listeners = new Set<(events: StoredAuditEvent[]) => void>();
  private checkpointWrites: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: Pick<AuditLogOptions, 'sinks' | 'checkpointFile' | 'checkpointWebhook'>,
    private readonly logger: AuditLogger,
    private readonly counters: { sinkErrors: number },
  ) {}

  /** Whether anyone receives events (the stored form is built only then). */
  get wanted(): boolean {
    return this.listeners.size > 0 || (this.opts.sinks?.length ?? 0) > 0;
  }

  /** Listens for committed events (in commit order); returns an unsubscribe function. */
  onAppend(listener: (events: StoredAuditEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Committed events to every listener and sink. */
  events(events: StoredAuditEvent[]): void {
    for (const l of this.listeners) {
      try {
        l(events);
      } catch (e) {
        this.logger.error({ err: e }, 'audit listener failed');
      }
    }
    for (const s of this.opts.sinks ?? []) {
      s.write(events).catch((e: unknown) => {
        this.counters.sinkErrors++;
        this.logger.warn({ err: e, sink: s.name }, 'audit export sink failed');
      });
    }
  }

  /** A signed checkpoint to the external checkpoint file and webhook. */
  checkpoint(external: ExternalCheckpoint): void {
    if (this.opts.checkpointFile) {
      const file = this.opts.checkpointFile;
      const line = `${JSON.stringify(external)}\n`;
      // One write at a time: concurrent appends run on the thread pool and may land out of order.
      this.checkpointWrites = this.checkpointWrites
        .then(() => appendFile(file, line, { mode: 0o600 }))
        .catch((e: unknown) => this.logger.error({ err: e, file }, 'cannot write the external checkpoint file'));
    }
    if (this.opts.checkpointWebhook) {
      const url = this.opts.checkpointWebhook;
      postJson(url, external).catch((e: unknown) => this.logger.warn({ err: e, url }, 'checkpoint webhook failed'));
    }
  }

  /** Waits for checkpoint file writes and closes the sinks. */
  async close(): Promise<void> {
    await this.checkpointWrites;
    for (const s of this.opts.sinks ?? []) await s.close?.().catch(() => {});
  }
}
