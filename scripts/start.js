#!/usr/bin/env node
// `npm start`: `bfs up` with the defaults (./data, port 2049 or a free one).
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const cli = path.join(__dirname, '..', 'packages', 'bfs', 'dist', 'cli.js');
const r = spawnSync(process.execPath, [cli, 'up', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
