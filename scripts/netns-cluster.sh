#!/usr/bin/env bash
# A BFS cluster spread over "hosts" that are Linux network namespaces: one per replica and one
# for the relay and its clients, each with its own private address on a bridge that lives in a
# namespace of its own. Nothing is added to the root namespace, so only 10.77.0.0/24 inside these
# namespaces carries the cluster's traffic, and cutting a replica's cable (link-down) is real.
# Needs root, iproute2 and a built checkout (npm run build); libnfs-utils for the clients.
#
#   scripts/netns-cluster.sh up DIR [--port P] [--size S]   create, init DIR, start, print ready line
#   scripts/netns-cluster.sh down DIR                       stop and delete everything (idempotent)
#   scripts/netns-cluster.sh down-all                       the same for every cluster of this script here
#   scripts/netns-cluster.sh link-down DIR I | link-up DIR I  cut replica I off / reconnect it
#   scripts/netns-cluster.sh kill DIR I                     kill -9 replica I
#   scripts/netns-cluster.sh start DIR I                    restart replica I on DIR/replica-I
#   scripts/netns-cluster.sh exec DIR relay|I CMD...        run CMD inside that namespace
#   scripts/netns-cluster.sh status DIR [--json]            namespaces, links, pids, bfs status
#   scripts/netns-cluster.sh check                          exit 0 iff namespaces can be made here
#
# Names are bfsnc-TAG-{br,relay,r0..r3}, TAG a hash of DIR's absolute path: runs on different DIRs
# never collide, and `down DIR` finds a crashed run's namespaces even after DIR is gone.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cli=${BFS_CLI:-$root/packages/bfs/dist/cli.js}
REPLICAS=4
SUBNET=10.77.0
RELAY_ADDR=$SUBNET.100
# Replica i is at $SUBNET.(REPLICA_HOST_BASE + 1 + i): 10.77.0.11 .. 10.77.0.14.
REPLICA_HOST_BASE=10
READY_TIMEOUT_S=${BFS_NETNS_READY_TIMEOUT_S:-30}
STOP_GRACE_S=3

die() {
  echo "netns-cluster: $*" >&2
  exit 1
}
usage() {
  sed -n '/^#   scripts/s/^#   //p' "$0" >&2
  exit 2
}

# Sets dir (absolute), state, prefix and the namespace names for cluster directory $1.
names() {
  [ -n "${1:-}" ] || usage
  dir=$(realpath -m -- "$1")
  state=$dir/netns
  prefix=bfsnc-$(printf '%s' "$dir" | sha1sum | cut -c1-8)
  br_ns=$prefix-br
  relay_ns=$prefix-relay
}
replica_ns() { echo "$prefix-r$1"; }
replica_addr() { echo "$SUBNET.$((REPLICA_HOST_BASE + 1 + $1))"; }
replica_id() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -lt "$REPLICAS" ] || die "replica id must be 0..$((REPLICAS - 1)), got '${1:-}'"
}
need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
}
our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$prefix-" || true; }
pids_in() { ip netns pids "$1" 2>/dev/null || true; }
need_up() { [ -n "$(our_namespaces)" ] || die "no cluster up for $dir (run: $0 up $dir)"; }

# Waits for a line matching $2 in file $1 while pid $3 lives; prints the line.
wait_ready() {
  local file=$1 pattern=$2 pid=$3 deadline=$((SECONDS + READY_TIMEOUT_S)) line
  while [ $SECONDS -lt $deadline ]; do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "$line"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# Starts replica $1 in its namespace on its data dir and waits for its ready line.
start_replica() {
  local i=$1 ns pid
  ns=$(replica_ns "$i")
  [ -z "$(pids_in "$ns")" ] || die "replica $i is already running (pids $(pids_in "$ns" | xargs))"
  : >"$state/replica-$i.out"
  # setsid: the replica outlives this script and ignores the caller's Ctrl-C; down stops it.
  ip netns exec "$ns" setsid node "$cli" replica --dir "$dir" --id "$i" \
    --listen "$(replica_addr "$i")" --data "$dir/replica-$i" \
    </dev/null >"$state/replica-$i.out" 2>>"$state/replica-$i.log" &
  pid=$!
  echo "$pid" >"$state/replica-$i.pid"
  if ! wait_ready "$state/replica-$i.out" "^ready replica $i\$" "$pid" >/dev/null; then
    echo "netns-cluster: replica $i did not start; last lines of $state/replica-$i.log:" >&2
    tail -n 5 "$state/replica-$i.log" >&2
    kill -9 "$pid" 2>/dev/null || true
    return 1
  fi
}

do_down() {
  local ns pids t
  for ns in $(our_namespaces); do
    pids=$(pids_in "$ns")
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  done
  t=$((SECONDS + STOP_GRACE_S))
  for ns in $(our_namespaces); do
    while [ -n "$(pids_in "$ns")" ] && [ $SECONDS -lt $t ]; do sleep 0.1; done
    pids=$(pids_in "$ns")
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  done
  # Deleting a namespace destroys its veth ends (and so their peers) and the bridge in it.
  for ns in $(our_namespaces); do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -z "$(pids_in "$ns")" ] && break
      sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -z "${state:-}" ] || rm -f "$state"/*.pid 2>/dev/null || true
  [ -z "$(our_namespaces)" ] || die "could not delete: $(our_namespaces | xargs)"
}

# One namespace on the bridge: veth pair, address $2, lo and eth0 up.
add_host() {
  local ns=$1 addr=$2 port=$3
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$br_ns" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$br_ns" link set "$port" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

cmd_up() {
  local port=2049 size=256M i hosts=() ready
  names "${1:-}"
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --port) port=${2:?}; shift 2 ;;
      --size) size=${2:?}; shift 2 ;;
      *) usage ;;
    esac
  done
  need_root
  [ -f "$cli" ] || die "$cli not found: run npm run build"
  [ -z "$(our_namespaces)" ] || die "a cluster for $dir is already up ($(our_namespaces | xargs)); run down first"
  mkdir -p "$state"
  for ((i = 0; i < REPLICAS; i++)); do hosts+=("$(replica_addr "$i")"); done
  node "$cli" init --dir "$dir" --hosts "$(IFS=,; echo "${hosts[*]}")" --size "$size" --if-missing >"$state/init.out"
  # A failure (or Ctrl-C) from here on leaves nothing behind.
  trap 'do_down' EXIT
  trap 'exit 130' INT TERM
  ip netns add "$br_ns"
  ip -n "$br_ns" link set lo up
  ip -n "$br_ns" link add br0 type bridge
  ip -n "$br_ns" link set br0 up
  for ((i = 0; i < REPLICAS; i++)); do add_host "$(replica_ns "$i")" "$(replica_addr "$i")" "p$i"; done
  add_host "$relay_ns" "$RELAY_ADDR" prelay
  for ((i = 0; i < REPLICAS; i++)); do start_replica "$i"; done
  : >"$state/relay.out"
  ip netns exec "$relay_ns" setsid node "$cli" relay --dir "$dir" --host "$RELAY_ADDR" --port "$port" \
    </dev/null >"$state/relay.out" 2>>"$state/relay.log" &
  echo $! >"$state/relay.pid"
  if ! ready=$(wait_ready "$state/relay.out" '^ready nfs://' "$(cat "$state/relay.pid")"); then
    tail -n 5 "$state/relay.log" >&2
    die "the relay did not start"
  fi
  trap - EXIT INT TERM
  echo "$ready"
  echo "clients run inside the relay namespace: $0 exec $dir relay nfs-ls -R '${ready#ready }'" >&2
}

cmd_status() {
  local i ns link
  names "${1:-}"
  need_root
  if [ "${2:-}" = --json ]; then
    exec ip netns exec "$relay_ns" node "$cli" status --dir "$dir" --json
  fi
  [ -n "$(our_namespaces)" ] || die "no cluster up for $dir"
  for ((i = 0; i < REPLICAS; i++)); do
    ns=$(replica_ns "$i")
    link=$(ip -n "$br_ns" -br link show "p$i" 2>/dev/null | awk '{print $2}')
    echo "replica $i  $ns  $(replica_addr "$i")  link ${link:-missing}  pids $(pids_in "$ns" | xargs)"
  done
  echo "relay      $relay_ns  $RELAY_ADDR  pids $(pids_in "$relay_ns" | xargs)"
  exec ip netns exec "$relay_ns" node "$cli" status --dir "$dir"
}

set_link() {
  names "${1:-}"
  replica_id "${2:-}"
  need_root
  need_up
  ip -n "$br_ns" link set "p$2" "$3"
}

cmd_kill() {
  local ns pids
  names "${1:-}"
  replica_id "${2:-}"
  need_root
  need_up
  ns=$(replica_ns "$2")
  pids=$(pids_in "$ns")
  [ -n "$pids" ] || die "replica $2 is not running"
  # shellcheck disable=SC2086
  kill -KILL $pids
  for _ in $(seq 1 50); do
    [ -z "$(pids_in "$ns")" ] && return 0
    sleep 0.1
  done
  die "replica $2 survived kill -9"
}

cmd_exec() {
  local ns
  names "${1:-}"
  need_root
  case ${2:-} in
    relay) ns=$relay_ns ;;
    *) replica_id "${2:-}" && ns=$(replica_ns "$2") ;;
  esac
  shift 2
  [ $# -gt 0 ] || usage
  exec ip netns exec "$ns" "$@"
}

cmd_check() {
  local probe=bfsnc-probe-$$
  need_root
  ip netns add "$probe" 2>/dev/null || die "cannot create a network namespace here"
  ip netns del "$probe"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) names "${2:-}"; need_root; do_down ;;
  down-all)
    # After a run killed before its own clean-up (its DIR unknown): every bfsnc-TAG- prefix.
    need_root
    for prefix in $(ip netns list | awk '{print $1}' | sed -n 's/^\(bfsnc-[0-9a-f]\{8\}\)-.*/\1/p' | sort -u); do
      do_down
    done
    ;;
  link-down) set_link "${2:-}" "${3:-}" down ;;
  link-up) set_link "${2:-}" "${3:-}" up ;;
  kill) cmd_kill "${2:-}" "${3:-}" ;;
  start) names "${2:-}"; replica_id "${3:-}"; need_root; need_up; start_replica "$3" ;;
  exec) shift; cmd_exec "$@" ;;
  status) cmd_status "${2:-}" "${3:-}" ;;
  check) cmd_check ;;
  *) usage ;;
esac
