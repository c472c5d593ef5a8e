#!/usr/bin/env bash
# `bfs bench compare` with nfs-ganesha (VFS backend) as a fourth system. Ganesha will not start
# without an rpcbind to register with, so rpcbind, Ganesha and the benchmark all run inside a
# private network namespace: port 111 and 2049 never appear on the host. Needs root and
# `apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind`, and a built checkout (npm run build).
#   scripts/bench-with-ganesha.sh [bfs bench compare options...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/ganesha-conf.sh
. "$root/scripts/ganesha-conf.sh"
for tool in ganesha.nfsd rpcbind ip; do
  command -v "$tool" >/dev/null || { echo "bench-with-ganesha: needs $tool (see the header)" >&2; exit 2; }
done

ns=bfsbench$$
work=$(mktemp -d)
export_dir="$work/export"
mkdir -p "$export_dir" && chmod 777 "$export_dir"
cleanup() {
  [ -f "$work/ganesha.pid" ] && ip netns exec "$ns" kill "$(cat "$work/ganesha.pid")" 2>/dev/null || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
write_ganesha_conf "$work/ganesha.conf" "$export_dir"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" rpcbind -w
ip netns exec "$ns" ganesha.nfsd -f "$work/ganesha.conf" -L "$work/ganesha.log" -p "$work/ganesha.pid" -N NIV_WARN
for _ in $(seq 1 30); do
  ip netns exec "$ns" rpcinfo -t 127.0.0.1 nfs 3 >/dev/null 2>&1 && break
  sleep 0.5
done
url="nfs://127.0.0.1$export_dir?nfsport=2049&mountport=20048&version=3"
ip netns exec "$ns" node "$root/packages/bfs/dist/cli.js" bench compare --extra "ganesha=$url" "$@"
