#!/usr/bin/env bash
# Memory soak (issue 17): SUBS subscribers (default 2000), STALL_PCT% of them
# stalled (never reading), a steady publish RATE (msg/s) of SIZE-byte events
# for SOAK_SECONDS (default 120); the server's RSS every second into
# OUT/rss.csv; at the end /metrics (drops) and the server's exit (on an ASan
# build, LeakSanitizer's report). Usage: bench/soak/run.sh [BIN] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/flowcast}
OUT=${2:-build/soak}
SUBS=${SUBS:-2000} STALL_PCT=${STALL_PCT:-10} RATE=${RATE:-100} SIZE=${SIZE:-1000} SECONDS_RUN=${SOAK_SECONDS:-120}
CHANNELS=${CHANNELS:-10} QUEUE=${QUEUE:-256K}
STALLED=$((SUBS * STALL_PCT / 100)) READERS=$((SUBS - STALLED))
mkdir -p "$OUT"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$BIN" serve --open --listen 127.0.0.1:$PORT --data "$DATA" --storage memory \
  --queue-bytes "$QUEUE" --max-connections-per-ip 0 --log-level warn 2>"$OUT/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
python3 bench/soak/stall.py $PORT $STALLED $CHANNELS soak. >"$OUT/stall.log" 2>&1 &
STALL=$!
sleep 2
echo "second,rss_kb" >"$OUT/rss.csv"
( for s in $(seq 0 $((SECONDS_RUN + 15))); do
    echo "$s,$(awk '/^VmRSS/{print $2}' /proc/$PID/status 2>/dev/null)" >>"$OUT/rss.csv"; sleep 1
  done ) &
SAMPLER=$!
build/fcload --url http://127.0.0.1:$PORT --subs $READERS --channels $CHANNELS --channel-prefix soak. \
  --messages $((RATE * SECONDS_RUN)) --rate $RATE --size $SIZE --timeout $((SECONDS_RUN + 60)) --drain 5 \
  --server-pid $PID --quiet --json >"$OUT/fcload.json" 2>"$OUT/fcload.log" || true
curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt"
kill -TERM $STALL; wait $STALL || true
kill $SAMPLER 2>/dev/null || true
kill -TERM $PID
rc=0; wait $PID || rc=$?
rm -rf "$DATA"
echo "server exit status $rc" >>"$OUT/server.log"
python3 - "$OUT" <<'PY'
import csv, json, sys
out = sys.argv[1]
rows = [r for r in csv.DictReader(open(f'{out}/rss.csv')) if r['rss_kb']]
kb = [int(r['rss_kb']) for r in rows]
m = {l.split()[0]: l.split()[1] for l in open(f'{out}/metrics.txt') if l and not l.startswith('#') and ' ' in l}
print(f"rss MB: start {kb[0]/1024:.1f}, at 30 s {kb[min(30,len(kb)-1)]/1024:.1f}, at 60 s {kb[min(60,len(kb)-1)]/1024:.1f}, "
      f"max {max(kb)/1024:.1f}, end {kb[-1]/1024:.1f} ({len(kb)} samples)")
print('drops', m.get('flowcast_subscriber_drops_total'), 'published', m.get('flowcast_events_published_total'),
      'delivered', m.get('flowcast_events_delivered_total'))
PY
cat "$OUT/stall.log"; tail -1 "$OUT/server.log"
grep -q "LeakSanitizer" "$OUT/server.log" && { echo "LeakSanitizer reported leaks"; exit 1; }
[ "$rc" -eq 0 ]
