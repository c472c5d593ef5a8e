export * from './programs';
