// api-gateway: the public edge. Humans and the traffic generator call its plain HTTP port on
// loopback; it calls payment-service over mTLS with its own SPIFFE identity.
import { runService } from './service.mjs';

const forward =
  (path) =>
  async (_req, body, { call }) => {
    const r = await call('payment-service', 'POST', path, body);
    return [r.status || 502, { upstream_status: r.status, upstream: r.body }];
  };

await runService({
  name: 'api-gateway',
  routes: {
    'GET /healthz': async () => [200, { ok: true }],
    public: {
      'POST /charge': forward('/v1/charges'),
      'POST /refund': forward('/v1/refunds'),
    },
  },
});
