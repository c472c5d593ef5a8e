#!/usr/bin/env bash
# `bfs bench micro` through the relay with one replica in each Byzantine mode (issue 21, Aardvark's
# attacks through BFS): for every mode, a fresh cluster of four `bfs replica` processes (one of
# them `--byzantine MODE`) and `bfs relay`, then `bfs bench micro --json`; prints one line per
# mode with getattr and setattr p50/p99 and throughput, their ratios to the fault-free run, the
# replicas' views at the end, and the peak RSS (VmHWM) of the replicas and of the relay.
#   scripts/bench-byzantine-micro.sh [MODE ...]
# Default modes: none slow-primary selective-primary flood. A primary attack (slow-primary,
# slow-primary-commit-timer, selective-primary) runs in replica 0
# (the primary of view 0), any other in replica 3. MICRO_FLAGS is passed to `bfs bench micro`
# (default: --ops 200 --seconds 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$root/packages/bfs/dist/cli.js}
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(none slow-primary selective-primary flood)
PORT=${PORT:-20690}
MICRO_FLAGS=${MICRO_FLAGS:---ops 200 --seconds 5}
work=$(mktemp -d /dev/shm/bfs-byzmicro-XXXXXX)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

uptime
base=
for mode in "${modes[@]}"; do
  rm -rf "$work/data"
  node "$CLI" init --dir "$work/data" >/dev/null
  victim=3
  case $mode in slow-primary* | selective-primary) victim=0 ;; esac
  for i in 0 1 2 3; do
    flags=()
    [ "$mode" != none ] && [ "$i" = "$victim" ] && flags=(--byzantine "$mode")
    node "$CLI" replica --dir "$work/data" --id $i "${flags[@]}" >/dev/null 2>>"$work/replicas.log" &
    pids+=($!)
  done
  node "$CLI" relay --dir "$work/data" --port "$PORT" >/dev/null 2>>"$work/relay.log" &
  pids+=($!)
  url="nfs://127.0.0.1/?nfsport=$PORT&mountport=$PORT&version=3"
  for _ in $(seq 1 150); do
    nfs-ls "nfs://127.0.0.1//?nfsport=$PORT&mountport=$PORT&version=3" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # shellcheck disable=SC2086
  json=$(node "$CLI" bench micro --url "$url" $MICRO_FLAGS --json 2>/dev/null | tail -1)
  peaks=()
  for p in "${pids[@]}"; do
    peaks+=("$(awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$p/status" 2>/dev/null || echo '?')")
  done
  views=$(node "$CLI" status --dir "$work/data" --json 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.replicas.map(r=>r.view??"-").join(","))})' || echo '?')
  stop_all
  [ "$mode" = none ] && base=$json
  MODE=$mode JSON=$json BASE=${base:-$json} VIEWS=$views PEAKS="${peaks[*]}" node -e '
    const r = JSON.parse(process.env.JSON), b = JSON.parse(process.env.BASE);
    const f = (x) => x.toFixed(2);
    const t = r.throughput, bt = b.throughput;
    console.log(
      `${process.env.MODE.padEnd(18)} getattr p50 ${f(r.latencyMs.getattr.p50)} p99 ${f(r.latencyMs.getattr.p99)} ms, ` +
        `setattr p50 ${f(r.latencyMs.setattr.p50)} p99 ${f(r.latencyMs.setattr.p99)} ms (p99 ${f(r.latencyMs.setattr.p99 / b.latencyMs.setattr.p99)}x), ` +
        `getattr ${Math.round(t.getattr)}/s (${f(t.getattr / bt.getattr)}x), setattr ${Math.round(t.setattr)}/s (${f(t.setattr / bt.setattr)}x), views ${process.env.VIEWS}, ` +
        `peak RSS MiB replicas ${process.env.PEAKS.split(" ").slice(0, 4).join(",")} relay ${process.env.PEAKS.split(" ")[4]}`,
    );'
done
