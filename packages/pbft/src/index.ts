export * from './constants';
export * from './codec';
export * from './crypto';
export * from './service';
export * from './replica';
export * from './client-core';
export * from './simulator';
