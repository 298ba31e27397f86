#!/usr/bin/env bash
# End-to-end load benchmark, all in one run on this machine (loopback only):
#   upstream     the fake kube-apiserver directly
#   passthrough  a bare hyper reverse proxy (benches/src/bin/passthrough.rs)
#   nginx        nginx-light as a plain reverse proxy (no auth), TLS both ways, keepalive
#   paddock      the full Paddock pipeline, static-token auth, access log at warn (off)
#   paddock+jwt  the same instance with an OIDC ID token (from a real
#                oidc-provider) as the bearer token instead of a static token
#   paddock+log  the same with the default info-level access log (what users run)
#   paddock+plugins  the access log, the audit log at Metadata (to a file) and
#                the Prometheus metrics, all on
#   passthrough-h1  diagnostic: the bare proxy with an HTTP/1.1-only upstream pool
#                (what nginx uses) instead of HTTP/2 by ALPN (what Paddock uses)
#   passthrough-direct  the bare proxy with Paddock's own upstream transport
#                (requests without a body over a direct h2 connection per worker)
#   passthrough-ws  diagnostic: the bare proxy on one work-stealing runtime with
#                one shared upstream client, instead of thread-per-core workers
# Every proxy terminates TLS with the same certificate and verifies the upstream.
# Prints req/s, p50 and p99 per target and the ratios.
#
# Every round runs every target once (the order rotates each round), so
# noise from other work on the machine hits all targets alike; the table
# shows the median of the rounds per target. Needs wrk and nginx (installed
# with apt when missing), python3, and a release build (done here).
#
#   bash benches/load.sh                        # DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3
#   ROUNDS=5 DURATION=15s bash benches/load.sh  # longer, steadier
#   TARGETS="passthrough paddock" bash benches/load.sh  # a subset (no ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}

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

cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
  --bin paddock --bin fake-apiserver --bin passthrough
bin=target/release
tmp=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_log FILE PATTERN: prints the first matching line, fails with the log if the process died.
wait_log() {
  for _ in $(seq 1 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -m1 "$2" "$1"; return; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

PROXY_TOKEN=bench-proxy-token
CALLER_TOKEN=bench-caller-token
PATH_=/api/v1/namespaces/default/pods/bench

"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --cert-dir "$tmp" 2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" | awk '{print $NF}')
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
cat > "$tmp/oidc.yaml" <<CONF
authentication:
  oidc:
  - name: bench
    issuerUrl: https://127.0.0.1:$idp_port
    clientId: paddock
    clientSecretFile: $tmp/idp-secret
    caFile: $tmp/idp-ca.crt
CONF
JWT_TOKEN=$(curl -s --cacert "$tmp/idp-ca.crt" -u paddock:bench-oidc-secret "https://127.0.0.1:$idp_port/token" \
    -d grant_type=password -d username=bench -d 'password=bench oidc password' -d 'scope=openid email groups' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id_token"])')

# start_paddock NAME RUST_LOG [ARGS]: starts Paddock in the background (not in a
# command substitution, which would wait for its stdout to close) and sets
# $addr to the address it listens on.
start_paddock() {
  local name=$1 log=$2; shift 2
  RUST_LOG=$log "$bin/paddock" serve "$@" --listen 127.0.0.1:0 --data-dir "$tmp/$name" \
    --upstream "$upstream" --upstream-ca "$tmp/ca.crt" --upstream-token-file "$tmp/proxy-token" \
    --token-auth-file "$tmp/tokens.csv" --authorization allow-authenticated >/dev/null 2>"$tmp/$name.log" &
  pids+=($!)
  addr=$(wait_log "$tmp/$name.log" "paddock listening" | sed -E 's/.*addr=([0-9.:]+).*/\1/')
}
# The access log is target paddock::access at info; "quiet" keeps only startup lines.
start_paddock paddock "warn,paddock::serve=info" --config "$tmp/oidc.yaml"; paddock_addr=$addr
cert="$tmp/paddock/tls/tls.crt"; key="$tmp/paddock/tls/tls.key"
# Same certificate as the first instance, so every proxy presents the same chain.
start_paddock paddock-log "info" --tls-cert "$cert" --tls-key "$key"; paddock_log_addr=$addr
cat > "$tmp/plugins.yaml" <<CONF
audit:
  file: {path: $tmp/audit.log}
  onFull: drop
metrics:
  listen: 127.0.0.1:$(free_port)
CONF
start_paddock paddock-plugins "info" --config "$tmp/plugins.yaml" --tls-cert "$cert" --tls-key "$key"
paddock_plugins_addr=$addr

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

"$bin/passthrough" --listen 127.0.0.1:0 --cert "$cert" --key "$key" \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" 2>"$tmp/passthrough.log" & pids+=($!)
passthrough_addr=$(wait_log "$tmp/passthrough.log" "listening on" | awk '{print $NF}')
"$bin/passthrough" --listen 127.0.0.1:0 --cert "$cert" --key "$key" --http1-upstream \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" 2>"$tmp/passthrough-h1.log" & pids+=($!)
passthrough_h1_addr=$(wait_log "$tmp/passthrough-h1.log" "listening on" | awk '{print $NF}')
"$bin/passthrough" --listen 127.0.0.1:0 --cert "$cert" --key "$key" --direct-h2 \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" 2>"$tmp/passthrough-direct.log" & pids+=($!)
passthrough_direct_addr=$(wait_log "$tmp/passthrough-direct.log" "listening on" | awk '{print $NF}')
"$bin/passthrough" --listen 127.0.0.1:0 --cert "$cert" --key "$key" --work-stealing \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" 2>"$tmp/passthrough-ws.log" & pids+=($!)
passthrough_ws_addr=$(wait_log "$tmp/passthrough-ws.log" "listening on" | awk '{print $NF}')

nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
# As many workers as Paddock's tokio runtime has threads (one per core).
worker_processes $(nproc);
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  # Client keepalive like Paddock's hyper server: no request cap per connection.
  keepalive_timeout 90s;
  keepalive_requests 1000000;
  upstream api {
    server ${upstream#https://};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 90s;
  }
  server {
    listen 127.0.0.1:$nginx_port ssl http2;  # nginx 1.22 (bookworm) syntax
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # rustls' server default: an in-memory session cache, no tickets.
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets off;
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Stream like a Kubernetes proxy must (watches): no response buffering.
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_ssl_trusted_certificate $tmp/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }
}
CONF
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>"$tmp/nginx/stderr.log" & pids+=($!)
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$nginx_port) 2>/dev/null && break; sleep 0.05; done

# run NAME URL TOKEN -> "req/s p50_ms p99_ms"
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } printf "%.3f", v }'; }
run() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $3" "$2$PATH_")
  if echo "$out" | grep -q "Non-2xx"; then echo "$1: non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
  echo "$rps $p50 $p99"
}

read -r -a targets <<< "${TARGETS:-upstream passthrough nginx paddock paddock-session paddock+jwt paddock+log paddock+plugins passthrough-direct passthrough-h1 passthrough-ws}"
declare -A url=([upstream]="$upstream" [passthrough]="https://$passthrough_addr" \
  [nginx]="https://127.0.0.1:$nginx_port" [paddock]="https://$paddock_addr" \
  [paddock-session]="https://$paddock_addr" [paddock+jwt]="https://$paddock_addr" [paddock+log]="https://$paddock_log_addr" \
  [paddock+plugins]="https://$paddock_plugins_addr" \
  [passthrough-h1]="https://$passthrough_h1_addr" [passthrough-ws]="https://$passthrough_ws_addr" [passthrough-direct]="https://$passthrough_direct_addr")
declare -A token=([upstream]="$PROXY_TOKEN" [passthrough]="$PROXY_TOKEN" [nginx]="$PROXY_TOKEN" \
  [paddock]="$CALLER_TOKEN" [paddock-session]="$SESSION_TOKEN" [paddock+jwt]="$JWT_TOKEN" [paddock+log]="$CALLER_TOKEN" [paddock+plugins]="$CALLER_TOKEN" [passthrough-h1]="$PROXY_TOKEN" [passthrough-ws]="$PROXY_TOKEN" [passthrough-direct]="$PROXY_TOKEN")
# Warm every path (TLS sessions, pools) before measuring.
for t in "${targets[@]}"; do wrk -t1 -c4 -d1s -H "Authorization: Bearer ${token[$t]}" "${url[$t]}$PATH_" >/dev/null; done
results="$tmp/results"  # lines: round target req/s p50 p99
: > "$results"
n=${#targets[@]}
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + round - 1) % n ))]}
    read -r r a b < <(run "$t" "${url[$t]}" "${token[$t]}")
    echo "$round $t $r $a $b" | tee -a "$results" >&2
  done
done
# median FIELD TARGET (field 3 req/s, 4 p50, 5 p99)
median() { awk -v t="$2" -v f="$1" '$2==t {print $f}' "$results" | sort -g |
  awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved round(s), median per target, GET $PATH_, $(nproc) cores"
printf "%-15s %12s %10s %10s\n" target "req/s" "p50 ms" "p99 ms"
declare -A rps
for t in "${targets[@]}"; do
  rps[$t]=$(median 3 "$t")
  printf "%-15s %12.0f %10.3f %10.3f\n" "$t" "${rps[$t]}" "$(median 4 "$t")" "$(median 5 "$t")"
done
[ -n "${TARGETS:-}" ] && exit 0  # a subset: no ratios
awk -v p="${rps[paddock]}" -v s="${rps[paddock-session]}" -v j="${rps[paddock+jwt]}" -v b="${rps[passthrough]}" -v n="${rps[nginx]}" -v l="${rps[paddock+log]}" -v g="${rps[paddock+plugins]}" -v h="${rps[passthrough-h1]}" -v d="${rps[passthrough-direct]}" 'BEGIN{
  printf "paddock / passthrough = %.2f (target >= 0.90)\n", p/b;
  printf "paddock / passthrough-direct = %.2f (the same upstream transport as Paddock)\n", p/d;
  printf "paddock / nginx       = %.2f (target >= 1.00)\n", p/n;
  printf "paddock+log / nginx   = %.2f\n", l/n;
  printf "paddock+plugins / paddock = %.2f (access log, audit at Metadata, metrics; target >= 0.95)\n", g/p;
  printf "paddock session token / static token = %.2f (target >= 0.95)\n", s/p;
  printf "paddock OIDC JWT / static token = %.2f (target >= 0.95)\n", j/p;
  printf "passthrough / nginx   = %.2f, passthrough-h1 / nginx = %.2f (how much is the upstream protocol)\n", b/n, h/n }'
# The same ratios paired by round (median of each round's ratio): a round
# where the machine was disturbed then weighs on both sides of its ratio.
paired() { awk -v a="$1" -v b="$2" '$2==a {x[$1]=$3} $2==b {y[$1]=$3}
  END {n=0; for (r in x) if (r in y) v[++n]=x[r]/y[r];
       for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (v[j]<v[i]) {t=v[i]; v[i]=v[j]; v[j]=t}
       printf "%.2f", (n%2) ? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2}' "$results"; }
echo "paired by round: paddock / passthrough = $(paired paddock passthrough), paddock / nginx = $(paired paddock nginx)"
