// payment-service: creates charges and refunds for api-gateway, and reports each to audit-service.
import { runService } from './service.mjs';

let next = 1;
const handle =
  (kind) =>
  async (_req, body, { call }) => {
    const id = `${kind}_${next++}`;
    const amount = Number(body?.amount ?? 0);
    const event = await call('audit-service', 'POST', '/v1/events', { type: `${kind}.created`, id, amount });
    return [201, { id, amount, audited: event.status === 201 }];
  };

await runService({
  name: 'payment-service',
  routes: {
    'POST /v1/charges': handle('charge'),
    'POST /v1/refunds': handle('refund'),
    'GET /v1/charges': async () => [200, { charges: [] }],
    'POST /admin': async () => [200, { admin: true }],
  },
});
