#!/usr/bin/env bash
# A/B of two Paddock instances measured at the same time: two binaries (a
# change against its base) or two configurations (plugins on against off).
#
# Both instances serve the fake apiserver (HTTP/2 over TLS unless BACKEND) and are
# loaded at once, each by its own wrk (-t1 -c32), for DURATION per round;
# each round reads both processes' CPU time (user and system, all threads)
# from /proc and prints their CPU per request and B's over A's. Both sides
# live through the same moments of the host, so the ratio holds still
# where sequential runs do not: on this 2-core VM a target's CPU per
# request moves by 15% between 10-second runs, while B/A with the same
# binary on both sides stays within ±1.5% of 1.00.
#
#   A_BIN=/tmp/base/paddock bash benches/ab.sh      # that binary (A) against this tree's (B)
#   A=off B=plugins bash benches/ab.sh              # plugins off (A) against on (B), same binary
#   ROUNDS=9 DURATION=8s bash benches/ab.sh
#   A=passthrough-direct B=off bash benches/ab.sh   # the pipeline's own cost
#   BACKEND=plain A_BIN=/tmp/base/paddock A=off bash benches/ab.sh
#
# BACKEND: h2 (the default: HTTP/2 over TLS, like kube-apiserver), h1 (TLS
# whose ALPN offers only HTTP/1.1) or plain (HTTP/1.1 without TLS).
#
# Configurations: off (access log off), log (the default info access log),
# plugins (the access log, the audit log at Metadata to a file, metrics),
# policy (access log off, RBAC with benches/src/synthetic_policy.rs's
# 10,000 bindings plus a project binding that lets the caller read pods,
# where every other configuration allows any authenticated caller);
# passthrough and passthrough-direct run the bare hyper passthrough
# (PASSTHROUGH_BIN; its pooled client, or one direct HTTP/2 connection per
# worker as Paddock's) with the other side's certificate, so the other
# side must be Paddock. Needs wrk and a release build (done here unless
# A_BIN, B_BIN, FAKE_BIN and PASSTHROUGH_BIN are given).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-8s}
A=${A:-plugins}
B=${B:-$A}
BACKEND=${BACKEND:-h2}
case $BACKEND in
  h2) fake_flags=() ;;
  h1) fake_flags=(--http1-only) ;;
  plain) fake_flags=(--plain-http) ;;
  *) echo "unknown BACKEND $BACKEND (h2, h1, plain)" >&2; exit 1 ;;
esac
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
if [ -z "${A_BIN:-}" ] || [ -z "${B_BIN:-}" ] || [ -z "${FAKE_BIN:-}" ] || [ -z "${PASSTHROUGH_BIN:-}" ]; then
  cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
    --bin paddock --bin fake-apiserver --bin passthrough --bin synthetic_policy
fi
A_BIN=${A_BIN:-target/release/paddock}
B_BIN=${B_BIN:-target/release/paddock}
FAKE_BIN=${FAKE_BIN:-target/release/fake-apiserver}
PASSTHROUGH_BIN=${PASSTHROUGH_BIN:-target/release/passthrough}
POLICY_BIN=${POLICY_BIN:-target/release/synthetic_policy}
source benches/common.sh

PROXY_TOKEN=bench-proxy-token
CALLER_TOKEN=bench-caller-token
PATH_=/api/v1/namespaces/default/pods/bench
"$FAKE_BIN" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --cert-dir "$tmp" "${fake_flags[@]}" \
  2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" | awk '{print $NF}')
trust=(--upstream-ca "$tmp/ca.crt")
[ "$BACKEND" = plain ] && trust=(--dangerous-upstream-allow-plaintext)
echo "$PROXY_TOKEN" > "$tmp/proxy-token"
# A user and groups of the synthetic policy, so its RBAC looks at their grants.
echo "$CALLER_TOKEN,local://u-7,1001,\"github_team://7,github_team://47\"" > "$tmp/tokens.csv"

declare -A pid addr
cert=""
# start SIDE BINARY CONFIGURATION
start() {
  local side=$1 bin=$2 log=info config="" authorization=(--authorization allow-authenticated)
  case $3 in
    passthrough | passthrough-direct)
      [ -n "$cert" ] || { echo "a passthrough side needs Paddock on the other side" >&2; exit 1; }
      local flags=()
      [ "$3" = passthrough-direct ] && flags+=(--direct-h2)
      "$PASSTHROUGH_BIN" --listen 127.0.0.1:0 --cert "$cert" --key "$key" --upstream "$upstream" \
        --upstream-ca "$tmp/ca.crt" "${flags[@]}" 2>"$tmp/$side.log" &
      pids+=($!); pid[$side]=$!
      addr[$side]=$(wait_log "$tmp/$side.log" "listening on" | awk '{print $NF}')
      return ;;
    off) log="warn,paddock::serve=info" ;;
    log) ;;
    plugins) config="audit:
  file: {path: $tmp/audit-$side.log}
  onFull: drop
metrics:
  listen: 127.0.0.1:$(free_port)" ;;
    policy)
      log="warn,paddock::serve=info" authorization=()
      [ -x "$POLICY_BIN" ] || { echo "needs $POLICY_BIN (cargo build --release -p paddock-benches --bin synthetic_policy)" >&2; exit 1; }
      mkdir -p "$tmp/policy"
      [ -s "$tmp/policy/synthetic.yaml" ] || "$POLICY_BIN" > "$tmp/policy/synthetic.yaml"
      cat > "$tmp/policy/bench.yaml" <<POLICY
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-bench, namespace: default}
spec: {clusterName: default, namespaces: [default]}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-bench, namespace: p-bench}
projectName: "default:p-bench"
groupPrincipalName: "github_team://47"
roleTemplateName: read-only
POLICY
      config="authorization: {mode: policy, policyDir: $tmp/policy}" ;;
    *) echo "unknown configuration $3 (off, log, plugins, policy, passthrough, passthrough-direct)" >&2; exit 1 ;;
  esac
  printf '%s\n' "$config" > "$tmp/$side.yaml"
  RUST_LOG=$log "$bin" serve --config "$tmp/$side.yaml" --upstream "$upstream" \
    --upstream-token-file "$tmp/proxy-token" "${trust[@]}" --listen 127.0.0.1:0 \
    --data-dir "$tmp/$side" --token-auth-file "$tmp/tokens.csv" "${authorization[@]}" \
    >/dev/null 2>"$tmp/$side.log" &
  pids+=($!); pid[$side]=$!
  addr[$side]=$(wait_log "$tmp/$side.log" "paddock listening" | sed -E 's/.*addr=([0-9.:]+).*/\1/')
  [ -n "$cert" ] || { cert="$tmp/$side/tls/tls.crt"; key="$tmp/$side/tls/tls.key"; }
}
# Paddock first: a passthrough uses the certificate it generated.
case $A in
  passthrough*) start B "$B_BIN" "$B"; start A "$A_BIN" "$A" ;;
  *) start A "$A_BIN" "$A"; start B "$B_BIN" "$B" ;;
esac

# ticks PID: user and system CPU of every thread of the process, in clock ticks.
ticks() {
  local total=0 task
  for task in /proc/"$1"/task/*; do
    total=$((total + $(sed 's/.*) //' "$task/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
# A passthrough forwards the caller's token: it sends the backend's own.
load() {
  local token=$CALLER_TOKEN
  case ${!1} in passthrough*) token=$PROXY_TOKEN ;; esac
  wrk -t1 -c"$2" -d"$3" -H "Authorization: Bearer $token" "https://${addr[$1]}$PATH_"
}
for side in A B; do load "$side" 4 1s >/dev/null; done

binary() { case $2 in passthrough*) echo "$PASSTHROUGH_BIN" ;; *) echo "$1" ;; esac; }
echo "A: $(binary "$A_BIN" "$A") ($A)"
echo "B: $(binary "$B_BIN" "$B") ($B)"
printf "%-6s %10s %12s %10s %12s %10s\n" round "A req" "A CPU µs/req" "B req" "B CPU µs/req" "B/A CPU"
for round in $(seq 1 "$ROUNDS"); do
  a0=$(ticks "${pid[A]}"); b0=$(ticks "${pid[B]}")
  load A 32 "$DURATION" > "$tmp/wrk-A" & loading=$!
  load B 32 "$DURATION" > "$tmp/wrk-B"
  wait "$loading"
  a1=$(ticks "${pid[A]}"); b1=$(ticks "${pid[B]}")
  for side in A B; do
    if grep -q "Non-2xx" "$tmp/wrk-$side"; then echo "$side: non-2xx responses" >&2; cat "$tmp/wrk-$side" >&2; exit 1; fi
  done
  ra=$(awk '/requests in/ {print $1}' "$tmp/wrk-A"); rb=$(awk '/requests in/ {print $1}' "$tmp/wrk-B")
  awk -v r="$round" -v ra="$ra" -v rb="$rb" -v ta=$((a1 - a0)) -v tb=$((b1 - b0)) -v hz="$hz" 'BEGIN {
    ca = ta / hz / ra * 1e6; cb = tb / hz / rb * 1e6
    printf "%-6s %10d %12.2f %10d %12.2f %10.3f\n", r, ra, ca, rb, cb, cb / ca }'
done | tee "$tmp/rounds"
awk '{print $NF}' "$tmp/rounds" | sort -g |
  awk '{v[NR]=$1} END {printf "B/A CPU per request, median of %d rounds: %.3f (min %.3f, max %.3f)\n", NR, (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2, v[1], v[NR]}'
