#!/usr/bin/env bash
# Every load figure of BENCHMARKS.md (2026-12-01 section) in one run. Release builds of the
# workspace in $BIN_DIR (default target/release); the FerretDB line needs a MongoDB-wire server at
# $MONGO_URI. Servers: SQLite unless noted, abuse limits raised, one fresh server per line.
set -u
B=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
MONGO=${MONGO_URI:-mongodb://127.0.0.1:27017/}
L=$B/switchboard-load
LIMITS="--rate-limit-per-minute 100000000 --registrations-per-ip-per-hour 1000000 --login-failures-per-ip 1000000 --login-failures-per-account 1000000 --ws-rate-limit-per-minute 100000000 --ws-free-per-minute 100000000 --starting-credits 1000000000 --ws-max-sessions-per-user 10000 --ws-max-per-ip 10000000 --ws-upgrades-per-ip-per-minute 100000000"
PORT=18501
start() { # extra args...
  DIR=$(mktemp -d); $B/switchboard --bind 127.0.0.1:$PORT --data-dir $DIR $LIMITS "$@" > $DIR/log 2>&1 & PID=$!
  for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done; }
stop() { kill $PID; wait $PID 2>/dev/null; rm -rf $DIR; }
U=http://127.0.0.1:$PORT
echo "### $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## chat saturation, 1000 sessions / 100 users (SQLite)"; start; $L chat --url $U --sessions 1000 --users 100 --seconds 20 --server-pid $PID 2>/dev/null; stop
echo "## chat saturation, 1000 sessions / 1000 users (SQLite)"; start; $L chat --url $U --sessions 1000 --users 1000 --seconds 20 --server-pid $PID 2>/dev/null; stop
echo "## chat offered 2000/s (1000 sessions / 100 users, every 500 ms)"; start; $L chat --url $U --sessions 1000 --users 100 --seconds 20 --interval-ms 500 --server-pid $PID 2>/dev/null; stop
echo "## chat saturation on FerretDB, 1000 sessions / 100 users"; start --mongodb-uri $MONGO --mongodb-db bench_$RANDOM; $L chat --url $U --sessions 1000 --users 100 --seconds 20 --server-pid $PID 2>/dev/null; stop
echo "## ping 1000 sessions x 10/s"; start; $L ping --url $U --sessions 1000 --users 20 --seconds 15 --interval-ms 100 --server-pid $PID 2>/dev/null; stop
echo "## ping saturation 1000 sessions"; start; $L ping --url $U --sessions 1000 --users 20 --seconds 15 --server-pid $PID 2>/dev/null; stop
echo "## echo ping saturation 1000 sessions"; $B/switchboard-echo --bind 127.0.0.1:$PORT > /dev/null 2>&1 & EPID=$!; sleep 0.5; $L ping --raw --url $U --sessions 1000 --seconds 15 --server-pid $EPID 2>/dev/null; kill $EPID; wait $EPID 2>/dev/null
echo "## connect"; start; $L connect --url $U --sessions 50 --seconds 15 --server-pid $PID 2>/dev/null; stop
echo "## fanout"; start; $L fanout --url $U --sessions 1000 --seconds 15 --server-pid $PID 2>/dev/null; stop
echo "## presence storm"; start --admin-email a@example.com --admin-password violet-harbour-lantern-42; $L fanout --presence --url $U --users 200 --hold-ms 100 --seconds 15 --server-pid $PID 2>/dev/null; stop
echo "## ping p99 quiet vs during a login storm (1000 sessions x 10/s)"; start
$L ping --url $U --sessions 1000 --users 20 --seconds 10 --interval-ms 100 2>/dev/null | grep -A1 "round trips"
( $L login --url $U --sessions 16 --seconds 16 2>/dev/null | grep -A1 "logins" ) & LG=$!; sleep 3
$L ping --url $U --sessions 1000 --users 20 --seconds 10 --interval-ms 100 2>/dev/null | grep -A1 "round trips"; wait $LG; stop
echo "## idle 19000 sessions / 20 users, default malloc"; start; $L idle --url $U --sessions 19000 --users 20 --server-pid $PID 2>/dev/null; stop
echo "## idle 19000 sessions / 20 users, MALLOC_ARENA_MAX=2"; DIR=$(mktemp -d); MALLOC_ARENA_MAX=2 $B/switchboard --bind 127.0.0.1:$PORT --data-dir $DIR $LIMITS > $DIR/log 2>&1 & PID=$!; sleep 1; $L idle --url $U --sessions 19000 --users 20 --server-pid $PID 2>/dev/null; stop
echo "## echo idle 19000"; $B/switchboard-echo --bind 127.0.0.1:$PORT > /dev/null 2>&1 & EPID=$!; sleep 0.5; $L idle --raw --url $U --sessions 19000 --server-pid $EPID 2>/dev/null; kill $EPID; wait $EPID 2>/dev/null
echo "## guard"; start; $L guard --url $U 2>/dev/null; stop
echo "### done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
