#!/usr/bin/env bash
# 10,000 concurrent idle watch streams through Paddock (HTTP/2 clients,
# HTTP/2 upstream), then Paddock's RSS before and with the watches open,
# and the bytes per watch. Target: < 124 MiB. Loopback only, bounded
# (the client gives up after 300 s). Builds the release binaries itself.
#
#   bash benches/watch-memory.sh                     # WATCHES=10000 PER_CONNECTION=500
#   WATCHES=20000 bash benches/watch-memory.sh
#   MAX_STREAMS=50000 bash benches/watch-memory.sh   # one upstream connection
#
# Streams are multiplexed (PER_CONNECTION per client HTTP/2 connection;
# upstream, the fake allows kube-apiserver's 100 streams per connection
# unless MAX_STREAMS says otherwise), so 10,000 watches need only a few
# hundred file descriptors; raising the limit is best effort and a hard
# limit below 65536 (containers) is fine.
set -euo pipefail
cd "$(dirname "$0")/.."
WATCHES=${WATCHES:-10000}
PER_CONNECTION=${PER_CONNECTION:-500}
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p paddock -p paddock-tests -p paddock-benches \
  --bin paddock --bin fake-apiserver --bin watch_memory
bin=target/release
source benches/common.sh
"$bin/fake-apiserver" --listen 127.0.0.1:0 --token proxy-token --cert-dir "$tmp" \
  ${MAX_STREAMS:+--max-streams "$MAX_STREAMS"} 2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" | awk '{print $NF}')
echo proxy-token > "$tmp/proxy-token"
echo 'watch-token,alice,1001,"developers"' > "$tmp/tokens.csv"
RUST_LOG="warn,paddock::serve=info" "$bin/paddock" serve --listen 127.0.0.1:0 --data-dir "$tmp/paddock" \
  --upstream "$upstream" --upstream-ca "$tmp/ca.crt" --upstream-token-file "$tmp/proxy-token" \
  --token-auth-file "$tmp/tokens.csv" --authorization allow-authenticated 2>"$tmp/paddock.log" & paddock_pid=$!
pids+=($paddock_pid)
addr=$(wait_log "$tmp/paddock.log" "paddock listening" | sed -E 's/.*addr=([0-9.:]+).*/\1/')
timeout 300 "$bin/watch_memory" --url "https://$addr" --ca "$tmp/paddock/tls/ca.crt" --token watch-token \
  --pid "$paddock_pid" --watches "$WATCHES" --per-connection "$PER_CONNECTION"
