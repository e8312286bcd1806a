/**
 * The wire contracts between CLI, server, agent and enforcement points: per resource its zod
 * schemas, their types, and the one conversion from the model type. Model: SPIRE's pkg/server/api.
 * A low layer: imports only src/spiffe, src/errors.ts and src/util.
 */
export * from './agents.js';
export * from './assertion-keys.js';
export * from './attest.js';
export * from './audit-ingest.js';
export * from './entries.js';
export * from './fields.js';
export * from './join-tokens.js';
export * from './parse.js';
export * from './policy-tools.js';
export * from './sync.js';
export * from './ca.js';
export * from './users.js';
export * from './devices.js';
export * from './signals.js';
export * from './graph.js';
