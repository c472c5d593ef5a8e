import * as path from 'node:path';

/**
 * The built `bfs` command, for starting child processes. Resolved through the package (not
 * __dirname) so it is the same file whether the caller runs from dist/ or from src/ under tsx.
 */
export function bfsCliPath(): string {
  return path.join(path.dirname(require.resolve('@bfs/bfs/package.json')), 'dist', 'cli.js');
}
