export * from './types';
export * from './constants';
export * from './hash';
export * from './page-store';
export * from './transfer';
export * from './persistent';
export * from './transfer-codec';
export * from './level-open';
