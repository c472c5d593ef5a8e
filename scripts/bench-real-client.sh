#!/usr/bin/env bash
# Andrew with a real client: a FUSE NFS client (fuse-nfs, over libnfs) mounted on BFS (four
# replicas and the relay, `bfs up`), on BFS unreplicated (`bfs serve`) and on nfs-ganesha, each
# running scripts/andrew.sh, interleaved: every round runs every system under every client-cache
# setting, in an order that rotates from round to round. Then one more round under a packet
# capture gives the NFS calls each system served, with tshark's service-response times.
#   scripts/bench-real-client.sh FUSE_NFS [ROUNDS] [COPIES]
# FUSE_NFS is the path of a fuse-nfs binary you built (github sahlberg/fuse-nfs). Environment:
#   CACHES="0 3"              client attribute/entry cache timeouts (s) to run
#   SYSTEMS="bfs serve ganesha"  also bfs-lcS: BFS with the relay's lookup cache bound at S
#                             seconds (bfs up --lookup-cache S; bfs-lc0: off), e.g. bfs-lc0
#   BENCH_DIR=/tmp            where the servers keep their state and export
#   ANDREW_TREE=DIR           copy DIR instead of the generated C tree (see andrew.sh)
#   CAPTURE=0                 skip the capture round
# Needs root, ip, rpcbind, ganesha.nfsd with its VFS plugin (apt-get install nfs-ganesha
# nfs-ganesha-vfs rpcbind), fusermount, tshark for the capture round, and a built checkout
# (npm run build). Everything runs in a private network and mount namespace: no port appears
# on the host. Prints one JSON line per run and, last, a table of medians and ratios.
set -euo pipefail
fuse=${1:?usage: scripts/bench-real-client.sh FUSE_NFS [ROUNDS] [COPIES]}
rounds=${2:-3}
copies=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/ganesha-conf.sh
. "$root/scripts/ganesha-conf.sh"
fuse=$(cd "$(dirname "$fuse")" && pwd)/$(basename "$fuse")

if [ "${BENCH_REAL_CLIENT_INSIDE:-}" != 1 ]; then
  for tool in ip rpcbind ganesha.nfsd fusermount node; do
    command -v "$tool" >/dev/null || { echo "bench-real-client: needs $tool (see the header)" >&2; exit 2; }
  done
  [ -x "$fuse" ] || { echo "bench-real-client: $fuse is not an executable fuse-nfs" >&2; exit 2; }
  [ -f "$root/packages/bfs/dist/cli.js" ] || { echo "bench-real-client: run npm run build first" >&2; exit 2; }
  ns=bfsreal$$
  ip netns add "$ns"
  trap 'ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$ns" 2>/dev/null || true' EXIT
  echo "uptime: $(uptime)" >&2
  # ip netns exec gives the command its own mount namespace too: the FUSE mounts stay in it.
  BENCH_REAL_CLIENT_INSIDE=1 ip netns exec "$ns" "$0" "$fuse" "$rounds" "$copies"
  exit
fi

caches=${CACHES:-0 3}
systems=${SYSTEMS:-bfs serve ganesha}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/bench-real-client.XXXXXX")
mnt="$work/mnt"
results="$work/results"
mkdir -p "$mnt" "$work/export" && chmod 777 "$work/export"
pids=()
cleanup() {
  fusermount -u "$mnt" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/ganesha.pid" ] && kill "$(cat "$work/ganesha.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
ip link set lo up

declare -A url port
# A server's ready line carries its URL: wait for it.
wait_ready() { # name file
  for _ in $(seq 1 120); do
    if grep -q '^ready nfs://' "$2" 2>/dev/null; then
      url[$1]=$(grep -m1 '^ready nfs://' "$2" | sed 's/^ready //')
      return
    fi
    sleep 0.5
  done
  echo "bench-real-client: $1 did not start:" >&2
  cat "$2" >&2
  exit 1
}
for s in $systems; do
  case $s in
    bfs)
      node "$root/packages/bfs/dist/cli.js" up --dir "$work/bfs" --port 3049 > "$work/bfs.out" 2> "$work/bfs.err" &
      pids+=($!)
      wait_ready bfs "$work/bfs.out"
      port[bfs]=3049
      ;;
    bfs-lc*)
      # Its own cluster on free replica ports (bfs up picks them), its relay on its own port.
      port[$s]=$((3149 + ${#pids[@]}))
      node "$root/packages/bfs/dist/cli.js" up --dir "$work/$s" --port "${port[$s]}" --lookup-cache "${s#bfs-lc}" > "$work/$s.out" 2> "$work/$s.err" &
      pids+=($!)
      wait_ready "$s" "$work/$s.out"
      ;;
    serve)
      node "$root/packages/bfs/dist/cli.js" serve --dir "$work/serve" --port 4049 > "$work/serve.out" 2> "$work/serve.err" &
      pids+=($!)
      wait_ready serve "$work/serve.out"
      port[serve]=4049
      ;;
    ganesha)
      write_ganesha_conf "$work/ganesha.conf" "$work/export"
      rpcbind -w
      ganesha.nfsd -f "$work/ganesha.conf" -L "$work/ganesha.log" -p "$work/ganesha.pid" -N NIV_WARN
      for _ in $(seq 1 60); do
        rpcinfo -t 127.0.0.1 nfs 3 >/dev/null 2>&1 && break
        sleep 0.5
      done
      url[ganesha]="nfs://127.0.0.1$work/export?nfsport=2049&mountport=20048&version=3"
      port[ganesha]=2049
      ;;
    *) echo "bench-real-client: unknown system $s" >&2; exit 2 ;;
  esac
done

# One Andrew run of system $1 with cache timeout $2, as one JSON line in $results.jsonl (or in
# CAPTURE-FILE.jsonl, with the run captured to CAPTURE-FILE).
run_one() { # system cache round [capture-file]
  local s=$1 c=$2 r=$3 cap=${4:-} out capture=
  "$fuse" -n "${url[$s]}" -m "$mnt" -E "$c" -T "$c" -C "$c" -N "$c"
  if [ -n "$cap" ]; then
    dumpcap -q -i lo -f "tcp port ${port[$s]}" -w "$cap" 2>/dev/null &
    capture=$!
    sleep 1
  fi
  out=$(bash "$root/scripts/andrew.sh" "$mnt" "$copies" | tail -1)
  if [ -n "$capture" ]; then
    sleep 0.5
    kill -INT "$capture"
    wait "$capture" || true
  fi
  rm -rf "$mnt"/andrew-* 2>/dev/null || true
  fusermount -u "$mnt"
  echo "{\"system\":\"$s\",\"cache\":$c,\"round\":$r,\"phases\":$out}" | tee -a "${cap:-$results}.jsonl"
}

read -r -a order <<< "$systems"
for r in $(seq 1 "$rounds"); do
  for c in $caches; do
    for i in "${!order[@]}"; do
      run_one "${order[$(((i + r) % ${#order[@]}))]}" "$c" "$r"
    done
  done
done

node - "$results.jsonl" <<'JS'
const fs = require('fs');
const runs = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const phases = ['mkdir', 'copy', 'stat', 'read', 'compile', 'total'];
const caches = [...new Set(runs.map((r) => r.cache))];
const systems = [...new Set(runs.map((r) => r.system))];
console.log(`\nmedians of ${Math.max(...runs.map((r) => r.round))} rounds (seconds)`);
console.log(['system', 'cache', ...phases].map((h) => h.padStart(9)).join(''));
for (const c of caches)
  for (const s of systems) {
    const mine = runs.filter((r) => r.cache === c && r.system === s);
    console.log([s, `${c} s`, ...phases.map((p) => median(mine.map((r) => r.phases[p])).toFixed(2))].map((v) => String(v).padStart(9)).join(''));
  }
console.log('\nratios of totals, pairwise within each round (median [min-max])');
for (const c of caches)
  for (const [a, b] of [['bfs', 'serve'], ['bfs', 'ganesha'], ['serve', 'ganesha'], ...systems.filter((s) => s.startsWith('bfs-lc')).flatMap((s) => [[s, 'serve'], ['bfs', s]])]) {
    const rs = [];
    for (const r of new Set(runs.map((x) => x.round))) {
      const x = runs.find((y) => y.round === r && y.cache === c && y.system === a);
      const y = runs.find((z) => z.round === r && z.cache === c && z.system === b);
      if (x && y) rs.push(x.phases.total / y.phases.total);
    }
    if (rs.length) console.log(`cache ${c} s: ${a}/${b} ${median(rs).toFixed(2)}x [${Math.min(...rs).toFixed(2)}-${Math.max(...rs).toFixed(2)}]`);
  }
JS

if [ "${CAPTURE:-1}" != 0 ] && command -v tshark >/dev/null; then
  echo
  echo "one more round under capture: NFSv3 calls and service-response times (tshark -z rpc,srt,100003,3)"
  for c in $caches; do
    for s in $systems; do
      run_one "$s" "$c" 0 "$work/$s-$c.pcap" > /dev/null
      echo "== $s, cache $c s"
      tshark -r "$work/$s-$c.pcap" -q -z rpc,srt,100003,3 2>/dev/null |
        awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[A-Z]+$/ { printf "  %-12s %7d calls  avg %8.3f ms  max %8.3f ms  total %7.3f s\n", $2, $3, $6 * 1000, $5 * 1000, $7 }'
    done
  done
fi
