#!/usr/bin/env bash
# load/compare.sh: Switchboard side by side with a bare WebSocket echo server (the ceiling) and
# Centrifugo v6.9.1 (the anchor), in one run on this machine, with the same session counts for
# all three: authenticated connects/s, round trips/s and idle memory per connection.
#
# All three servers start at once on loopback. Idle memory is measured first, on each fresh
# process, one server at a time (memory freed by earlier runs would otherwise be reused without
# growing RSS). Then ROUNDS rounds each run connects and round trips against the three servers
# in turn, so background load on a shared machine falls on all three alike; the table shows each
# server's median round (by rate) and the range over the rounds.
#
# Usage (from the repository root, after `cargo build --release -p switchboard -p switchboard-load`):
#   load/compare.sh
# Settings (environment): SESSIONS (round-trip sessions, 200), USERS (20), CONNECT_LOOPS (20),
# IDLE_SESSIONS (5000), SECONDS_EACH (5), ROUNDS (3), SWITCHBOARD_BIN, LOAD_BIN, ECHO_BIN,
# CENTRIFUGO_BIN, BASE_PORT (18500: echo on it, Centrifugo on +100, Switchboard on +200),
# KEEP (1: keep the JSON reports and server logs).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
SESSIONS=${SESSIONS:-200}
USERS=${USERS:-20}
CONNECT_LOOPS=${CONNECT_LOOPS:-20}
IDLE_SESSIONS=${IDLE_SESSIONS:-5000}
SECONDS_EACH=${SECONDS_EACH:-5}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-18500}
SWITCHBOARD_BIN=${SWITCHBOARD_BIN:-$TARGET_DIR/release/switchboard}
LOAD_BIN=${LOAD_BIN:-$TARGET_DIR/release/switchboard-load}
ECHO_BIN=${ECHO_BIN:-$TARGET_DIR/release/switchboard-echo}
CENTRIFUGO_VERSION=v6.9.1
CENTRIFUGO_BIN=${CENTRIFUGO_BIN:-$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/centrifugo}
HMAC_SECRET=switchboard-load-centrifugo-secret

WORK=$(mktemp -d)
declare -A PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    # Wait for them (each is a child of this script) so none outlives the run.
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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

# (a) The ceiling: tokio-tungstenite echoing text frames, no auth, no JSON.
ECHO_URL="http://127.0.0.1:$BASE_PORT"
"$ECHO_BIN" --bind "127.0.0.1:$BASE_PORT" >"$WORK/echo-server.log" 2>&1 &
PIDS[echo]=$!
wait_for_port "$BASE_PORT"

# (b) Centrifugo: HMAC JWT connect token; namespace "load" whose channels a client may subscribe
# to and publish in, so each publish comes back to its own subscriber as a round trip.
CENTRIFUGO_PORT=$((BASE_PORT + 100))
CENTRIFUGO_ARGS="--url http://127.0.0.1:$CENTRIFUGO_PORT --hmac-secret $HMAC_SECRET"
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
    PIDS[centrifugo]=$!
    wait_for_port "$CENTRIFUGO_PORT"
    CENTRIFUGO_NOTE="module $(go version -m "$CENTRIFUGO_BIN" 2>/dev/null | awk '$1 == "mod" {print $2, $3}')"
fi

# (c) Switchboard, with its limits raised so the load is not refused.
SWITCHBOARD_PORT=$((BASE_PORT + 200))
SWITCHBOARD_URL="http://127.0.0.1:$SWITCHBOARD_PORT"
"$SWITCHBOARD_BIN" --bind "127.0.0.1:$SWITCHBOARD_PORT" --data-dir "$WORK/switchboard-data" \
    --rate-limit-per-minute 100000000 --registrations-per-ip-per-hour 1000000 \
    --login-failures-per-ip 1000000 --login-failures-per-account 1000000 \
    --ws-rate-limit-per-minute 100000000 --ws-free-per-minute 100000000 \
    --starting-credits 1000000000 --ws-max-sessions-per-user 10000 --ws-max-per-ip 10000000 --ws-upgrades-per-ip-per-minute 100000000 >"$WORK/switchboard-server.log" 2>&1 &
PIDS[switchboard]=$!
wait_for_port "$SWITCHBOARD_PORT"

# The load tool's subcommand for each measurement of each server.
declare -A COMMAND=(
    [echo-idle]="idle --raw --url $ECHO_URL"
    [echo-connect]="connect --raw --url $ECHO_URL"
    [echo-ping]="ping --raw --url $ECHO_URL"
    [centrifugo-idle]="centrifugo-idle $CENTRIFUGO_ARGS"
    [centrifugo-connect]="centrifugo-connect $CENTRIFUGO_ARGS"
    [centrifugo-ping]="centrifugo-ping $CENTRIFUGO_ARGS"
    [switchboard-idle]="idle --url $SWITCHBOARD_URL"
    [switchboard-connect]="connect --url $SWITCHBOARD_URL"
    [switchboard-ping]="ping --url $SWITCHBOARD_URL"
)
declare -A COUNT=([idle]=$IDLE_SESSIONS [connect]=$CONNECT_LOOPS [ping]=$SESSIONS)

# run SERVER KIND OUTPUT: one measurement, its JSON report in $WORK/OUTPUT.json.
run() {
    local server=$1 kind=$2 output=$3
    [ -n "${PIDS[$server]:-}" ] || return 0
    say "$output: ${COUNT[$kind]} sessions"
    # shellcheck disable=SC2086 # the command is a list of words on purpose
    "$LOAD_BIN" ${COMMAND[$server-$kind]} --sessions "${COUNT[$kind]}" --users "$USERS" \
        --seconds "$SECONDS_EACH" --server-pid "${PIDS[$server]}" --json \
        >"$WORK/$output.json" 2>"$WORK/$output.log" || say "$output failed: $(tail -1 "$WORK/$output.log")"
}

SERVERS="echo centrifugo switchboard"
for server in $SERVERS; do run "$server" idle "$server-idle"; done
for round in $(seq 1 "$ROUNDS"); do
    for server in $SERVERS; do run "$server" connect "$server-connect-$round"; done
    for server in $SERVERS; do run "$server" ping "$server-ping-$round"; done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$WORK" "$ROUNDS" "$CENTRIFUGO_NOTE" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" <<'EOF'
import glob, json, os, sys

work, rounds, centrifugo_note, load_before, load_after, cores = sys.argv[1:7]

def read(path):
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as file:
        return json.load(file)

def rate(report):
    return report["operations"][0]["rate_per_second"]

def median_round(name, kind):
    """The round with the median rate, and the lowest and highest rate over the rounds."""
    reports = [r for r in (read(p) for p in glob.glob(os.path.join(work, f"{name}-{kind}-*.json"))) if r]
    if not reports:
        return None, None
    reports.sort(key=rate)
    return reports[(len(reports) - 1) // 2], (rate(reports[0]), rate(reports[-1]))

def figures(name):
    (connect, connect_range), (ping, ping_range) = median_round(name, "connect"), median_round(name, "ping")
    idle = read(os.path.join(work, f"{name}-idle.json"))
    first = lambda report: report["operations"][0] if report else None
    rows = {
        "connects/s": rate(connect) if connect else None,
        "connect p99 ms": first(connect)["latency_ms"]["p99"] if connect else None,
        "round trips/s": rate(ping) if ping else None,
        "round trip p50 ms": first(ping)["latency_ms"]["p50"] if ping else None,
        "round trip p99 ms": first(ping)["latency_ms"]["p99"] if ping else None,
        "server CPU % during round trips": (ping["server"] or {}).get("cpu_percent_of_one_core") if ping else None,
        "load tool CPU % during round trips": ping["load_tool_cpu_percent_of_one_core"] if ping else None,
        "idle bytes per connection": idle["figures"].get("server_rss_per_session_bytes") if idle else None,
    }
    reports = [read(p) for p in glob.glob(os.path.join(work, f"{name}-*.json"))]
    rows["failures (all runs)"] = sum(op["failed"] for r in reports if r for op in r["operations"]) if any(reports) else None
    return rows, {"connects/s": connect_range, "round trips/s": ping_range}

names = ["echo", "centrifugo", "switchboard"]
table = {name: figures(name) for name in names}

def cell(value):
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "n/a"

print()
print(f"{'':36}{'echo':>12}{'centrifugo':>12}{'switchboard':>13}{'sb/echo':>10}{'sb/centrifugo':>15}")
for row in table["switchboard"][0]:
    values = [table[name][0][row] for name in names]
    print(f"{row:36}" + "".join(f"{cell(v):>{w}}" for v, w in zip(values, (12, 12, 13)))
          + f"{ratio(values[2], values[0]):>10}{ratio(values[2], values[1]):>15}")
print()
for row in ("connects/s", "round trips/s"):
    spans = [table[name][1][row] for name in names]
    text = ", ".join(f"{name} {cell(span[0])}-{cell(span[1])}" if span else f"{name} n/a" for name, span in zip(names, spans))
    print(f"{row} over {rounds} rounds (median shown above): {text}")
print()
print("round trip = echo: any text frame echoed; centrifugo: publish -> own publication on the")
print("client's own channel; switchboard: ping -> pong. connect = open + auth + close (echo: no auth).")
print("Higher is better for /s rows; lower is better for ms, CPU and bytes rows.")
print(f"centrifugo: {centrifugo_note}")
print(f"machine: {cores} cores; load average {load_before} before, {load_after} after (client and servers share the cores)")
EOF
