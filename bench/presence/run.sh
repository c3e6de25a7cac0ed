#!/usr/bin/env bash
# Presence (issue 21): what it costs a subscriber, and a join/leave storm.
#
# For each mode (off: no presence rule; on: `--presence bench.*`; watch: the
# same with a joinLeave watcher), a fresh
# `flowcast serve --open --threads 1 --storage memory` takes SUBS idle SSE
# subscribers of one channel from fcload (--idle), which reports the
# connect phase (connect rate) and the server's RSS per subscriber. In the
# `watch` mode a watcher (curl) follows the channel with ?joinLeave=1 and counts
# the flowcast.join and flowcast.leave notices: the storm is SUBS subscribers
# joining at once and leaving at once when fcload exits; it records how long
# after fcload's exit the last leave reached the watcher, and the server's
# CPU for the whole storm.
#
# Environment: SUBS (default 10000; one process holds under the 20,000 open
# files), HOLD (seconds held, default 3), RUNS (default 3), OUT (results
# directory, default bench/out/presence-DATE), FLOWCAST_BIN, FCLOAD_BIN.
# Bounded: fcload --timeout 120, the watcher waits at most 60 s, servers are
# stopped on exit.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
FLOWCAST_BIN=${FLOWCAST_BIN:-$ROOT/build/flowcast}
FCLOAD_BIN=${FCLOAD_BIN:-$ROOT/build/fcload}
SUBS=${SUBS:-10000}
HOLD=${HOLD:-3}
RUNS=${RUNS:-3}
OUT=${OUT:-$ROOT/bench/out/presence-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SERVER=""
WATCH=""
cleanup() {
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
count() { grep -c "^event: flowcast.$1" "$2" 2>/dev/null || true; }

echo "| mode | run | connect s | connects/s | RSS per subscriber (B) | joins seen | leaves seen | last leave after exit (ms) | server CPU storm (s) |" > "$OUT/summary.md"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" >> "$OUT/summary.md"
for run in $(seq 1 "$RUNS"); do
  for mode in off on watch; do
    P=$(port)
    DATA=$(mktemp -d)
    args=(serve --open --listen "127.0.0.1:$P" --data "$DATA" --threads 1 --storage memory --log-level warn --max-connections-per-ip 0)
    # A joinLeave watcher of a storm takes SUBS notices at once (about 220 bytes each):
    # its queue must hold them, or it is dropped as slow (see RESULTS.md).
    [ "$mode" != off ] && args+=(--presence "bench.*" --queue-bytes 16M)
    [ "$mode" = off ] && args+=(--queue-bytes 16M)
    "$FLOWCAST_BIN" "${args[@]}" 2> "$OUT/server.$mode.$run.log" &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$P/healthz" > /dev/null && break; sleep 0.1; done
    W="$OUT/watch.$mode.$run.txt"
    : > "$W"
    if [ "$mode" = watch ]; then
      curl -sN "http://127.0.0.1:$P/api/v1/channels/bench.0/sse?joinLeave=1" > "$W" &
      WATCH=$!
      sleep 0.3
    fi
    cpu0=$(cpu_s "$SERVER")
    "$FCLOAD_BIN" --url "http://127.0.0.1:$P" --idle --subs "$SUBS" --hold "$HOLD" --server-pid "$SERVER" \
      --timeout 120 --json --quiet > "$OUT/fcload.$mode.$run.json" 2> /dev/null
    exited=$(date +%s%3N)
    leaves=0 after=""
    if [ "$mode" = watch ]; then
      for _ in $(seq 600); do
        leaves=$(count leave "$W")
        [ "$leaves" -ge "$SUBS" ] && break
        sleep 0.1
      done
      after=$(( $(date +%s%3N) - exited ))
    fi
    cpu=$(awk -v a="$cpu0" -v b="$(cpu_s "$SERVER")" 'BEGIN{printf "%.2f", b - a}')
    read -r cs rss < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j.get("connect_s"), j.get("server_rss_per_sub_bytes"))' "$OUT/fcload.$mode.$run.json")
    rate=$(awk -v n="$SUBS" -v s="$cs" 'BEGIN{printf "%.0f", (s + 0 > 0) ? n / s : 0}')
    echo "| $mode | $run | $cs | $rate | $rss | $(count join "$W") | $leaves | ${after:--} | $cpu |" >> "$OUT/summary.md"
    cleanup
    SERVER="" WATCH=""
    rm -rf "$DATA"
  done
done
cat "$OUT/summary.md"
