#!/usr/bin/env bash
# Acknowledged publishes per second against flowcast's durable store, by
# publisher count, batch size and durability mode. Each row runs a freshly
# started server on an empty data directory; wrk (Debian package) drives
# keep-alive POSTs and counts the 201 answers.
#
#   bench/publish.sh            all rows, 10 s each
#   DURATION=5 bench/publish.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FLOWCAST_BIN:-build/flowcast}
DURATION=${DURATION:-10}
command -v wrk >/dev/null || { echo "publish.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# A wrk script posting `lines` NDJSON events per request (0: one JSON event),
# counting the non-201 answers.
script() {
  local lines=$1
  cat > "$tmp/post.lua" <<LUA
local lines = $lines
wrk.method = "POST"
if lines == 0 then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"order":1234,"status":"shipped","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
else
  wrk.headers["Content-Type"] = "application/x-ndjson"
  local t = {}
  for i = 1, lines do t[i] = '{"data":{"order":' .. i .. ',"status":"shipped","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' end
  wrk.body = table.concat(t, "\\n")
end
local bad = 0
response = function(status) if status ~= 201 then bad = bad + 1 end end
done = function(summary) io.write(string.format("REQS %d NON201 %d SECONDS %.3f\\n", summary.requests, bad, summary.duration / 1e6)) end
LUA
}

row() { # durability publishers batch
  local dur=$1 conns=$2 batch=$3 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$tmp/data"
  "$BIN" serve --listen "127.0.0.1:$port" --data "$tmp/data" --open --log-level warn --durability "$dur" \
    --retention 100 2>"$tmp/server.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  script "$batch"
  local out reqs bad secs events
  out=$(wrk -t "$(( conns < 2 ? 1 : 2 ))" -c "$conns" -d "${DURATION}s" -s "$tmp/post.lua" \
        "http://127.0.0.1:$port/api/v1/channels/bench.orders/events" | grep '^REQS')
  read -r _ reqs _ bad _ secs <<<"$out"
  events=$(( (reqs - bad) * (batch == 0 ? 1 : batch) ))
  kill -TERM "$pid"; wait "$pid" || true
  printf '| %s | %d | %s | %d | %d | %.0f |\n' "$dur" "$conns" "$([ "$batch" = 0 ] && echo single || echo "ndjson x$batch")" \
    "$(( reqs - bad ))" "$bad" "$(echo "$events / $secs" | bc -l)"
}

echo "| durability | publishers | body | acked requests | refused | acked events/s |"
echo "|---|---|---|---|---|---|"
for dur in crash power; do
  for c in 1 8 64; do row "$dur" "$c" 0; done
  row "$dur" 8 100
  row "$dur" 64 100
done
