#!/usr/bin/env node
// The `bfs` command. This file is committed, so npm links it at install time; dist/ is built
// later (or, in a checkout, on the first run: scripts/build-if-missing.js).
const path = require('node:path');
const cli = path.join(__dirname, '..', 'dist', 'cli.js');
if (!require('node:fs').existsSync(cli))
  require('../../../scripts/build-if-missing.js')('bfs', path.join(__dirname, '..'), cli);
require(cli).buildProgram().parseAsync(process.argv);
