#!/usr/bin/env bash
# Runs flowcast's core benchmark scenarios with fcload against a local server.
#
# Builds nothing: expects build/flowcast and build/fcload (`make build`).
# Every scenario gets a fresh server (fresh data directory) on a free
# loopback port, so its "RSS before subscribers" is not inflated by the
# scenario before it. The server is stopped with SIGTERM afterwards.
# Bounded in time: each scenario is capped by fcload's --timeout and an
# outer `timeout`; the whole script ends by itself.
#
# Scenarios (the core issue's figures):
#   idle    10,000 idle subscribers held 5 s: server memory per subscriber
#   fanout  1 channel x 1,000 subscribers x 2,000 messages of 100 B, 8 in
#           flight: throughput, latency, loss, server CPU per delivery
#
# Environment:
#   FCLOAD_SCENARIOS  comma-separated scenarios to run (default: idle,fanout)
#   FCLOAD_OUT        results directory (default: bench/out/<date-time>)
#   FCLOAD_PORT       server port (default: a free one in 20000-29999)
#   FCLOAD_ARGS       extra fcload options appended to every scenario
#   FLOWCAST_ARGS     extra `flowcast serve` options (e.g. "--threads 1")
#   FLOWCAST_BIN      server binary (default: build/flowcast)
#   FCLOAD_BIN        load tool binary (default: build/fcload)
#
# Output: for each scenario NAME, $FCLOAD_OUT/NAME.json (one JSON object,
# see bench/README.md), NAME.txt (fcload's progress and summary) and
# NAME.server.log (the server's log). At the end the JSON objects are
# printed on stdout, one per line (`bench/run.sh | jq .` works); progress
# goes to stderr. Exit status: 0 if every scenario ran to the end, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
FLOWCAST_BIN=${FLOWCAST_BIN:-$ROOT/build/flowcast}
FCLOAD_BIN=${FCLOAD_BIN:-$ROOT/build/fcload}
SCENARIOS=${FCLOAD_SCENARIOS:-idle,fanout}
OUT=${FCLOAD_OUT:-$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)}
FCLOAD_TIMEOUT=60          # fcload --timeout, per scenario
OUTER_TIMEOUT=90           # hard kill of fcload if it somehow overruns

for bin in "$FLOWCAST_BIN" "$FCLOAD_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin not found; build first (make build)" >&2
    exit 1
  fi
done

# Both the server and fcload hold one descriptor per subscriber.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "run.sh: warning: open-files limit is $(ulimit -n); the idle scenario needs ~10,100" >&2
fi

mkdir -p "$OUT"
SERVER_PID=""
DATA_DIR=""

# Prints the HTTP status of GET http://127.0.0.1:$1$2, or nothing.
http_status() {
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null || true
    return
  fi
  local line=""
  if exec 3<>"/dev/tcp/127.0.0.1/$1"; then
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS= read -r -t 2 line <&3 || true
    exec 3<&- 3>&-
    echo "$line" | awk '{print $2}'
  fi 2>/dev/null
}

# Prints a port in 20000-29999 that nothing listens on (below the
# ephemeral range, so fcload's own sockets cannot take it).
free_port() {
  if [ -n "${FCLOAD_PORT:-}" ]; then
    echo "$FCLOAD_PORT"
    return
  fi
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "run.sh: no free port found" >&2
  return 1
}

# Starts a fresh server on $PORT and waits (up to 10 s) for /healthz.
start_server() {
  local name=$1
  DATA_DIR=$(mktemp -d)
  # shellcheck disable=SC2086  # FLOWCAST_ARGS is a list of options
  "$FLOWCAST_BIN" serve --listen "127.0.0.1:$PORT" --data "$DATA_DIR" --open --log-level warn --max-connections-per-ip 0 ${FLOWCAST_ARGS:-} \
    >"$OUT/$name.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if [ "$(http_status "$PORT" /healthz)" = 200 ]; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "run.sh: server exited at start; log:" >&2
      tail -n 20 "$OUT/$name.server.log" >&2
      SERVER_PID=""
      return 1
    fi
    sleep 0.1
  done
  echo "run.sh: server did not answer /healthz within 10 s" >&2
  return 1
}

# Stops the server with SIGTERM (SIGKILL after 10 s) and removes its data.
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "run.sh: server ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
  if [ -n "$DATA_DIR" ]; then
    rm -rf "$DATA_DIR"
    DATA_DIR=""
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# fcload options for one scenario.
scenario_args() {
  case $1 in
    idle) echo "--idle --subs 10000 --hold 5" ;;
    fanout) echo "--subs 1000 --channels 1 --messages 2000 --size 100 --inflight 8" ;;
    *) return 1 ;;
  esac
}

# Runs one scenario against a fresh server; returns fcload's exit status.
run_scenario() {
  local name=$1 args rc=0
  args=$(scenario_args "$name") || { echo "run.sh: unknown scenario '$name'" >&2; return 2; }
  PORT=$(free_port)
  start_server "$name" || { stop_server; return 1; }
  echo "== $name: fcload $args (server pid $SERVER_PID, port $PORT)" >&2
  # JSON to NAME.json; progress and summary (stderr) to the terminal and
  # NAME.txt. With pipefail the pipeline's status is fcload's. --foreground
  # keeps fcload in our process group, so Ctrl-C reaches it (it then prints
  # a partial report and exits 3).
  # shellcheck disable=SC2086  # args are lists of options
  timeout --foreground --signal=INT --kill-after=10 "$OUTER_TIMEOUT" \
    "$FCLOAD_BIN" --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
    --timeout "$FCLOAD_TIMEOUT" --json --label "$name" $args ${FCLOAD_ARGS:-} \
    2>&1 >"$OUT/$name.json" | tee -i "$OUT/$name.txt" >&2 || rc=$?
  stop_server
  return "$rc"
}

status=0
IFS=, read -r -a names <<<"$SCENARIOS"
for name in "${names[@]}"; do
  rc=0
  run_scenario "$name" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "run.sh: scenario $name ended with status $rc" >&2
    status=1
  fi
done

# stdout: one JSON object per scenario (its "label" names the scenario).
echo "== results in $OUT" >&2
for name in "${names[@]}"; do
  if [ -s "$OUT/$name.json" ]; then cat "$OUT/$name.json"; fi
done
exit "$status"
