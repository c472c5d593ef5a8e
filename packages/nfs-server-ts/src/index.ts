export * from './programs';
export * from './filesystem';
