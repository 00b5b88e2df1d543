# Sourced by the shell tests: runs one `strata serve` on 127.0.0.1 for the
# test and stops it. Before sourcing, set STRATA (the binary), WORK (the
# test's directory, the current one) and LOG_FILES (files `fail` shows).
#
#   start_server FLAGS...   starts it (port 0, --data_dir $WORK/data), sets
#                           SERVER_PID and SERVER (host:port)
#   stop_server             SIGTERM; fails unless it exits 0 within 30 s
#   fail MESSAGE            prints MESSAGE and the logs, exits 1

SERVER_PID=""
kill_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
}
trap kill_server EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in serve.log $LOG_FILES; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

start_server() {
  rm -f "$WORK/port"
  "$STRATA" serve --listen 127.0.0.1:0 --port_file "$WORK/port" --data_dir "$WORK/data" \
    "$@" >serve.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    [ -s "$WORK/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "strata serve exited early"
    sleep 0.1
  done
  [ -s "$WORK/port" ] || fail "strata serve did not write --port_file within 30 s"
  SERVER="127.0.0.1:$(cat "$WORK/port")"
  echo "server at $SERVER"
}

stop_server() {
  local rc=0
  kill -TERM "$SERVER_PID"
  for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "strata serve did not stop within 30 s of SIGTERM"
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ "$rc" -eq 0 ] || fail "strata serve exited $rc after SIGTERM"
  grep -q "stopped" serve.log || fail "serve.log lacks 'stopped'"
}
