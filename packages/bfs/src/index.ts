export { VERSION } from './version';
export { buildProgram } from './cli';
