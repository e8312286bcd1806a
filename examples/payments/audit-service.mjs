// audit-service: accepts business events from payment-service.
import { runService } from './service.mjs';

const events = [];
await runService({
  name: 'audit-service',
  routes: {
    'POST /v1/events': async (_req, body) => {
      events.push(body);
      if (events.length > 1000) events.shift();
      return [201, { stored: events.length }];
    },
  },
});
