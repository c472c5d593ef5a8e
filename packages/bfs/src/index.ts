export { VERSION } from './version';
export { buildProgram } from './cli';
export * from './fs';
export * from './time';
