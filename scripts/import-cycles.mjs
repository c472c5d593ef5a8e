// Prints the import cycles among the TypeScript files under a directory (default
// packages/pbft/src), type-only imports included; exits 1 if there is one. Usage:
//   node scripts/import-cycles.mjs [dir]
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? 'packages/pbft/src');

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

function target(from, spec) {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(from), spec);
  for (const p of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(p)) return p;
  return undefined;
}

const graph = new Map();
for (const file of files(root)) {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)];
  graph.set(file, [...new Set(specs.map((m) => target(file, m[1])).filter(Boolean))]);
}

// Depth-first search; a back edge to a file on the stack closes a cycle.
const cycles = [];
const state = new Map();
const stack = [];
function visit(file) {
  state.set(file, 'open');
  stack.push(file);
  for (const next of graph.get(file) ?? []) {
    if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
    else if (!state.has(next)) visit(next);
  }
  stack.pop();
  state.set(file, 'done');
}
for (const file of graph.keys()) if (!state.has(file)) visit(file);

for (const c of cycles) console.log(c.map((f) => relative(root, f)).join(' -> '));
console.log(`${graph.size} files, ${cycles.length} cycles`);
process.exit(cycles.length > 0 ? 1 : 0);
