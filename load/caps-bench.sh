#!/usr/bin/env bash
# The hostile-client figures of BENCHMARKS.md (issue 12): other sessions' ping latency while one
# session floods invalid frames, and server memory while 1,000 sessions stop reading. Release
# builds in $BIN_DIR (default $CARGO_TARGET_DIR/release); a fresh SQLite server per line.
set -u
B=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
L=$B/switchboard-load
LIMITS="--rate-limit-per-minute 100000000 --registrations-per-ip-per-hour 1000000 --login-failures-per-ip 1000000 --login-failures-per-account 1000000 --ws-rate-limit-per-minute 100000000 --ws-free-per-minute 100000000 --starting-credits 1000000000 --ws-max-sessions-per-user 10000 --ws-max-per-ip 10000000 --ws-upgrades-per-ip-per-minute 100000000"
PORT=18521
U=http://127.0.0.1:$PORT
start() { DIR=$(mktemp -d); MALLOC_ARENA_MAX=2 $B/switchboard --bind 127.0.0.1:$PORT --data-dir $DIR $LIMITS "$@" > $DIR/log 2>&1 & PID=$!
  for _ in $(seq 1 100); do curl -sf $U/healthz >/dev/null && break; sleep 0.1; done; }
stop() { kill $PID; wait $PID 2>/dev/null; rm -rf $DIR; }
echo "### $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2; do
  echo "## round $round: ping 1000 sessions x 10/s, quiet"; start; $L ping --url $U --sessions 1000 --users 20 --seconds 15 --interval-ms 100 --server-pid $PID 2>/dev/null; stop
  echo "## round $round: ping 1000 sessions x 10/s, one session flooding 10,000 invalid frames/s"; start; $L ping --url $U --sessions 1000 --users 20 --seconds 15 --interval-ms 100 --flood 10000 --server-pid $PID 2>/dev/null; stop
done
echo "## 1000 sessions stop reading (20 messages of 500 words each), default 1 MiB outbound budget"; start; $L slow-readers --url $U --sessions 1000 --users 100 --seconds 20 --server-pid $PID 2>/dev/null; grep -c "slow" $DIR/log; stop
echo "## the same with --ws-outbound-bytes 262144"; start --ws-outbound-bytes 262144; $L slow-readers --url $U --sessions 1000 --users 100 --seconds 20 --server-pid $PID 2>/dev/null; stop
echo "### done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
