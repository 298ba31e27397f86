#!/usr/bin/env bash
# The agent tunnel, measured on loopback with the release binaries:
#  1. throughput of one `logs -f` stream (the fake's firehose pod) directly
#     and through the tunnel, same fake apiserver, ROUNDS alternated pairs:
#     target median ratio tunnel / direct >= 0.8;
#  2. 1,000 concurrent idle watches through one tunnel: Paddock's and the
#     agent's RSS;
#  3. 500 registered clusters with an idle agent each: Paddock's RSS
#     (target < 100 MiB).
#
#   bash benches/tunnel.sh          # MIB=1024 ROUNDS=3 WATCHES=1000 AGENTS=500
#
# WATCHES=0 or AGENTS=0 skips that part.
#
# Needs curl and python3. Builds the release binaries itself.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-1024}
ROUNDS=${ROUNDS:-3}
WATCHES=${WATCHES:-1000}
AGENTS=${AGENTS:-500}
ulimit -n 65536 2>/dev/null || true
# NO_BUILD=1 runs what target/release holds.
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
  --bin paddock --bin fake-apiserver --bin watch_memory --bin idle_agents
bin=${BIN_DIR:-target/release}
source benches/common.sh
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

"$bin/fake-apiserver" --listen 127.0.0.1:0 --token proxy-token --cert-dir "$tmp" 2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" 20 | awk '{print $NF}')
echo proxy-token > "$tmp/proxy-token"
echo 'bench-token,alice,1001,"developers"' > "$tmp/tokens.csv"
RUST_LOG="warn,paddock::serve=info" "$bin/paddock" serve --listen 127.0.0.1:0 --data-dir "$tmp/paddock" \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" --upstream-token-file "$tmp/proxy-token" \
  --token-auth-file "$tmp/tokens.csv" --authorization allow-authenticated >"$tmp/paddock.out" 2>"$tmp/paddock.log" &
paddock_pid=$!
pids+=($paddock_pid)
addr=$(wait_log "$tmp/paddock.log" "paddock listening" 20 | sed -E 's/.*addr=([0-9.:]+).*/\1/')
url="https://$addr"
ca="$tmp/paddock/tls/ca.crt"
c() { curl -sS --cacert "$ca" "$@"; }

# The bootstrap admin, with the password changed, registers clusters.
password=$(cat "$tmp/paddock/bootstrap-password")
session=$(c -H 'content-type: application/json' -d "{\"username\":\"admin\",\"password\":\"$password\"}" \
  "$url/paddock/v1/login" | json "['token']")
c -H 'content-type: application/json' -H "authorization: Bearer $session" \
  -d "{\"currentPassword\":\"$password\",\"newPassword\":\"Bench-admin-pass-1\"}" "$url/paddock/v1/password" >/dev/null
token=$(c -H 'content-type: application/json' -H "authorization: Bearer $session" -d '{"id":"edge"}' \
  "$url/paddock/v1/clusters" | json "['token']")
RUST_LOG=warn "$bin/paddock" agent --server "$url" --token "$token" --ca-file "$ca" \
  --api-server "$upstream" --api-ca-file "$tmp/ca.crt" --api-token-file "$tmp/proxy-token" 2>"$tmp/agent.log" &
agent_pid=$!
pids+=($agent_pid)
for _ in $(seq 1 100); do
  connected=$(c -H "authorization: Bearer $session" "$url/paddock/v1/clusters/edge" | json "['status']['connected']")
  [ "$connected" = "True" ] && break
  sleep 0.1
done

echo "== 1. throughput of one logs -f stream, $MIB MiB each, $ROUNDS rounds"
bytes=$((MIB * 1024 * 1024))
# head stops reading after $bytes on purpose, so curl's "(23) failure
# writing output" is expected; anything else curl says, or a short read,
# is a failure.
# cpu PID: the process's CPU time so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)
# rate CLUSTER: MiB/s of one stream; sets $cpu_paddock and $cpu_agent to
# each process's CPU seconds per GiB moved (steadier than the rate on a
# shared machine).
rate() {
  local start end got p0 a0
  p0=$(cpu "$paddock_pid"); a0=$(cpu "$agent_pid")
  start=$(date +%s.%N)
  got=$(c -H "authorization: Bearer bench-token" "$url/k8s/clusters/$1/api/v1/namespaces/default/pods/firehose-$1/log?follow=true" \
    2>"$tmp/curl.err" | head -c "$bytes" | wc -c || true)
  end=$(date +%s.%N)
  if [ "$got" -ne "$bytes" ] || grep -qv '^curl: (23) ' "$tmp/curl.err"; then
    echo "$1: read $got of $bytes bytes" >&2
    cat "$tmp/curl.err" >&2
    exit 1
  fi
  cpu_paddock=$(python3 -c "print(f'{($(cpu "$paddock_pid") - $p0) / $ticks / ($MIB / 1024):.2f}')")
  cpu_agent=$(python3 -c "print(f'{($(cpu "$agent_pid") - $a0) / $ticks / ($MIB / 1024):.2f}')")
  python3 -c "print(f'{$MIB / ($end - $start):.0f}')"
}
# Alternated, so that load from elsewhere falls on both alike; the median
# ratio is the figure.
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  rate default >"$tmp/rate"; direct=$(cat "$tmp/rate"); direct_cpu=$cpu_paddock
  rate edge >"$tmp/rate"; tunnel=$(cat "$tmp/rate")
  ratio=$(python3 -c "print(f'{$tunnel / $direct:.2f}')")
  ratios+=("$ratio")
  echo "round $round: direct $direct MiB/s, through the tunnel $tunnel MiB/s, ratio $ratio (load average $(cut -d' ' -f1 /proc/loadavg))"
  echo "  CPU s per GiB: Paddock direct $direct_cpu, through the tunnel $cpu_paddock; the agent $cpu_agent"
done
python3 -c "import statistics; print(f'median ratio {statistics.median([$(IFS=,; echo "${ratios[*]}")]):.2f} (target >= 0.8)')"

if [ "$WATCHES" -gt 0 ]; then
  echo "== 2. $WATCHES watches through one tunnel"
  timeout 300 "$bin/watch_memory" --url "$url/k8s/clusters/edge" --ca "$ca" --token bench-token \
    --pid "$paddock_pid" --also-pid "$agent_pid" --watches "$WATCHES" --per-connection 500
fi
kill "$agent_pid"

if [ "$AGENTS" -gt 0 ]; then
  echo "== 3. $AGENTS idle agents"
  timeout 400 "$bin/idle_agents" --url "$url" --ca "$ca" --admin-token "$session" --pid "$paddock_pid" \
    --agents "$AGENTS" --upstream "$upstream" --upstream-ca "$tmp/ca.crt" --upstream-token-file "$tmp/proxy-token"
fi
