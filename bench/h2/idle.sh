#!/usr/bin/env bash
# Server memory per idle SSE subscriber over HTTP/1.1 and HTTP/2, side by
# side in one run, with C clients, flowcast next to Nchan (issue 18).
#
# Usage: bench/h2/idle.sh
#        SUBS=2000 ROUNDS=1 ROWS=fc-h1,fc-h2c bench/h2/idle.sh   (quick try)
#
# Builds nothing: expects build/flowcast, build/fcload and build/fcfloor
# (`make build`), h2load (Debian nghttp2-client, in scripts/deps.sh), curl,
# jq and openssl. The Nchan rows need nginx and its Nchan module:
#   apt-get install -y nginx libnginx-mod-nchan
# (installed here with apt-get when missing and running as root, as
# bench/run-all does; not in scripts/deps.sh, which is for build and tests).
#
# Rows (every one on a freshly started server on a free 127.0.0.1 port; all
# rows once per round, ROUNDS rounds, so drift between rounds shows):
#   fc-h1      flowcast, HTTP/1.1: fcload --idle --subs SUBS --hold HOLD, one
#              connection per subscriber; exactly bench/run.sh's idle scenario
#              (flowcast serve --open --log-level warn --max-connections-per-ip 0)
#   nchan-h1   nginx + Nchan (bench/nchan/start, 2 workers), HTTP/1.1: the same
#              fcload run on /sub/%s, as bench/run-all drives it
#   floor      fcfloor (bench/floor), HTTP/1.1: the same fcload run on /sub/%s:
#              the least an SSE server holds (not a competitor)
#   fc-h2c     flowcast --h2c --h2-max-streams PER_CONN: h2load with prior
#              knowledge, SUBS streams, PER_CONN per connection (all of a
#              connection's streams at once), each a GET of
#              /api/v1/channels/bench/sse?replay=0
#   nchan-h2c  nginx + Nchan, `listen ... http2` (h2c), http2_max_concurrent_streams
#              PER_CONN: the same h2load run on /sub/bench
#   fc-h2      flowcast over TLS (--tls-cert/--tls-key, a throw-away CA and
#              P-256 certificate made with openssl): h2load over https, h2 by ALPN
#   nchan-h2   nginx + Nchan behind nginx's own TLS (`listen ... ssl http2`)
#
# What is measured: the server's RSS (VmRSS, /proc/PID/statm; for nginx summed
# over the master and its workers) before any subscriber connects and at the
# end of a HOLD-second hold with all of them connected, divided by SUBS. The
# fcload rows take both samples inside fcload (--server-pid), the h2load rows
# here: h2load runs in the background (SSE responses never end), the script
# waits until the server counts SUBS subscribers (flowcast's /metrics gauge
# flowcast_subscribers, Nchan's nchan_stub_status "subscribers:"), holds HOLD
# seconds, checks the count again, samples RSS, then stops h2load. A row where
# not every subscriber connected (fcload: conn_ok < SUBS; h2: the count never
# reached SUBS or fell during the hold) is marked INVALID and left out of the
# medians and ratios.
#
# Environment:
#   SUBS          idle subscribers per row (default 10000; at most 18000: the
#                 hard open-files limit here is 20000 per process)
#   PER_CONN      streams per HTTP/2 connection (default 1000; connections =
#                 ceil(SUBS / PER_CONN))
#   ROUNDS        rounds (default 2)
#   HOLD          seconds held before the RSS sample (default 20: past flowcast's
#                 first SSE keepalive round, every 15 s, whose passing memory is
#                 part of what a subscriber that stays costs; run.sh holds 5)
#   H2_STAGGER_MS h2 rows: h2load opens one connection every this many ms
#                 (h2load -r 1 --rate-period; default 200, as fcload paces its
#                 connects); 0: all connections at once, whose connect burst
#                 leaves a larger and noisier RSS high-water on the server
#   ROWS          comma-separated rows (default: all, in the order above)
#   IDLE_OUT      raw results directory (default bench/out/h2-idle-DATE)
#   FLOWCAST_ARGS extra `flowcast serve` options for every flowcast row
#   FLOWCAST_BIN, FCLOAD_BIN, FLOOR_BIN, H2LOAD_BIN   binaries (default
#                 build/flowcast, build/fcload, build/fcfloor, h2load)
#
# Output: progress on stderr; on stdout (and in $IDLE_OUT/table.md) a
# markdown table, one line per row and round, then the medians per row with
# each flowcast row divided by Nchan's row of the same transport, and the
# absolute comparison with 820 B (run.sh's HTTP/1.1 figure in bench/RESULTS.md).
# Raw files per run NAME (e.g. r1.fc-h2c): NAME.cmd (exact commands),
# NAME.server.log, NAME.load.txt (fcload's or h2load's output), NAME.fcload
# (fcload's JSON report), NAME.json (the row's figures; all of them also in
# results.jsonl).
#
# Bounded: every start, connect and stop has a limit (servers 10-30 s,
# fcload --timeout 60 inside an outer timeout, h2load inside `timeout`), so
# the script ends by itself; an EXIT trap stops every process it started,
# on errors and Ctrl-C too. Exit status: 0 if every row was valid, 1 if not,
# 2 on bad usage, 130 on Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
FLOWCAST_BIN=${FLOWCAST_BIN:-$ROOT/build/flowcast}
FCLOAD_BIN=${FCLOAD_BIN:-$ROOT/build/fcload}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/build/fcfloor}
H2LOAD_BIN=${H2LOAD_BIN:-$(command -v h2load || echo /usr/bin/h2load)}
NCHAN_DIR=$ROOT/bench/nchan
SUBS=${SUBS:-10000}
PER_CONN=${PER_CONN:-1000}
ROUNDS=${ROUNDS:-2}
HOLD=${HOLD:-20}
H2_STAGGER_MS=${H2_STAGGER_MS:-200}
ALL_ROWS=fc-h1,nchan-h1,floor,fc-h2c,nchan-h2c,fc-h2,nchan-h2
ROWS=${ROWS:-$ALL_ROWS}
OUT=${IDLE_OUT:-$ROOT/bench/out/h2-idle-$(date +%Y%m%d-%H%M%S)}
FC_H2_PATH='/api/v1/channels/bench/sse?replay=0'
NCHAN_H2_PATH='/sub/bench'
TARGET_B=820                 # bench/RESULTS.md: run.sh idle, HTTP/1.1
FCLOAD_TIMEOUT=60            # fcload --timeout (its own hard limit)
CONNECT_TIMEOUT=60           # h2 rows: seconds for every stream to be counted (+ stagger)
PAGE=$(getconf PAGESIZE)

log() { echo "h2/idle: $*" >&2; }
usage() { log "$*"; exit 2; }

# ---------------------------------------------------------------- checks
if ! [[ $SUBS =~ ^[1-9][0-9]*$ ]] || [ "$SUBS" -gt 18000 ]; then usage "SUBS must be 1-18000 (open-files limit)"; fi
[[ $PER_CONN =~ ^[1-9][0-9]*$ ]] || usage "PER_CONN must be a positive integer"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage "ROUNDS must be a positive integer"
[[ $HOLD =~ ^[0-9]+$ ]] || usage "HOLD must be a number of seconds"
[[ $H2_STAGGER_MS =~ ^[0-9]+$ ]] || usage "H2_STAGGER_MS must be a number of milliseconds"
CONNS=$(((SUBS + PER_CONN - 1) / PER_CONN))
CONNECT_TIMEOUT=$((CONNECT_TIMEOUT + CONNS * H2_STAGGER_MS / 1000))
IFS=, read -r -a rows <<<"$ROWS"
need_nchan=0 need_h2=0 need_tls=0 need_floor=0
for r in "${rows[@]}"; do
  case $r in
    fc-h1 | fc-h2c | fc-h2) ;;
    floor) need_floor=1 ;;
    nchan-h1) need_nchan=1 ;;
    nchan-h2c | nchan-h2) need_nchan=1 ;;
    *) usage "unknown row '$r' (one of $ALL_ROWS)" ;;
  esac
  case $r in *-h2c | *-h2) need_h2=1 ;; esac
  case $r in *-h2) need_tls=1 ;; esac
done
for tool in curl jq openssl; do
  command -v "$tool" >/dev/null 2>&1 || usage "$tool not found (apt-get install -y $tool)"
done
for bin in "$FLOWCAST_BIN" "$FCLOAD_BIN"; do
  [ -x "$bin" ] || usage "$bin not found; build first (make build)"
done
if [ "$need_floor" = 1 ] && [ ! -x "$FLOOR_BIN" ]; then usage "$FLOOR_BIN not found; build first (make build)"; fi
if [ "$need_h2" = 1 ] && [ ! -x "$H2LOAD_BIN" ]; then usage "h2load not found (apt-get install -y nghttp2-client)"; fi

# nginx + Nchan from Debian, only when a Nchan row is asked for and they are
# missing (as bench/run-all does).
if [ "$need_nchan" = 1 ]; then
  missing=()
  for p in nginx libnginx-mod-nchan; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || usage "the Nchan rows need: apt-get install -y ${missing[*]} (or leave them out of ROWS)"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 900 apt-get install -y -q "${missing[@]}" >&2; then
      timeout 600 apt-get update -q >&2 || true
      timeout 900 apt-get install -y -q "${missing[@]}" >&2 || { log "apt-get install ${missing[*]} failed"; exit 1; }
    fi
  fi
fi

# Servers and fcload each hold one descriptor per subscriber.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((SUBS + 200)) ]; then
  log "warning: open-files limit is $(ulimit -n); $SUBS subscribers need about $((SUBS + 200))"
fi
mkdir -p "$OUT"
: >"$OUT/results.jsonl"

# ---------------------------------------------------------------- processes
SRV_PID=""        # flowcast or fcfloor
FC_DATA=""        # flowcast's data directory
NCHAN_PREFIX=""   # nginx's prefix, for bench/nchan/stop
SERVER_PIDS=""    # comma-separated pids whose RSS is summed
PORT=""           # the port the load goes to
STATUS_PORT=""    # Nchan's plain port (nchan_status)
LOAD_PID=""       # fcload's or h2load's `timeout`
CERT_DIR=""
CUR=""            # the current run's name (for logs)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free port in [$1, $1+$2), below the ephemeral range (32768-60999).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(($1 + RANDOM % $2))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  log "no free port in $1-$(($1 + $2 - 1))"
  return 1
}

# Its arguments as one shell command line (for the .cmd files).
words() {
  local w out=()
  for w in "$@"; do out+=("$(printf '%q' "$w")"); done
  echo "${out[*]}"
}

# curl with a short limit; -k: the throw-away certificate is not checked.
fetch() { curl -sk -m 2 "$@" 2>/dev/null || true; }

# await_up SCHEME PATH CODE: waits up to 10 s for SRV_PID to answer
# GET SCHEME://127.0.0.1:PORT/PATH with CODE.
await_up() {
  for _ in $(seq 1 100); do
    [ "$(fetch -o /dev/null -w '%{http_code}' "$1://127.0.0.1:$PORT$2")" = "$3" ] && return 0
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      log "$CUR: server exited at start; log:"
      tail -n 20 "$OUT/$CUR.server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "$CUR: server did not answer $2 with $3 within 10 s"
  return 1
}

# start_server ROW: a fresh server for ROW; sets PORT, SERVER_PIDS (and
# STATUS_PORT for Nchan). Appends the command to $OUT/$CUR.cmd.
start_server() {
  local row=$1 cmd=() env
  case $row in
    fc-*)
      PORT=$(free_port 20000 10000) || return 1
      FC_DATA=$(mktemp -d /tmp/flowcast-h2idle.XXXXXX)
      cmd=("$FLOWCAST_BIN" serve --listen "127.0.0.1:$PORT" --data "$FC_DATA" --open --log-level warn
        --max-connections-per-ip 0)
      case $row in
        fc-h2c) cmd+=(--h2c --h2-max-streams "$PER_CONN") ;;
        fc-h2) cmd+=(--tls-cert "$CERT_DIR/srv.pem" --tls-key "$CERT_DIR/srv.key" --h2-max-streams "$PER_CONN") ;;
      esac
      # shellcheck disable=SC2206  # FLOWCAST_ARGS is a list of options
      cmd+=(${FLOWCAST_ARGS:-})
      echo "# server: $(words "${cmd[@]}")" >>"$OUT/$CUR.cmd"
      "${cmd[@]}" >"$OUT/$CUR.server.log" 2>&1 &
      SRV_PID=$!
      SERVER_PIDS=$SRV_PID
      if [ "$row" = fc-h2 ]; then await_up https /healthz 200; else await_up http /healthz 200; fi
      return ;;
    floor)
      PORT=$(free_port 20000 10000) || return 1
      cmd=("$FLOOR_BIN" --listen "127.0.0.1:$PORT")
      echo "# server: $(words "${cmd[@]}")" >>"$OUT/$CUR.cmd"
      "${cmd[@]}" >"$OUT/$CUR.server.log" 2>&1 &
      SRV_PID=$!
      SERVER_PIDS=$SRV_PID
      await_up http /healthz 404   # fcfloor has no /healthz: any answer is up
      return ;;
    nchan-*)
      STATUS_PORT=$(free_port 30000 2000) || return 1
      NCHAN_PREFIX=$(mktemp -d /tmp/nchan-h2idle.XXXXXX)
      local vars=(NCHAN_PREFIX="$NCHAN_PREFIX" NCHAN_WORKERS=2)
      case $row in
        nchan-h1) PORT=$STATUS_PORT ;;
        nchan-h2c | nchan-h2)
          PORT=$(free_port 30000 2000) || return 1
          [ "$PORT" != "$STATUS_PORT" ] || { log "$CUR: port clash, try again"; return 1; }
          vars+=(NCHAN_H2_PORT="$PORT" NCHAN_H2_STREAMS="$PER_CONN")
          if [ "$row" = nchan-h2 ]; then
            vars+=(NCHAN_TLS_CERT="$CERT_DIR/srv.pem" NCHAN_TLS_KEY="$CERT_DIR/srv.key")
          fi ;;
      esac
      echo "# server: $(words "${vars[@]}" "$NCHAN_DIR/start" "$STATUS_PORT")" >>"$OUT/$CUR.cmd"
      env=$(env "${vars[@]}" timeout 30 "$NCHAN_DIR/start" "$STATUS_PORT" 2>>"$OUT/$CUR.server.log") \
        || { log "$CUR: nginx + Nchan did not start; see $OUT/$CUR.server.log"; return 1; }
      SERVER_PIDS=$(sed -n 's/^NCHAN_PIDS=//p' <<<"$env")
      [ -n "$SERVER_PIDS" ] || { log "$CUR: bench/nchan/start printed no pids"; return 1; }
      return 0 ;;
  esac
  return 1
}

# stop_pid PID SIGNAL TENTHS: sends SIGNAL, waits up to TENTHS tenths of a
# second for PID to exit, then SIGKILLs it (saying so) and reaps it.
stop_pid() {
  if kill -0 "$1" 2>/dev/null; then
    kill -"$2" "$1" 2>/dev/null || true
    for _ in $(seq 1 "$3"); do
      kill -0 "$1" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
      log "process $1 ignored SIG$2 for $(($3 / 10)) s; killing it"
      kill -KILL "$1" 2>/dev/null || true
    fi
  fi
  wait "$1" 2>/dev/null || true
}

# Stops whatever start_server started (SIGTERM, SIGKILL after 10 s).
stop_server() {
  if [ -n "$SRV_PID" ]; then
    stop_pid "$SRV_PID" TERM 100
    SRV_PID=""
  fi
  if [ -n "$FC_DATA" ]; then
    rm -rf "$FC_DATA"
    FC_DATA=""
  fi
  if [ -n "$NCHAN_PREFIX" ]; then
    if [ -n "$CUR" ] && [ -s "$NCHAN_PREFIX/error.log" ]; then
      cat "$NCHAN_PREFIX/error.log" >>"$OUT/$CUR.server.log" 2>/dev/null || true
    fi
    timeout 20 "$NCHAN_DIR/stop" "$NCHAN_PREFIX" || true
    NCHAN_PREFIX=""
  fi
  SERVER_PIDS="" PORT="" STATUS_PORT=""
}

# Stops the load tool (SIGINT, then SIGKILL after 15 s); `timeout` passes
# the signal on to fcload or h2load.
stop_load() {
  if [ -n "$LOAD_PID" ]; then
    stop_pid "$LOAD_PID" INT 150
    LOAD_PID=""
  fi
}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  stop_load
  stop_server
  if [ -n "$CERT_DIR" ]; then rm -rf "$CERT_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- measuring
# Sum of the pids' resident memory in bytes (statm's second field = VmRSS).
rss_bytes() {
  local t=0 p v
  for p in ${1//,/ }; do
    v=$(awk '{print $2}' "/proc/$p/statm" 2>/dev/null) || { log "$CUR: pid $p is gone"; return 1; }
    t=$((t + v * PAGE))
  done
  echo "$t"
}

# The server's count of SSE subscribers (flowcast's gauge, Nchan's stub
# status), or -1 when it cannot be read.
sub_count() {
  local n
  case $1 in
    fc-h2c) n=$(fetch "http://127.0.0.1:$PORT/metrics" | awk '$1 == "flowcast_subscribers" {print $2}') ;;
    fc-h2) n=$(fetch "https://127.0.0.1:$PORT/metrics" | awk '$1 == "flowcast_subscribers" {print $2}') ;;
    nchan-*) n=$(fetch "http://127.0.0.1:$STATUS_PORT/nchan_status" | awk '$1 == "subscribers:" {print $2}') ;;
  esac
  if [[ ${n:-} =~ ^[0-9]+$ ]]; then echo "$n"; else echo -1; fi
}

# Result of the current run: $OUT/$CUR.json, and a line of results.jsonl.
emit() { # connected rss_before rss_with valid note
  jq -nc --arg name "$CUR" --arg row "$ROW" --argjson round "$ROUND" --argjson subs "$SUBS" \
    --argjson conns "$ROW_CONNS" --argjson connected "$1" --argjson before "$2" --argjson with "$3" \
    --argjson valid "$4" --arg note "$5" \
    '{name: $name, row: $row, round: $round, subs: $subs, conns: $conns, connected: $connected,
      rss_before: $before, rss_with: $with, valid: $valid, note: $note,
      per_sub: (if $connected > 0 then (($with - $before) / $connected | round) else null end)}' \
    >"$OUT/$CUR.json"
  cat "$OUT/$CUR.json" >>"$OUT/results.jsonl"
}

# fcload --idle against the current server (rows fc-h1, nchan-h1, floor).
run_fcload() {
  local paths=() rc=0 cmd j ok failed before with
  case $ROW in nchan-h1 | floor) paths=(--sub-path '/sub/%s') ;; esac
  cmd=("$FCLOAD_BIN" --url "http://127.0.0.1:$PORT" "${paths[@]}" --server-pid "$SERVER_PIDS"
    --timeout "$FCLOAD_TIMEOUT" --json --label "$CUR" --idle --subs "$SUBS" --hold "$HOLD")
  echo "# load: $(words "${cmd[@]}")" >>"$OUT/$CUR.cmd"
  timeout --signal=INT --kill-after=10 $((FCLOAD_TIMEOUT + 30)) "${cmd[@]}" \
    >"$OUT/$CUR.fcload" 2>"$OUT/$CUR.load.txt" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  j=$OUT/$CUR.fcload
  if ! jq -e . "$j" >/dev/null 2>&1; then
    emit 0 0 0 false "fcload gave no report (status $rc; see $CUR.load.txt)"
    return
  fi
  ok=$(jq -r '.conn_ok // 0' "$j")
  failed=$(jq -r '.conn_failed // 0' "$j")
  before=$(jq -r '(.server_rss_before_kb // 0) * 1024' "$j")
  with=$(jq -r '(.server_rss_with_subs_kb // 0) * 1024' "$j")
  if [ "$rc" -eq 0 ] && [ "$ok" -eq "$SUBS" ] && [ "$(jq -r '.conn_dropped // 0' "$j")" -eq 0 ]; then
    emit "$ok" "$before" "$with" true ""
  else
    emit "$ok" "$before" "$with" false "fcload status $rc, $ok ok, $failed failed, $(jq -r '.conn_dropped // 0' "$j") dropped"
  fi
}

# h2load with SUBS never-ending SSE streams, PER_CONN per connection, held
# until the server counts them all, then HOLD s; RSS sampled at the end.
run_h2load() {
  local url cmd n=-1 before with deadline proto note=""
  case $ROW in
    fc-h2c) url="http://127.0.0.1:$PORT$FC_H2_PATH" ;;
    fc-h2) url="https://127.0.0.1:$PORT$FC_H2_PATH" ;;
    nchan-h2c) url="http://127.0.0.1:$PORT$NCHAN_H2_PATH" ;;
    nchan-h2) url="https://127.0.0.1:$PORT$NCHAN_H2_PATH" ;;
  esac
  # Nchan's EventSource answers 403 without this Accept; fcload sends it too.
  cmd=("$H2LOAD_BIN" -n "$SUBS" -c "$CONNS" -m "$PER_CONN" -H 'Accept: text/event-stream')
  if [ "$H2_STAGGER_MS" -gt 0 ]; then cmd+=(-r 1 --rate-period "${H2_STAGGER_MS}ms"); fi
  cmd+=("$url")
  echo "# load: $(words "${cmd[@]}")" >>"$OUT/$CUR.cmd"
  before=$(rss_bytes "$SERVER_PIDS") || { emit 0 0 0 false "server gone before the load"; return; }
  timeout --signal=INT --kill-after=10 $((CONNECT_TIMEOUT + HOLD + 30)) "${cmd[@]}" \
    >"$OUT/$CUR.load.txt" 2>&1 &
  LOAD_PID=$!
  deadline=$(($(date +%s) + CONNECT_TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 0.5
    n=$(sub_count "$ROW")
    [ "$n" -ge "$SUBS" ] && break
    kill -0 "$LOAD_PID" 2>/dev/null || { note="h2load ended early"; break; }
  done
  if [ "$n" -ge "$SUBS" ]; then
    sleep "$HOLD"
    n=$(sub_count "$ROW")
    [ "$n" -ge "$SUBS" ] || note="count fell to $n during the hold"
  elif [ -z "$note" ]; then
    note="only $n of $SUBS subscribers counted within ${CONNECT_TIMEOUT} s"
  fi
  with=$(rss_bytes "$SERVER_PIDS") || with=0
  kill -0 "$LOAD_PID" 2>/dev/null || note=${note:-"h2load ended during the hold"}
  stop_load
  # h2load names the protocol it got: h2c, or h2 by ALPN over TLS.
  proto=$(sed -n 's/^Application protocol: //p' "$OUT/$CUR.load.txt" | head -n 1)
  case $ROW in
    *-h2c) [ "$proto" = h2c ] || note=${note:-"h2load did not speak h2c (got '${proto}')"} ;;
    *-h2) [ "$proto" = h2 ] || note=${note:-"h2load did not get h2 by ALPN (got '${proto}')"} ;;
  esac
  if [ "$n" -lt 0 ]; then n=0; fi
  if [ -z "$note" ]; then
    emit "$n" "$before" "$with" true ""
  else
    emit "$n" "$before" "$with" false "$note"
  fi
  if [ "$n" -gt "$SUBS" ]; then log "$CUR: the server counts $n subscribers, more than $SUBS (others?)"; fi
}

# run_row ROUND ROW: one row on a fresh server.
run_row() {
  ROUND=$1 ROW=$2
  CUR=r$ROUND.$ROW
  : >"$OUT/$CUR.cmd"
  case $ROW in *-h2c | *-h2) ROW_CONNS=$CONNS ;; *) ROW_CONNS=$SUBS ;; esac
  if ! start_server "$ROW"; then
    stop_server
    emit 0 0 0 false "server did not start"
  else
    log "== $CUR: port $PORT, pids $SERVER_PIDS, $SUBS subscribers on $ROW_CONNS connections"
    case $ROW in
      fc-h1 | nchan-h1 | floor) run_fcload ;;
      *) run_h2load ;;
    esac
    stop_server
  fi
  log "$CUR: $(jq -r '"\(.connected)/\(.subs) connected, " + (if .valid then "\(.per_sub) B per subscriber" else "INVALID: \(.note)" end)' "$OUT/$CUR.json")"
  CUR=""
}

# ---------------------------------------------------------------- run
if [ "$need_tls" = 1 ]; then
  # A throw-away CA and a P-256 certificate for localhost and 127.0.0.1
  # (as bench/tls/common.mjs makeCert does).
  CERT_DIR=$(mktemp -d /tmp/h2idle-ca.XXXXXX)
  (
    cd "$CERT_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 1 -subj '/CN=bench CA'
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
      -subj '/CN=localhost'
    echo 'subjectAltName=DNS:localhost,IP:127.0.0.1' >ext
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out srv.pem -extfile ext
  ) >"$OUT/cert.log" 2>&1 || { log "openssl failed; see $OUT/cert.log"; exit 1; }
fi

START=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
FC_VERSION=$("$FLOWCAST_BIN" --version 2>/dev/null | head -n 1 || true)
log "$SUBS subscribers, $PER_CONN streams per HTTP/2 connection ($CONNS connections), $ROUNDS round(s), rows $ROWS; raw files in $OUT"
for round in $(seq 1 "$ROUNDS"); do
  for row in "${rows[@]}"; do
    run_row "$round" "$row"
    sleep 1
  done
done

# ---------------------------------------------------------------- report
transport() {
  case $1 in
    *-h1 | floor) echo "HTTP/1.1" ;;
    *-h2c) echo "h2c" ;;
    *-h2) echo "HTTP/2 over TLS" ;;
  esac
}
server() {
  case $1 in
    fc-*) echo flowcast ;;
    nchan-*) echo "nginx + Nchan" ;;
    floor) echo "fcfloor (floor)" ;;
  esac
}
# Median per-subscriber figure of ROW's valid runs, or nothing.
median() {
  jq -rs --arg row "$1" '[.[] | select(.row == $row and .valid) | .per_sub] | sort |
    if length == 0 then empty elif length % 2 == 1 then .[length / 2 | floor]
    else ((.[length / 2 - 1] + .[length / 2]) / 2 | round) end' "$OUT/results.jsonl"
}
ratio() { # A B: A / B with 2 decimals, or "n/a"
  if [ -n "$1" ] && [ -n "$2" ] && [ "$2" -gt 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; else echo "n/a"; fi
}
peer() { # the Nchan row of the same transport as a flowcast row
  case $1 in fc-h1) echo nchan-h1 ;; fc-h2c) echo nchan-h2c ;; fc-h2) echo nchan-h2 ;; esac
}

status=0
if jq -se 'all(.valid) | not' "$OUT/results.jsonl" >/dev/null; then status=1; fi
{
  echo "SSE idle subscribers, $SUBS per row; HTTP/2 rows: $PER_CONN streams per connection; $ROUNDS round(s);"
  echo "$START, script at commit $COMMIT, server ${FC_VERSION:-$FLOWCAST_BIN};"
  echo "RSS = VmRSS of the server's processes (nginx: master + 2 workers)."
  echo
  echo "| round | transport | server | connections | subscribers connected | RSS before (KB) | RSS with subscribers (KB) | RSS per idle subscriber (B) |"
  echo "|---|---|---|---|---|---|---|---|"
  while IFS= read -r line; do
    row=$(jq -r .row <<<"$line")
    fig=$(jq -r 'if .valid then "\(.per_sub)" else "INVALID (\(.note))" end' <<<"$line")
    jq -r --arg t "$(transport "$row")" --arg s "$(server "$row")" --arg f "$fig" \
      '"| \(.round) | \($t) | \($s) | \(.conns) | \(.connected)/\(.subs) | \(.rss_before / 1024 | round) | \(.rss_with / 1024 | round) | \($f) |"' <<<"$line"
  done <"$OUT/results.jsonl"
  echo
  echo "Median per row over its valid rounds; ratio: flowcast ÷ Nchan of the same transport."
  echo
  echo "| transport | server | connections | valid rounds | RSS per idle subscriber (B) | ÷ Nchan |"
  echo "|---|---|---|---|---|---|"
  for row in "${rows[@]}"; do
    m=$(median "$row")
    v=$(jq -rs --arg row "$row" '[.[] | select(.row == $row and .valid)] | length' "$OUT/results.jsonl")
    c=$SUBS
    case $row in *-h2c | *-h2) c=$CONNS ;; esac
    r="–"
    if [ -n "$(peer "$row")" ]; then
      if [[ ,$ROWS, == *,$(peer "$row"),* ]]; then r=$(ratio "$m" "$(median "$(peer "$row")")"); else r="n/a"; fi
    fi
    echo "| $(transport "$row") | $(server "$row") | $c | $v/$ROUNDS | ${m:-none valid} | $r |"
  done
  echo
  line="Against ${TARGET_B} B (bench/run.sh idle, HTTP/1.1, in bench/RESULTS.md):"
  for row in fc-h1 fc-h2c fc-h2; do
    [[ ,$ROWS, == *,$row,* ]] || continue
    m=$(median "$row")
    if [ -n "$m" ]; then
      if [ "$m" -lt "$TARGET_B" ]; then cmp="below"; else cmp="not below"; fi
      line+=" flowcast $(transport "$row") $m B ($(ratio "$m" "$TARGET_B"), $cmp);"
    else
      line+=" flowcast $(transport "$row") no valid figure;"
    fi
  done
  echo "${line%;}."
} | tee "$OUT/table.md"
log "raw results in $OUT"
exit "$status"
