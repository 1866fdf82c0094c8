#!/usr/bin/env bash
# The several-nodes figures of BENCHMARKS.md and docs/SCALING.md: one node against three nodes
# sharing Redis and one MongoDB, on this machine. Release builds in $BIN_DIR (default
# $CARGO_TARGET_DIR/release); a MongoDB-wire server at $MONGO_URI (FerretDB here; every node shares
# it, as a cluster must); redis-server on PATH (started here on a free port, no persistence).
set -u
B=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
MONGO=${MONGO_URI:-mongodb://127.0.0.1:27017/}
L=$B/switchboard-load
LIMITS="--rate-limit-per-minute 100000000 --registrations-per-ip-per-hour 1000000 --login-failures-per-ip 1000000 --login-failures-per-account 1000000 --ws-rate-limit-per-minute 100000000 --ws-free-per-minute 100000000 --starting-credits 1000000000 --ws-max-sessions-per-user 10000 --ws-max-per-ip 10000000 --ws-upgrades-per-ip-per-minute 100000000"
REDIS_PORT=18599
DIRS=(); PIDS=()
redis-server --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no > /dev/null 2>&1 & REDIS_PID=$!
trap 'kill "${PIDS[@]}" $REDIS_PID 2>/dev/null; wait 2>/dev/null; rm -rf "${DIRS[@]}"' EXIT
sleep 0.5
start() { # nodes store extra args...
  local n=$1 store=$2; shift 2; PIDS=(); URLS=""; DB=bench_$RANDOM
  for i in $(seq 1 "$n"); do
    local port=$((18510 + i)) dir; dir=$(mktemp -d); DIRS+=("$dir")
    local cluster=()
    [ "$n" -gt 1 ] && cluster=(--redis-url redis://127.0.0.1:$REDIS_PORT/ --node-id node-$i)
    local mongo=(); [ "$store" = mongo ] && mongo=(--mongodb-uri "$MONGO" --mongodb-db "$DB")
    MALLOC_ARENA_MAX=2 JWT_SECRET=a-secret-every-node-of-the-bench-shares-xx $B/switchboard --bind 127.0.0.1:$port --data-dir "$dir" $LIMITS "${mongo[@]}" "${cluster[@]}" "$@" > "$dir/log" 2>&1 &
    PIDS+=($!); URLS="${URLS:+$URLS,}http://127.0.0.1:$port"
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  done; }
stop() { kill "${PIDS[@]}"; wait "${PIDS[@]}" 2>/dev/null; PIDS=(); redis-cli -p $REDIS_PORT flushall > /dev/null; }
echo "### $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in 1 3; do
  echo "## $n node(s): chat saturation, 600 sessions / 60 users (FerretDB)"; start $n mongo; $L chat --url "$URLS" --sessions 600 --users 60 --seconds 20 2>/dev/null; stop
  echo "## $n node(s): chat offered 10/s, 100 sessions / 20 users (FerretDB)"; start $n mongo; $L chat --url "$URLS" --sessions 100 --users 20 --seconds 20 --interval-ms 10000 2>/dev/null; stop
  echo "## $n node(s): ping saturation, 999 sessions"; start $n mongo; $L ping --url "$URLS" --sessions 999 --users 33 --seconds 15 2>/dev/null; stop
  echo "## $n node(s): fanout, one user, 999 sessions"; start $n mongo; $L fanout --url "$URLS" --sessions 999 --seconds 15 2>/dev/null; stop
  echo "## $n node(s): fanout at 10 messages/s, one user, 99 sessions (delivery latency below saturation)"; start $n mongo; $L fanout --url "$URLS" --sessions 99 --seconds 15 --in-flight 1 --interval-ms 100 2>/dev/null; stop
done
echo "### done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
