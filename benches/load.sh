#!/usr/bin/env bash
# End-to-end load benchmark, all in one run on this machine (loopback only).
#
# Two backends, both the fake kube-apiserver:
#   HTTP/2 over TLS   like kube-apiserver (targets without a suffix)
#   HTTP/1.1, plain   an upstream that speaks only HTTP/1.1 (targets "-plain")
# and for each backend, with the same TLS certificate towards wrk:
#   passthrough      a bare hyper reverse proxy (benches/src/bin/passthrough.rs),
#                    Paddock's workers and none of its work
#   nginx            nginx-light as a plain reverse proxy (no auth),
#                    worker_processes auto, keepalive both ways, access log off
#   nginx+log        the same with nginx's default access log (combined, to a file)
#   paddock          the full Paddock pipeline (TLS, static-token auth,
#                    authorization, impersonation), access log off
#                    (RUST_LOG=warn); it authorizes with allow-authenticated:
#                    what RBAC over a large policy adds, ab.sh's "policy"
#                    configuration measures
#   paddock+log      the same with the default info-level access log (what
#                    users run), to a file
# and on the HTTP/2 backend:
#   paddock+plugins  the access log, the audit log at Metadata (to a file) and
#                    the Prometheus metrics, all on
#   paddock+jwt      the "paddock" instance with an OIDC ID token from a real
#                    oidc-provider (tests/oidc) as the bearer token
#   paddock-session  the "paddock" instance with a Paddock-issued session
#                    token, what a kubeconfig from Paddock carries
# Optional diagnostics (name them in TARGETS): upstream (the fake apiserver
# directly), passthrough-direct (the bare proxy with Paddock's direct h2 transport),
# passthrough-h1 (HTTP/1.1 to the TLS backend), passthrough-ws (one
# work-stealing runtime).
#
# Every round runs every target once (the order rotates each round), so
# noise from other work on the machine hits all targets alike; the table
# shows the median of the rounds per target, and the ratios are given both
# from the medians and paired by round. The default order puts the targets
# each ratio compares next to each other, or one apart: the host's speed
# drifts over tens of seconds, so a pair measured back to back shares
# more of it. Each run also reads the proxy
# process's CPU time (user and system, all its threads; nginx's workers) and
# the table gives it per request: what the proxy itself costs, where req/s
# is set by the whole machine (wrk and the backend share its cores). It
# moves with contention too (a slowed round costs more CPU per request).
# Needs wrk and nginx (installed with apt when missing), python3, and a
# release build (done here).
#
#   bash benches/load.sh                        # DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3
#   ROUNDS=5 DURATION=15s bash benches/load.sh  # longer, steadier
#   TARGETS="passthrough paddock" bash benches/load.sh  # a subset (ratios of what is there)
#   WORKERS=1 bash benches/load.sh              # Paddock's worker threads (default: one per core)
#   NGINX_WORKERS=4 bash benches/load.sh        # nginx's worker_processes (default: auto, one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/nginx.sh
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-}
NGINX_WORKERS=${NGINX_WORKERS:-auto}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # Keep the package from starting a system nginx on port 80.
  echo exit 101 | $sudo tee /usr/sbin/policy-rc.d >/dev/null; $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
  $sudo rm -f /usr/sbin/policy-rc.d
fi

# BIN_DIR: binaries built elsewhere (another commit, to compare); else a release build here.
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
    --bin paddock --bin fake-apiserver --bin passthrough
  bin=target/release
fi
source benches/common.sh

PROXY_TOKEN=bench-proxy-token
CALLER_TOKEN=bench-caller-token
PATH_=/api/v1/namespaces/default/pods/bench

# The process each target runs in, for its CPU time (instance name -> pid).
declare -A instance_pid
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --cert-dir "$tmp" 2>"$tmp/fake.log" & pids+=($!)
instance_pid[upstream]=$!
upstream=$(wait_log "$tmp/fake.log" "listening on" | awk '{print $NF}')
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --plain-http 2>"$tmp/fake-plain.log" & pids+=($!)
upstream_plain=$(wait_log "$tmp/fake-plain.log" "listening on" | awk '{print $NF}')
echo "$PROXY_TOKEN" > "$tmp/proxy-token"
echo "$CALLER_TOKEN,alice,1001,\"developers,ops\"" > "$tmp/tokens.csv"

# A real OpenID provider (npm oidc-provider, tests/oidc) for the JWT bearer
# target: the first Paddock instance verifies its ID tokens.
[ -d tests/oidc/node_modules/oidc-provider ] || (cd tests/oidc && npm ci --no-audit --no-fund >/dev/null)
# A CA and a server certificate signed by it (rustls refuses a CA certificate
# as a server's own).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-idp-ca \
  -keyout "$tmp/idp-ca.key" -out "$tmp/idp-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$tmp/idp.key" -out "$tmp/idp.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tmp/idp.ext"
openssl x509 -req -in "$tmp/idp.csr" -CA "$tmp/idp-ca.crt" -CAkey "$tmp/idp-ca.key" -CAcreateserial \
  -days 1 -extfile "$tmp/idp.ext" -out "$tmp/idp.crt" 2>/dev/null
idp_port=$(free_port)
cat > "$tmp/idp.json" <<CONF
{"port": $idp_port, "certFile": "$tmp/idp.crt", "keyFile": "$tmp/idp.key", "keysDir": "$tmp/idp-keys",
 "keys": [{"kid": "rsa-1", "kty": "RSA"}],
 "clients": [{"client_id": "paddock", "client_secret": "bench-oidc-secret", "redirect_uris": ["https://127.0.0.1/cb"]}],
 "users": {"bench": {"password": "bench oidc password", "email": "bench@example.com", "groups": ["ops"]}}}
CONF
node tests/oidc/provider.mjs "$tmp/idp.json" >"$tmp/idp.out" 2>"$tmp/idp.log" & pids+=($!)
wait_log "$tmp/idp.out" LISTENING >/dev/null
echo bench-oidc-secret > "$tmp/idp-secret"
JWT_TOKEN=$(curl -s --cacert "$tmp/idp-ca.crt" -u paddock:bench-oidc-secret "https://127.0.0.1:$idp_port/token" \
    -d grant_type=password -d username=bench -d 'password=bench oidc password' -d 'scope=openid email groups' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id_token"])')

# start_paddock NAME RUST_LOG UPSTREAM [CONFIG LINES]: starts Paddock in the
# background (not in a command substitution, which would wait for its
# stdout to close) and sets $addr to the address it listens on.
cert="" key=""
start_paddock() {
  local name=$1 log=$2 up=$3 config=${4:-}
  local args=(--upstream "$up" --upstream-token-file "$tmp/proxy-token")
  case $up in
    https://*) args+=(--upstream-ca "$tmp/ca.crt") ;;
    *) args+=(--dangerous-upstream-allow-plaintext) ;;
  esac
  # Same certificate for every instance after the first, so every proxy presents the same chain.
  [ -n "$cert" ] && args+=(--tls-cert "$cert" --tls-key "$key")
  [ -n "$WORKERS" ] && config+=$'\n'"workers: $WORKERS"
  printf '%s\n' "$config" > "$tmp/$name.yaml"
  RUST_LOG=$log "$bin/paddock" serve --config "$tmp/$name.yaml" "${args[@]}" --listen 127.0.0.1:0 \
    --data-dir "$tmp/$name" --token-auth-file "$tmp/tokens.csv" --authorization allow-authenticated \
    >/dev/null 2>"$tmp/$name.log" &
  pids+=($!); instance_pid[$name]=$!
  addr=$(wait_log "$tmp/$name.log" "paddock listening" | sed -E 's/.*addr=([0-9.:]+).*/\1/')
}
# The access log is target paddock::access at info; "quiet" keeps only startup lines.
quiet="warn,paddock::serve=info"
# Every HTTP/2 instance also verifies the provider's ID tokens (paddock+jwt
# uses the first), so the plugins and the access log are all that differs
# between paddock, paddock+log and paddock+plugins.
oidc="authentication:
  oidc:
  - name: bench
    issuerUrl: https://127.0.0.1:$idp_port
    clientId: paddock
    clientSecretFile: $tmp/idp-secret
    caFile: $tmp/idp-ca.crt"
start_paddock paddock "$quiet" "$upstream" "$oidc"; paddock_addr=$addr
cert="$tmp/paddock/tls/tls.crt"; key="$tmp/paddock/tls/tls.key"
start_paddock paddock-log info "$upstream" "$oidc"; paddock_log_addr=$addr
start_paddock paddock-plugins info "$upstream" "$oidc
audit:
  file: {path: $tmp/audit.log}
  onFull: drop
metrics:
  listen: 127.0.0.1:$(free_port)"
paddock_plugins_addr=$addr
start_paddock paddock-plain "$quiet" "$upstream_plain"; paddock_plain_addr=$addr
start_paddock paddock-plain-log info "$upstream_plain"; paddock_plain_log_addr=$addr

# A Paddock user's session token, from a real login, for the same first
# instance: the store-token path (cached hash check, revision re-validation,
# last-used coalescing) against the static token file.
echo 'bench user password' | "$bin/paddock" user add bench --data-dir "$tmp/paddock" >/dev/null
SESSION_TOKEN=""
for _ in $(seq 1 50); do
  SESSION_TOKEN=$(curl -sk "https://$paddock_addr/paddock/v1/login" \
      -H 'Content-Type: application/json' -d '{"provider":"local","username":"bench","password":"bench user password"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))' 2>/dev/null || true)
  [ -n "$SESSION_TOKEN" ] && break
  sleep 0.1
done
[ -n "$SESSION_TOKEN" ] || { echo "no session token from $paddock_addr" >&2; cat "$tmp/paddock.log" >&2; exit 1; }

# start_passthrough NAME UPSTREAM [FLAGS]: sets $addr.
start_passthrough() {
  local name=$1 up=$2; shift 2
  "$bin/passthrough" --listen 127.0.0.1:0 --cert "$cert" --key "$key" \
    --upstream "$up" --upstream-ca "$tmp/ca.crt" "$@" 2>"$tmp/$name.log" & pids+=($!); instance_pid[$name]=$!
  addr=$(wait_log "$tmp/$name.log" "listening on" | awk '{print $NF}')
}
start_passthrough passthrough "$upstream"; passthrough_addr=$addr
start_passthrough passthrough-plain "$upstream_plain"; passthrough_plain_addr=$addr
start_passthrough passthrough-h1 "$upstream" --http1-upstream; passthrough_h1_addr=$addr
start_passthrough passthrough-direct "$upstream" --direct-h2; passthrough_direct_addr=$addr
start_passthrough passthrough-ws "$upstream" --work-stealing; passthrough_ws_addr=$addr

# One nginx, four servers: each backend with its access log off and on.
declare -A nginx_port=([nginx]=$(free_port) [nginx+log]=$(free_port) [nginx-plain]=$(free_port) [nginx-plain+log]=$(free_port))
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
# One worker per core, as Paddock's default (worker_processes auto).
$(nginx_main "$tmp/nginx" "$NGINX_WORKERS")
http {
$(nginx_proxy_settings "$tmp/nginx" "$cert" "$key" "$tmp/ca.crt")
$(nginx_upstream api "${upstream#https://}")
$(nginx_upstream api_plain "${upstream_plain#http://}")
$(nginx_server "${nginx_port[nginx]}" api https "access_log off;")
$(nginx_server "${nginx_port[nginx+log]}" api https "access_log $tmp/nginx/access.log;")
$(nginx_server "${nginx_port[nginx-plain]}" api_plain http "access_log off;")
$(nginx_server "${nginx_port[nginx-plain+log]}" api_plain http "access_log $tmp/nginx/access-plain.log;")
}
CONF
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>"$tmp/nginx/stderr.log" & pids+=($!)
instance_pid[nginx]=$!
for port in "${nginx_port[@]}"; do
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

# cpu_ticks PID: user and system CPU of the process and its children
# (nginx's workers), in clock ticks; read before and after each wrk run.
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
ticks_per_s=$(getconf CLK_TCK)
# run NAME URL TOKEN -> "req/s p50_ms p99_ms cpu_us_per_request"
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } printf "%.3f", v }'; }
run() {
  local out before after
  before=$(cpu_ticks "${instance_pid[${instance[$1]}]}")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $3" "$2$PATH_")
  if echo "$out" | grep -q "Non-2xx"; then echo "$1: non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  after=$(cpu_ticks "${instance_pid[${instance[$1]}]}")
  local rps p50 p99 requests
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  echo "$rps $p50 $p99 $(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v n="$requests" 'BEGIN{printf "%.2f", t / hz / n * 1e6}')"
}

read -r -a targets <<< "${TARGETS:-passthrough nginx paddock paddock+plugins paddock+log nginx+log paddock+jwt paddock-session passthrough-plain nginx-plain paddock-plain paddock-plain+log nginx-plain+log}"
declare -A url=([upstream]="$upstream" [passthrough]="https://$passthrough_addr" \
  [passthrough-plain]="https://$passthrough_plain_addr" \
  [paddock]="https://$paddock_addr" [paddock-session]="https://$paddock_addr" [paddock+jwt]="https://$paddock_addr" \
  [paddock+log]="https://$paddock_log_addr" [paddock+plugins]="https://$paddock_plugins_addr" \
  [paddock-plain]="https://$paddock_plain_addr" [paddock-plain+log]="https://$paddock_plain_log_addr" \
  [passthrough-h1]="https://$passthrough_h1_addr" [passthrough-ws]="https://$passthrough_ws_addr" \
  [passthrough-direct]="https://$passthrough_direct_addr")
for n in "${!nginx_port[@]}"; do url[$n]="https://127.0.0.1:${nginx_port[$n]}"; done
# The process a target's CPU time is read from.
declare -A instance=([upstream]=upstream [paddock]=paddock [paddock-session]=paddock [paddock+jwt]=paddock \
  [paddock+log]=paddock-log [paddock+plugins]=paddock-plugins [paddock-plain]=paddock-plain \
  [paddock-plain+log]=paddock-plain-log)
for t in passthrough passthrough-plain passthrough-h1 passthrough-direct passthrough-ws; do instance[$t]=$t; done
for n in "${!nginx_port[@]}"; do instance[$n]=nginx; done
declare -A token=([paddock]="$CALLER_TOKEN" [paddock-session]="$SESSION_TOKEN" [paddock+jwt]="$JWT_TOKEN" [paddock+log]="$CALLER_TOKEN" \
  [paddock+plugins]="$CALLER_TOKEN" [paddock-plain]="$CALLER_TOKEN" [paddock-plain+log]="$CALLER_TOKEN")
for t in "${targets[@]}"; do
  [ -n "${url[$t]:-}" ] || { echo "unknown target $t" >&2; exit 1; }
  token[$t]=${token[$t]:-$PROXY_TOKEN}
done
# Warm every path (TLS sessions, pools) before measuring.
for t in "${targets[@]}"; do wrk -t1 -c4 -d1s -H "Authorization: Bearer ${token[$t]}" "${url[$t]}$PATH_" >/dev/null; done
results="$tmp/results"  # lines: round target req/s p50 p99 cpu_us
: > "$results"
n=${#targets[@]}
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + round - 1) % n ))]}
    read -r r a b c < <(run "$t" "${url[$t]}" "${token[$t]}")
    echo "$round $t $r $a $b $c" | tee -a "$results" >&2
  done
done
# median FIELD TARGET (field 3 req/s, 4 p50, 5 p99, 6 CPU µs per request)
median() { awk -v t="$2" -v f="$1" '$2==t {print $f}' "$results" | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# paired A B [FIELD]: the median of each round's own A/B (a disturbed round
# then weighs on both sides of its ratio), of req/s or FIELD.
paired() { awk -v a="$1" -v b="$2" -v f="${3:-3}" '$2==a {x[$1]=$f} $2==b {y[$1]=$f}
  END {n=0; for (r in x) if (r in y) v[++n]=x[r]/y[r];
       for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (v[j]<v[i]) {t=v[i]; v[i]=v[j]; v[j]=t}
       printf "%.2f", (n%2) ? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2}' "$results"; }

echo
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved round(s), median per target, GET $PATH_, $(nproc) cores, Paddock workers: ${WORKERS:-one per core}, nginx workers: $NGINX_WORKERS"
printf "%-18s %12s %10s %10s %12s\n" target "req/s" "p50 ms" "p99 ms" "CPU µs/req"
declare -A rps
for t in "${targets[@]}"; do
  rps[$t]=$(median 3 "$t")
  printf "%-18s %12.0f %10.3f %10.3f %12.2f\n" "$t" "${rps[$t]}" "$(median 4 "$t")" "$(median 5 "$t")" "$(median 6 "$t")"
done
echo
printf "%-42s %8s %8s %s\n" ratio median paired target
# ratio A B LABEL TARGET: printed when both were measured.
ratio() {
  [ -n "${rps[$1]:-}" ] && [ -n "${rps[$2]:-}" ] || return 0
  printf "%-42s %8.2f %8s %s\n" "$1 / $2" "$(awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN{print a/b}')" "$(paired "$1" "$2")" "$3"
}
echo "Paddock against nginx, four setups"
ratio paddock nginx ">= 1.1 (HTTP/2 TLS backend, logs off)"
ratio paddock+log nginx+log ">= 1.1 (HTTP/2 TLS backend, logs on)"
ratio paddock-plain nginx-plain ">= 1.1 (HTTP/1.1 plain backend, logs off)"
ratio paddock-plain+log nginx-plain+log ">= 1.1 (HTTP/1.1 plain backend, logs on)"
echo "the pipeline's own cost (same transport)"
ratio paddock passthrough ">= 0.95"
ratio paddock-plain passthrough-plain ">= 0.95"
ratio paddock passthrough-direct ""
echo "plugins and logs"
ratio paddock+plugins paddock ">= 0.95 (access log, audit at Metadata, metrics)"
ratio paddock+log paddock ""
ratio nginx+log nginx ""
ratio paddock-session paddock ">= 0.95 (session token / static token)"
ratio paddock+jwt paddock ">= 0.95 (OIDC ID token / static token)"
ratio passthrough nginx ""
ratio passthrough-plain nginx-plain ""
# cpu A B: CPU per request of A's process over B's (lower is cheaper). The
# backend's own work is not in it; against nginx, which speaks HTTP/1.1 to
# the backend, that work differs.
cpu() {
  [ -n "${rps[$1]:-}" ] && [ -n "${rps[$2]:-}" ] || return 0
  printf "%-42s %8.2f %8s\n" "$1 / $2" "$(awk -v a="$(median 6 "$1")" -v b="$(median 6 "$2")" 'BEGIN{print a/b}')" "$(paired "$1" "$2" 6)"
}
echo "CPU per request of the proxy's process (its threads, nginx's workers)"
cpu paddock nginx
cpu paddock+log nginx+log
cpu paddock-plain nginx-plain
cpu paddock-plain+log nginx-plain+log
cpu paddock passthrough
cpu paddock-plain passthrough-plain
cpu paddock+plugins paddock
cpu paddock+log paddock
