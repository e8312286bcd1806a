/**
 * The payments scenario's traffic: the calls the policy must allow, and the attacks it must deny.
 * Each step is made by a service with its own identity (through the service's loopback driver), so
 * a "compromised audit-service" really presents audit-service's SVID.
 */
export type ServiceName = 'api-gateway' | 'payment-service' | 'audit-service';
export const SERVICES: readonly ServiceName[] = ['api-gateway', 'payment-service', 'audit-service'];

export interface Step {
  label: string;
  kind: 'allowed' | 'attack';
  /** The calling service, or `anonymous` for a client with no certificate. */
  from: ServiceName | 'anonymous';
  to: ServiceName;
  method: string;
  /** Sent exactly as written: path tricks must reach the enforcement point unnormalized. */
  path: string;
  body?: unknown;
}

export const STEPS: readonly Step[] = [
  {
    label: 'gateway creates a charge',
    kind: 'allowed',
    from: 'api-gateway',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/charges',
    body: { amount: 1200 },
  },
  {
    label: 'gateway creates a refund',
    kind: 'allowed',
    from: 'api-gateway',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/refunds',
    body: { amount: 300 },
  },
  {
    label: 'payments reports an event',
    kind: 'allowed',
    from: 'payment-service',
    to: 'audit-service',
    method: 'POST',
    path: '/v1/events',
    body: { type: 'manual' },
  },
  {
    label: 'lateral movement: audit-service → payment-service',
    kind: 'attack',
    from: 'audit-service',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/charges',
    body: { amount: 1 },
  },
  {
    label: 'gateway skips payments: api-gateway → audit-service',
    kind: 'attack',
    from: 'api-gateway',
    to: 'audit-service',
    method: 'POST',
    path: '/v1/events',
  },
  {
    label: 'wrong method: GET /v1/charges',
    kind: 'attack',
    from: 'api-gateway',
    to: 'payment-service',
    method: 'GET',
    path: '/v1/charges',
  },
  {
    label: 'path trick: /v1/charges/../admin',
    kind: 'attack',
    from: 'api-gateway',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/charges/../admin',
  },
  {
    label: 'path trick: /v1/charges/%2e%2e/admin',
    kind: 'attack',
    from: 'api-gateway',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/charges/%2e%2e/admin',
  },
  {
    label: 'no client certificate',
    kind: 'attack',
    from: 'anonymous',
    to: 'payment-service',
    method: 'POST',
    path: '/v1/charges',
  },
];

export interface StepResult {
  step: Step;
  /** HTTP status, or 0 when the connection was refused (as for a client without a certificate). */
  status: number;
  /** Allowed steps must get 2xx; attacks must be refused (403, 401, or no TLS session). */
  asExpected: boolean;
  detail: string;
}

export function judge(step: Step, status: number): boolean {
  if (step.kind === 'allowed') return status >= 200 && status < 300;
  return status === 0 || status === 401 || status === 403;
}
