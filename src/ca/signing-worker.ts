/**
 * Entry point of a CA signing-pool worker thread: batches from the pool go to a
 * {@link SigningBatchHandler}, results go back.
 * @internal
 */
import { parentPort } from 'node:worker_threads';
import { SigningBatchHandler } from './signing-batch.js';
import type { ToWorker } from './signing-protocol.js';

if (!parentPort) throw new Error('signing-worker runs as a worker thread of the CA signing pool');
const port = parentPort;
const handler = new SigningBatchHandler();
port.on('message', (msg: ToWorker) => handler.handle(msg, (out, transfer) => port.postMessage(out, transfer)));
