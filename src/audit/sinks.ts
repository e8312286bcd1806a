/**
 * Export sinks: copies of stored events for a SIEM. A sink sees events only after their transaction
 * committed; a failing sink never blocks or fails the log (it is told of its errors through `onError`).
 */
import { appendFile } from 'node:fs/promises';
import { postJson } from '../util/post-json.js';
import type { StoredAuditEvent } from './event.js';

export interface ExportSink {
  readonly name: string;
  write(events: readonly StoredAuditEvent[]): Promise<void>;
  close?(): Promise<void>;
}

function lines(events: readonly StoredAuditEvent[]): string {
  let out = '';
  for (const e of events) out += `${JSON.stringify(e)}\n`;
  return out;
}

/**
 * JSON lines on stdout (or any writable stream).
 *
 * @example
 * new AuditLog(…, { sinks: [stdoutSink()] })
 */
export function stdoutSink(stream: NodeJS.WritableStream = process.stdout): ExportSink {
  return {
    name: 'stdout',
    async write(events) {
      stream.write(lines(events));
    },
  };
}

/**
 * Appends JSON lines to a file.
 *
 * @example
 * fileSink('/var/log/nevertrust/audit.ndjson')
 */
export function fileSink(path: string): ExportSink {
  let chain: Promise<void> = Promise.resolve();
  return {
    name: `file:${path}`,
    write(events) {
      chain = chain.then(() => appendFile(path, lines(events), { mode: 0o600 }));
      return chain;
    },
  };
}

/**
 * POSTs `{"events": [...]}` to a URL (a SIEM's HTTP collector), with `headers` such as an API key.
 *
 * @example
 * webhookSink('https://siem.example.com/collect', { authorization: 'Splunk …' })
 */
export function webhookSink(url: string, headers: Record<string, string> = {}, timeoutMs = 5000): ExportSink {
  return {
    name: `webhook:${new URL(url).host}`,
    async write(events) {
      await postJson(url, { events }, { headers, timeoutMs });
    },
  };
}
