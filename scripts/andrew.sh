#!/usr/bin/env bash
# Andrew-style benchmark with real tools on a mounted directory (for instance a kernel NFS
# mount of the relay): the same five phases and generated source tree as `bfs bench andrew`.
#   scripts/andrew.sh MOUNTDIR [COPIES]        (ANDREW_TREE=DIR copies DIR instead)
# Needs: node (and a built checkout: npm run build), cc, make. Prints seconds per phase and,
# last, one JSON line.
set -euo pipefail
mnt=${1:?usage: scripts/andrew.sh MOUNTDIR [COPIES]}
copies=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$mnt" ] || { echo "andrew.sh: $mnt is not a directory" >&2; exit 2; }
for tool in node cc make; do
  command -v "$tool" >/dev/null || { echo "andrew.sh: needs $tool" >&2; exit 2; }
done

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
if [ -n "${ANDREW_TREE:-}" ]; then
  cp -r "$ANDREW_TREE"/. "$src"/
else
  node -e '
    const fs = require("fs"), path = require("path");
    const { generateTree } = require(process.argv[1]);
    for (const f of generateTree()) {
      fs.mkdirSync(path.dirname(path.join(process.argv[2], f.path)), { recursive: true });
      fs.writeFileSync(path.join(process.argv[2], f.path), f.data);
    }' "$root/packages/bfs/dist/bench/andrew.js" "$src"
fi
# A Makefile that compiles every .c to a .o next to it: the compile phase's I/O.
objs=$(cd "$src" && find . -name '*.c' | sed 's/\.c$/.o/' | sort | tr '\n' ' ')
printf 'CFLAGS = -O0 -Iinclude\nall: %s\n%%.o: %%.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n' "$objs" > "$src/Makefile"

dest="$mnt/andrew-$$-$(date +%s)"
now() { date +%s.%N; }
declare -A t
phase() { # name command...
  local name=$1 start end
  shift
  start=$(now)
  "$@"
  end=$(now)
  t[$name]=$(awk "BEGIN{printf \"%.6f\", $end - $start}")
  printf '%-8s %.3f s\n' "$name" "${t[$name]}"
}
mkdirs() { for c in $(seq 1 "$copies"); do (cd "$src" && find . -type d) | while read -r d; do mkdir -p "$dest/copy$c/$d"; done; done; }
copy() { for c in $(seq 1 "$copies"); do cp -r "$src"/. "$dest/copy$c"/; done; }
stat_all() { ls -lR "$dest" > /dev/null; }
read_all() { find "$dest" -type f -exec cat {} + > /dev/null; grep -rq 'return' "$dest"; }
compile() { for c in $(seq 1 "$copies"); do make -s -C "$dest/copy$c" > /dev/null; done; }

phase mkdir mkdirs
phase copy copy
phase stat stat_all
phase read read_all
phase compile compile
total=$(awk "BEGIN{printf \"%.6f\", ${t[mkdir]} + ${t[copy]} + ${t[stat]} + ${t[read]} + ${t[compile]}}")
printf '%-8s %.3f s\n' total "$total"
printf '{"mkdir":%s,"copy":%s,"stat":%s,"read":%s,"compile":%s,"total":%s}\n' \
  "${t[mkdir]}" "${t[copy]}" "${t[stat]}" "${t[read]}" "${t[compile]}" "$total"
