// Used by the packages' bin launchers (packages/*/bin/*.js) in a checkout of this repository:
// npm links a workspace's command at install time, before anything is built, so the first run
// of `npx bfs` or `npx nfs-server-ts` after `npm ci` builds the package (tsc -b, with what it
// references) and then goes on. Build output goes to stderr: stdout stays the command's.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');

/** Builds the package in `packageDir` unless `cli` exists; exits with a clear message if it cannot. */
module.exports = function buildIfMissing(command, packageDir, cli) {
  if (fs.existsSync(cli)) return;
  const fail = (why) => {
    process.stderr.write(
      `${command}: ${path.relative(ROOT, cli)} is not built and ${why}; ` +
        `run \`npm ci && npm run build\` in ${ROOT}, then try again\n`,
    );
    process.exit(1);
  };
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  } catch {
    fail('TypeScript is not installed (dev dependencies omitted?)');
  }
  process.stderr.write(
    `${command}: not built yet; building ${path.relative(ROOT, packageDir)} (once)\n`,
  );
  const r = spawnSync(process.execPath, [tsc, '-b', packageDir], {
    cwd: ROOT,
    stdio: ['ignore', 2, 2],
  });
  if (r.status !== 0 || !fs.existsSync(cli)) fail('building it failed (see above)');
};
