/**
 * `@bfs/pbft/testing`: what tests, benchmarks and demonstrations need and a production replica
 * never loads: the deterministic simulator, the Byzantine behaviours and deterministic keys.
 */
export * from './byzantine';
export * from './keys';
export * from './simulator';
export * from './faulty-client';
export * from './request-signatures';
