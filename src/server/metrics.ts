import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The server's Prometheus metrics. One registry per server so tests can run several in one process. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'nevertrust_http_requests_total',
    help: 'HTTP requests served, by route and status code',
    labelNames: ['route', 'code'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'nevertrust_http_request_duration_seconds',
    help: 'HTTP request duration',
    labelNames: ['route'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'nevertrust_http_requests_in_flight',
    help: 'HTTP requests being served now',
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'nevertrust_ready',
    help: '1 when the store is open and migrated',
    registers: [this.registry],
  });

  readonly policyReloads = new Counter({
    name: 'nevertrust_policy_reload_total',
    help: 'Policy loads after the first, by result: changed, unchanged or rejected (last good policy kept)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly policyWatchErrors = new Counter({
    name: 'nevertrust_policy_watch_errors_total',
    help: 'Failures of the file system watch on the policy path (changes are still found by polling)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'nevertrust_process_' });
  }
}
