#!/usr/bin/env bash
# Bulk bandwidth through a real client: nfs-cp (libnfs-utils, 1 MiB transfers) copies one file
# of each size onto the server and back, and prints MB/s (MB = 2^20 bytes) both ways and the CPU
# seconds per MB of every process involved (utime + stime from /proc, before and after).
#   scripts/bench-bulk.sh serve|bfs|ganesha [MB ...]        (default sizes: 1 20 200)
# serve: `bfs serve`; bfs: four `bfs replica` processes and `bfs relay` (write-back on; RELAY_FLAGS
# adds flags); ganesha: nfs-ganesha (VFS) in a private network namespace, as
# scripts/bench-with-ganesha.sh starts it (root; nfs-ganesha nfs-ganesha-vfs rpcbind installed).
# NODE_FLAGS is passed to every node process (e.g. --cpu-prof --cpu-prof-dir=DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/ganesha-conf.sh
. "$root/scripts/ganesha-conf.sh"
CLI=${CLI:-$root/packages/bfs/dist/cli.js}
system=${1:?serve, bfs or ganesha}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 20 200)
PORT=${PORT:-20590}
NODE_FLAGS=${NODE_FLAGS:-}
work=$(mktemp -d /dev/shm/bfs-bulk-XXXXXX)
tick=$(getconf CLK_TCK)
declare -A pids=()
ns=
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$ns" ]; then
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
inns() { if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }

case $system in
  serve)
    node $NODE_FLAGS "$CLI" serve --dir "$work/data" --port "$PORT" >/dev/null 2>"$work/serve.log" &
    pids[serve]=$!
    url="nfs://127.0.0.1//%s?nfsport=$PORT&mountport=$PORT&version=3"
    ;;
  bfs)
    node "$CLI" init --dir "$work/data" >/dev/null
    for i in 0 1 2 3; do
      BFS_LOG_FORMAT=json node $NODE_FLAGS "$CLI" replica --dir "$work/data" --id $i \
        >/dev/null 2>>"$work/replicas.log" &
      pids[replica$i]=$!
    done
    # shellcheck disable=SC2086
    BFS_LOG_FORMAT=json node $NODE_FLAGS "$CLI" relay --dir "$work/data" --port "$PORT" \
      ${RELAY_FLAGS:-} >/dev/null 2>>"$work/relay.log" &
    pids[relay]=$!
    url="nfs://127.0.0.1//%s?nfsport=$PORT&mountport=$PORT&version=3"
    ;;
  ganesha)
    mkdir -p "$work/export" && chmod 777 "$work/export"
    write_ganesha_conf "$work/ganesha.conf" "$work/export"
    ns=bfsbulk$$
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" rpcbind -w
    ip netns exec "$ns" ganesha.nfsd -f "$work/ganesha.conf" -L "$work/ganesha.log" \
      -p "$work/ganesha.pid" -N NIV_WARN
    for _ in $(seq 1 30); do [ -s "$work/ganesha.pid" ] && break; sleep 0.2; done
    pids[ganesha]=$(cat "$work/ganesha.pid")
    url="nfs://127.0.0.1$work/export/%s?nfsport=2049&mountport=20048&version=3"
    ;;
  *)
    echo "bench-bulk: serve, bfs or ganesha" >&2
    exit 2
    ;;
esac

# Ready when a client can list the export.
for _ in $(seq 1 150); do
  # shellcheck disable=SC2059
  inns nfs-ls "$(printf "$url" '')" >/dev/null 2>&1 && break
  sleep 0.2
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A before=()
snapshot() { for k in "${!pids[@]}"; do before[$k]=$(cpu_ticks "${pids[$k]}"); done; }
per_mb() { # $1 MB: CPU s/MB of each process since the snapshot, and of the client ($2 s)
  local out="" k
  for k in $(printf '%s\n' "${!pids[@]}" | sort); do
    out+=" $k=$(awk -v a="${before[$k]}" -v b="$(cpu_ticks "${pids[$k]}")" -v t="$tick" -v m="$1" \
      'BEGIN { printf "%.4f", (b - a) / t / m }')"
  done
  echo "$out nfs-cp=$(awk -v c="$2" -v m="$1" 'BEGIN { printf "%.4f", c / m }')"
}
copy() { # $1 src, $2 dst: prints "wall_s client_cpu_s"
  local t0 t1
  t0=$(date +%s.%N)
  inns /usr/bin/time -f '%U %S' -o "$work/time" nfs-cp "$1" "$2" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" '{ printf "%.3f %.3f\n", b - a, $1 + $2 }' "$work/time"
}

for mb in "${sizes[@]}"; do
  head -c $((mb * 1048576)) /dev/urandom >"$work/src"
  name="bulk-$mb-$$"
  # shellcheck disable=SC2059
  remote=$(printf "$url" "$name")
  for dir in write read; do
    snapshot
    if [ $dir = write ]; then
      read -r wall ccpu < <(copy "$work/src" "$remote")
    else
      read -r wall ccpu < <(copy "$remote" "$work/back")
    fi
    cpu=$(per_mb "$mb" "$ccpu")
    echo "$system ${mb}MB $dir $(awk -v m="$mb" -v s="$wall" 'BEGIN { printf "%.1f", m / s }') MB/s" \
      "(${wall} s) cpu_s_per_MB:$cpu"
  done
  cmp -s "$work/src" "$work/back" || { echo "bench-bulk: ${mb} MB read back differs" >&2; exit 1; }
  rm -f "$work/back"
done
