#!/usr/bin/env bash
# load/compare.sh: Switchboard side by side with a bare WebSocket echo server (the ceiling) and
# Centrifugo v6.9.1 (the anchor), in one run on this machine, with the same session counts for
# all three: authenticated connects/s, round trips/s and idle memory per connection. Each server
# runs alone, fresh, on loopback, and is stopped (by its PID) before the next one starts; idle
# memory is measured first on each fresh process so earlier runs' freed memory cannot hide it.
#
# Usage (from the repository root, after `cargo build --release -p switchboard -p switchboard-load`):
#   load/compare.sh
# Settings (environment): SESSIONS (ping sessions, 200), USERS (20), CONNECT_LOOPS (20),
# IDLE_SESSIONS (5000), SECONDS_EACH (5), SWITCHBOARD_BIN, LOAD_BIN, ECHO_BIN, CENTRIFUGO_BIN,
# BASE_PORT (18500: echo on it, Centrifugo on +100, Switchboard on +200), KEEP (1: keep the JSON).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
SESSIONS=${SESSIONS:-200}
USERS=${USERS:-20}
CONNECT_LOOPS=${CONNECT_LOOPS:-20}
IDLE_SESSIONS=${IDLE_SESSIONS:-5000}
SECONDS_EACH=${SECONDS_EACH:-5}
BASE_PORT=${BASE_PORT:-18500}
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$TARGET_DIR/release/switchboard}
LOAD_BIN=${LOAD_BIN:-$TARGET_DIR/release/switchboard-load}
ECHO_BIN=${ECHO_BIN:-$TARGET_DIR/release/switchboard-echo}
CENTRIFUGO_VERSION=v6.9.1
CENTRIFUGO_BIN=${CENTRIFUGO_BIN:-$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/centrifugo}
HMAC_SECRET=switchboard-load-centrifugo-secret

WORK=$(mktemp -d)
STARTED_PID=""
cleanup() {
    if [ -n "$STARTED_PID" ]; then kill "$STARTED_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "results kept in $WORK" >&2; fi
}
trap cleanup EXIT

say() { echo "compare: $*" >&2; }

# Each client and server holds one descriptor per connection, plus some to spare.
NEEDED=$((IDLE_SESSIONS + 1000))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEEDED" ]; then
    ulimit -n "$NEEDED" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
say "open-files limit $(ulimit -n); results in $WORK"
# Other work on the machine skews every figure here; the load average says how much there was.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for binary in "$LOAD_BIN" "$ECHO_BIN" "$SWITCHBOARD_BIN"; do
    if [ ! -x "$binary" ]; then
        say "missing $binary: run cargo build --release -p switchboard -p switchboard-load (or set the *_BIN variables)"
        exit 2
    fi
done

CENTRIFUGO_NOTE=""
if [ ! -x "$CENTRIFUGO_BIN" ]; then
    say "building Centrifugo $CENTRIFUGO_VERSION with go install (several minutes the first time)"
    if ! go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION" >"$WORK/centrifugo-build.log" 2>&1; then
        CENTRIFUGO_NOTE="go install failed: $(tail -1 "$WORK/centrifugo-build.log")"
        say "$CENTRIFUGO_NOTE"
    fi
fi

wait_for_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "nothing listens on port $1"
    return 1
}

stop_server() {
    kill "$STARTED_PID" 2>/dev/null || true
    wait "$STARTED_PID" 2>/dev/null || true
    STARTED_PID=""
    sleep 1
}

# measure NAME IDLE_CMD CONNECT_CMD PING_CMD: runs the three against the server in STARTED_PID.
measure() {
    local name=$1
    say "$name: idle ($IDLE_SESSIONS sessions)"
    $2 --sessions "$IDLE_SESSIONS" --users "$USERS" --seconds "$SECONDS_EACH" --server-pid "$STARTED_PID" --json \
        >"$WORK/$name-idle.json" 2>"$WORK/$name-idle.log"
    say "$name: connect ($CONNECT_LOOPS loops)"
    $3 --sessions "$CONNECT_LOOPS" --users "$USERS" --seconds "$SECONDS_EACH" --server-pid "$STARTED_PID" --json \
        >"$WORK/$name-connect.json" 2>"$WORK/$name-connect.log"
    say "$name: round trips ($SESSIONS sessions)"
    $4 --sessions "$SESSIONS" --users "$USERS" --seconds "$SECONDS_EACH" --server-pid "$STARTED_PID" --json \
        >"$WORK/$name-ping.json" 2>"$WORK/$name-ping.log"
}

# (a) The ceiling: tokio-tungstenite echoing text frames, no auth, no JSON.
ECHO_PORT=$BASE_PORT
"$ECHO_BIN" --bind "127.0.0.1:$ECHO_PORT" >"$WORK/echo-server.log" 2>&1 &
STARTED_PID=$!
wait_for_port "$ECHO_PORT"
ECHO_URL="http://127.0.0.1:$ECHO_PORT"
measure echo "$LOAD_BIN idle --raw --url $ECHO_URL" "$LOAD_BIN connect --raw --url $ECHO_URL" \
    "$LOAD_BIN ping --raw --url $ECHO_URL"
stop_server

# (b) Centrifugo: HMAC JWT connect token; namespace "load" whose channels a client may subscribe
# to and publish in, so each publish comes back to its own subscriber as a round trip.
CENTRIFUGO_PORT=$((BASE_PORT + 100))
if [ -z "$CENTRIFUGO_NOTE" ]; then
    cat >"$WORK/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $CENTRIFUGO_PORT},
  "log": {"level": "error"},
  "client": {"token": {"hmac_secret_key": "$HMAC_SECRET"}},
  "channel": {"namespaces": [{"name": "load", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}]}
}
EOF
    "$CENTRIFUGO_BIN" --config "$WORK/centrifugo.json" >"$WORK/centrifugo-server.log" 2>&1 &
    STARTED_PID=$!
    wait_for_port "$CENTRIFUGO_PORT"
    CENTRIFUGO_URL="http://127.0.0.1:$CENTRIFUGO_PORT"
    common="--url $CENTRIFUGO_URL --hmac-secret $HMAC_SECRET"
    measure centrifugo "$LOAD_BIN centrifugo-idle $common" "$LOAD_BIN centrifugo-connect $common" \
        "$LOAD_BIN centrifugo-ping $common"
    stop_server
    CENTRIFUGO_NOTE="module $(go version -m "$CENTRIFUGO_BIN" 2>/dev/null | awk '$1 == "mod" {print $2, $3}')"
fi

# (c) Switchboard, with its limits raised so the load is not refused.
SWITCHBOARD_PORT=$((BASE_PORT + 200))
"$SWITCHBOARD_BIN" --bind "127.0.0.1:$SWITCHBOARD_PORT" --data-dir "$WORK/switchboard-data" \
    --rate-limit-per-minute 100000000 --registrations-per-ip-per-hour 1000000 \
    --login-failures-per-ip 1000000 --login-failures-per-account 1000000 \
    --ws-rate-limit-per-minute 100000000 --ws-free-per-minute 100000000 \
    --starting-credits 1000000000 --ws-max-sessions-per-user 10000 >"$WORK/switchboard-server.log" 2>&1 &
STARTED_PID=$!
wait_for_port "$SWITCHBOARD_PORT"
SWITCHBOARD_URL="http://127.0.0.1:$SWITCHBOARD_PORT"
measure switchboard "$LOAD_BIN idle --url $SWITCHBOARD_URL" "$LOAD_BIN connect --url $SWITCHBOARD_URL" \
    "$LOAD_BIN ping --url $SWITCHBOARD_URL"
stop_server

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$WORK" "$CENTRIFUGO_NOTE" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" <<'EOF'
import json, os, sys

work, centrifugo_note, load_before, load_after, cores = sys.argv[1:6]

def load(name, kind):
    path = os.path.join(work, f"{name}-{kind}.json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as file:
        return json.load(file)

def operation(report, index=0):
    return report["operations"][index] if report else None

def figures(name):
    connect, ping, idle = load(name, "connect"), load(name, "ping"), load(name, "idle")
    rows = {}
    rows["connects/s"] = operation(connect)["rate_per_second"] if connect else None
    rows["connect p99 ms"] = operation(connect)["latency_ms"]["p99"] if connect else None
    rows["round trips/s"] = operation(ping)["rate_per_second"] if ping else None
    rows["round trip p50 ms"] = operation(ping)["latency_ms"]["p50"] if ping else None
    rows["round trip p99 ms"] = operation(ping)["latency_ms"]["p99"] if ping else None
    rows["server CPU % during round trips"] = (ping["server"] or {}).get("cpu_percent_of_one_core") if ping else None
    rows["load tool CPU % during round trips"] = ping["load_tool_cpu_percent_of_one_core"] if ping else None
    rows["idle bytes per connection"] = idle["figures"].get("server_rss_per_session_bytes") if idle else None
    failed = sum(op["failed"] for report in (connect, ping, idle) if report for op in report["operations"])
    rows["failures (all runs)"] = failed if any((connect, ping, idle)) else None
    return rows

names = ["echo", "centrifugo", "switchboard"]
table = {name: figures(name) for name in names}

def cell(value):
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "n/a"

print()
print(f"{'':34}{'echo':>12}{'centrifugo':>12}{'switchboard':>13}{'sb/echo':>10}{'sb/centrifugo':>15}")
for row in table["switchboard"]:
    values = [table[name][row] for name in names]
    print(f"{row:34}" + "".join(f"{cell(v):>{w}}" for v, w in zip(values, (12, 12, 13)))
          + f"{ratio(values[2], values[0]):>10}{ratio(values[2], values[1]):>15}")
print()
print("round trip = echo: any text frame echoed; centrifugo: publish -> own publication on the")
print("client's own channel; switchboard: ping -> pong. connect = open + auth + close (echo: no auth).")
print("Higher is better for /s rows; lower is better for ms, CPU and bytes rows.")
print(f"centrifugo: {centrifugo_note}")
print(f"machine: {cores} cores; load average {load_before} before, {load_after} after (client and servers share the cores)")
EOF
