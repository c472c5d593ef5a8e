#!/usr/bin/env bash
# The relay with and without its write-back buffer, over the same four replicas, alternating.
# Usage: scripts/bench-write-back.sh andrew|bulk [ROUNDS]   (bulk: MB, CHUNK, WINDOW from env)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?andrew or bulk}
rounds=${2:-3}
CLI=packages/bfs/dist/cli.js
D=$(mktemp -d /tmp/bfs-wb-XXXXXX)
PORT=${PORT:-20490}
node $CLI init --dir "$D/data" >/dev/null
export BFS_LOG_FORMAT=json
pids=()
relay=
cleanup() { kill "${pids[@]}" $relay 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
for i in 0 1 2 3; do
  node $CLI replica --dir "$D/data" --id $i 2>>"$D/replicas.log" >/dev/null &
  pids+=($!)
done
sleep 3
url="nfs://127.0.0.1/?nfsport=$PORT&mountport=$PORT&version=3"
for round in $(seq "$rounds"); do
  for mode in write-back no-write-back; do
    flag=
    [ $mode = no-write-back ] && flag=--no-write-back
    node $CLI relay --dir "$D/data" --port "$PORT" $flag 2>>"$D/relay.log" >/dev/null &
    relay=$!
    sleep 2
    if [ "$what" = andrew ]; then
      echo "$mode $(node $CLI bench andrew --url "$url" --copies 3 --runs 1 --json 2>/dev/null | tail -1)"
    else
      echo "$mode $(node scripts/bulk-write.mjs "$PORT" "${MB:-20}")"
    fi
    kill $relay
    wait $relay 2>/dev/null || true
    relay=
  done
done
