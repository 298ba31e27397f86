#!/usr/bin/env bash
# Instructions per request (callgrind) in the proxy's own process: stable
# on a noisy VM where req/s moves by ±10%, so every change can quote them.
# Each target runs alone under valgrind with one worker thread; after a
# warm-up the counters are zeroed, wrk sends requests for DURATION, and the
# instructions collected divided by the requests wrk completed is the cost
# of one request (TLS in and out, parsing, the pipeline, the upstream
# client, logging; the writer threads of the logs included).
#
#   bash benches/callgrind.sh                    # every target, DURATION=10s CONNECTIONS=8
#   TARGETS="paddock passthrough-direct" bash benches/callgrind.sh
#   KEEP=/tmp/cg bash benches/callgrind.sh       # keep the profiles: callgrind_annotate /tmp/cg/callgrind.out.paddock
#
# The measuring wrk opens new connections after the counters are zeroed,
# so their TLS handshakes (about 11 million instructions for 8
# connections) are in the total: more per request the fewer requests a
# run completes. The last column leaves them out (the inclusive cost of
# rustls' server handshake states, of OpenSSL's SSL_do_handshake for
# nginx).
#
# Targets: paddock, paddock+log, paddock+plugins, passthrough,
# passthrough-direct (HTTP/2 TLS backend); paddock-plain, paddock-plain+log,
# passthrough-plain (plain HTTP/1.1 backend); paddock-h1, passthrough-h1
# (a TLS backend whose ALPN offers only HTTP/1.1); and, to compare, nginx,
# nginx+log, nginx-plain, nginx-plain+log (one worker process, no master,
# configured as in load.sh). Needs valgrind and wrk (and nginx for those).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/nginx.sh
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
# BIN_DIR: binaries built elsewhere (another commit, to compare); else a release build here.
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
    --bin paddock --bin fake-apiserver --bin passthrough
  bin=target/release
fi
source benches/common.sh

# PROXY_TOKEN: the credential Paddock sends upstream. A real service
# account token is a JWT of about 900 bytes, and the h2 crate Huffman-codes
# an Authorization value afresh on every request (it never indexes one).
PROXY_TOKEN=${PROXY_TOKEN:-bench-proxy-token}
CALLER_TOKEN=bench-caller-token
PATH_=/api/v1/namespaces/default/pods/bench
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --cert-dir "$tmp" 2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" 60 | awk '{print $NF}')
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --plain-http 2>"$tmp/fake-plain.log" & pids+=($!)
upstream_plain=$(wait_log "$tmp/fake-plain.log" "listening on" 60 | awk '{print $NF}')
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" --http1-only --cert-dir "$tmp/h1" 2>"$tmp/fake-h1.log" & pids+=($!)
upstream_h1=$(wait_log "$tmp/fake-h1.log" "listening on" 60 | awk '{print $NF}')
echo "$PROXY_TOKEN" > "$tmp/proxy-token"
echo "$CALLER_TOKEN,alice,1001,\"developers,ops\"" > "$tmp/tokens.csv"
# A certificate for the passthrough: Paddock generates one.
"$bin/paddock" serve --listen 127.0.0.1:0 --data-dir "$tmp/certs" --upstream "$upstream" \
  --upstream-ca "$tmp/ca.crt" --authorization deny-all >/dev/null 2>"$tmp/certs.log" & certs_pid=$!
wait_log "$tmp/certs.log" "paddock listening" 60 >/dev/null
kill "$certs_pid"; wait "$certs_pid" 2>/dev/null || true
cert="$tmp/certs/tls/tls.crt"; key="$tmp/certs/tls/tls.key"

# handshakes PROFILE: the instructions spent in the server's TLS
# handshakes: the inclusive cost of each state of rustls' server handshake
# (`ExpectClientHello` ... `ExpectFinished`; they survive fat LTO, the
# futures around them do not) or of OpenSSL's SSL_do_handshake. Only lines
# ending in their object, not the copies inlined elsewhere.
handshakes() {
  callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null |
    awk '(/<rustls::server::[a-z0-9_]+::Expect[A-Za-z]+ as rustls::common_state::State<.*>::handle \[/ &&
          !/ExpectTraffic|ExpectQuicTraffic/) || /:SSL_do_handshake \[/ { gsub(",", "", $1); sum += $1 }
      END { print sum + 0 }'
}

# measure NAME: starts the target under callgrind, prints "NAME requests
# instructions instr/request instr/request-without-handshakes".
measure() {
  local name=$1 up=$upstream ca=$tmp/ca.crt log="warn,paddock::serve=info" config="workers: 1" cmd
  case $name in *-plain*) up=$upstream_plain ;; *-h1*) up=$upstream_h1 ca=$tmp/h1/ca.crt ;; esac
  case $name in *+log|*+plugins) log=info ;; esac
  case $name in *+plugins) config+=$'\n'"audit: {file: {path: $tmp/audit.log}, onFull: drop}"$'\n'"metrics: {listen: 127.0.0.1:$(free_port)}" ;; esac
  local token=$CALLER_TOKEN
  case $name in
    paddock*)
      printf '%s\n' "$config" > "$tmp/$name.yaml"
      local args=(--upstream "$up" --upstream-token-file "$tmp/proxy-token")
      case $up in https://*) args+=(--upstream-ca "$ca") ;; *) args+=(--dangerous-upstream-allow-plaintext) ;; esac
      cmd=("$bin/paddock" serve --config "$tmp/$name.yaml" "${args[@]}" --listen 127.0.0.1:0
        --tls-cert "$cert" --tls-key "$key" --data-dir "$tmp/$name" --token-auth-file "$tmp/tokens.csv"
        --authorization allow-authenticated)
      ready="paddock listening" ;;
    nginx*)
      token=$PROXY_TOKEN
      local port scheme=https access="access_log off;"
      port=$(free_port)
      case $name in *-plain*) scheme=http ;; esac
      case $name in *+log) access="access_log $tmp/$name/access.log;" ;; esac
      mkdir -p "$tmp/$name"
      cat > "$tmp/$name/nginx.conf" <<CONF
master_process off;
$(nginx_main "$tmp/$name" 1)
http {
$(nginx_proxy_settings "$tmp/$name" "$cert" "$key" "$tmp/ca.crt")
$(nginx_upstream api "${up#*://}")
$(nginx_server "$port" api "$scheme" "$access")
}
CONF
      cmd=(nginx -c "$tmp/$name/nginx.conf" -p "$tmp/$name")
      ready="" ;;
    passthrough*)
      token=$PROXY_TOKEN
      local flags=()
      [ "$name" = passthrough-direct ] && flags+=(--direct-h2)
      cmd=("$bin/passthrough" --workers 1 --listen 127.0.0.1:0 --cert "$cert" --key "$key"
        --upstream "$up" --upstream-ca "$ca" "${flags[@]}")
      ready="listening on" ;;
  esac
  RUST_LOG=$log valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$name" "${cmd[@]}" >/dev/null 2>"$tmp/$name.log" &
  local pid=$!
  pids+=($pid)
  local addr
  if [ -n "$ready" ]; then
    addr=$(wait_log "$tmp/$name.log" "$ready" 60 | grep -oE '127\.0\.0\.1:[0-9]+' | tail -1)
  else
    for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    addr=127.0.0.1:$port
  fi
  local url="https://$addr$PATH_"
  wrk -t1 -c"$CONNECTIONS" -d3s -H "Authorization: Bearer $token" "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "Authorization: Bearer $token" "$url")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name: non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  callgrind_control -d "$pid" >/dev/null 2>&1
  local requests instr
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  instr=$(awk '/^summary:|^totals:/ {print $2; exit}' "$tmp/cg.$name.1")
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$tmp/cg.$name.1" "$KEEP/callgrind.out.$name"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local tls
  tls=$(handshakes "$tmp/cg.$name.1")
  printf "%-20s %10s %16s %14.0f %14.0f\n" "$name" "$requests" "$instr" \
    "$(awk -v i="$instr" -v r="$requests" 'BEGIN{print i/r}')" \
    "$(awk -v i="$instr" -v t="$tls" -v r="$requests" 'BEGIN{print (i-t)/r}')"
}

read -r -a targets <<< "${TARGETS:-paddock paddock+log paddock+plugins passthrough passthrough-direct paddock-plain paddock-plain+log passthrough-plain}"
echo "callgrind: wrk -t1 -c$CONNECTIONS -d$DURATION per target, one worker thread, instructions in the proxy's process"
printf "%-20s %10s %16s %14s %14s\n" target requests instructions "instr/request" "no handshakes"
for t in "${targets[@]}"; do measure "$t"; done
