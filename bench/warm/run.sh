#!/bin/bash
# The first read of a large channel, and what the loop's other clients feel
# meanwhile (issue 20). Fills one channel with EVENTS stored events (retention
# as large), then for each binary given, RUNS times: starts it with one loop
# (--threads 1) on a copy of that data, sends the first history read of the
# channel, and 20 ms later a /healthz; prints how long each took.
#
# usage: bench/warm/run.sh BIN [BIN...]    (env: EVENTS=500000 RUNS=3 PORT=18911)
# Bounded: each read is cut at 60 s; everything runs on 127.0.0.1.
set -euo pipefail
EVENTS=${EVENTS:-500000}
RUNS=${RUNS:-3}
PORT=${PORT:-18911}
BATCH=10000
[ $# -ge 1 ] || { sed -n 2,9p "$0"; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
printf 'retention:big = %s\n' "$EVENTS" > "$work/fc.conf"
python3 - "$BATCH" > "$work/batch.ndjson" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"data": {"i": i, "pad": "x" * 60}}))
PY

serve() { # BIN DATA
  "$1" serve --config "$work/fc.conf" --data "$2" --listen 127.0.0.1:$PORT --threads 1 --open \
    --max-body 4M --log-level warn > "$work/log" 2>&1 &
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && return; sleep 0.05; done
  echo "server did not start: $(cat "$work/log")" >&2; exit 1
}

mkdir "$work/data"
serve "$1" "$work/data"
for _ in $(seq $((EVENTS / BATCH))); do
  curl -sf -o /dev/null -H 'Content-Type: application/x-ndjson' --data-binary @"$work/batch.ndjson" \
    http://127.0.0.1:$PORT/api/v1/channels/big/events
done
kill %1; wait %1 || true

echo "| binary | run | first history read (s) | /healthz meanwhile (s) | RSS after (MB) |"
echo "|---|---|---|---|---|"
for bin in "$@"; do
  for run in $(seq "$RUNS"); do
    rm -rf "$work/copy"; cp -r "$work/data" "$work/copy"
    serve "$bin" "$work/copy"
    pid=$!
    curl -s -o /dev/null -m 60 -w '%{time_total}' \
      "http://127.0.0.1:$PORT/api/v1/channels/big/events?limit=1" > "$work/read" &
    sleep 0.02
    health=$(curl -s -o /dev/null -m 60 -w '%{time_total}' http://127.0.0.1:$PORT/healthz)
    wait %2
    rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$pid/status)
    echo "| $bin | $run | $(cat "$work/read") | $health | $rss |"
    kill $pid; wait $pid || true
  done
done
