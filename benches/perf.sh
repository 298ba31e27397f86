#!/usr/bin/env bash
# Where a proxy's CPU goes under load, next to nginx's on the same backend:
# a system-wide perf profile (cpu-clock samples, kernel call chains) of
# `wrk -t2 -c64` through each target in turn. For each target it prints
# req/s, p50/p99, the context switches per request of the proxy's threads
# (voluntary: it waited for work; involuntary: the scheduler took the core
# for wrk or the backend), the proxy's CPU per request split into kernel
# and user space, the system calls its kernel time went to, and its
# hottest user-space symbols. callgrind.sh counts instructions; this shows
# what they leave out: system calls, the loopback TCP work a send does for
# its receiver, atomics that bounce between cores, copies by `rep movsb`.
#
#   bash benches/perf.sh                         # BACKEND=plain TARGETS="paddock nginx" DURATION=10s
#   BACKEND=h2 bash benches/perf.sh              # the HTTP/2-over-TLS backend
#   WORKERS=4 bash benches/perf.sh               # Paddock's worker threads (nginx stays at auto)
#   PIN=1 bash benches/perf.sh                   # the proxy alone on CPU 0, wrk and the backend on the rest
#   PLUGINS=1 bash benches/perf.sh               # Paddock with its access log, audit log (Metadata) and metrics
#   KEEP=/tmp/perf bash benches/perf.sh          # keep perf.data and the decoded samples
#
# Needs perf (apt-get install linux-perf), wrk, nginx, python3 and a
# release build (done here unless BIN_DIR=).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/nginx.sh
BACKEND=${BACKEND:-plain}
DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-}
read -r -a targets <<< "${TARGETS:-paddock nginx}"
for tool in perf wrk nginx python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install linux-perf wrk nginx-light python3)" >&2; exit 1; }
done
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release -q -p paddock -p paddock-tests --bin paddock --bin fake-apiserver
  bin=target/release
fi
source benches/common.sh
out=${KEEP:-$tmp}
mkdir -p "$out"

# PIN=1: the proxy on CPU 0, everything else on the other CPUs, and one
# worker per CPU the proxy has.
proxy_cpus=() rest_cpus=() nginx_workers=auto
if [ -n "${PIN:-}" ]; then
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs 2 CPUs or more" >&2; exit 1; }
  proxy_cpus=(taskset -c 0) rest_cpus=(taskset -c "1-$(($(nproc) - 1))") nginx_workers=1
  WORKERS=${WORKERS:-1}
fi

PROXY_TOKEN=bench-proxy-token
CALLER_TOKEN=bench-caller-token
PATH_=/api/v1/namespaces/default/pods/bench
echo "$PROXY_TOKEN" > "$tmp/proxy-token"
echo "$CALLER_TOKEN,alice,1001,\"developers,ops\"" > "$tmp/tokens.csv"
case $BACKEND in
  plain) fake_flags=(--plain-http) trust=(--dangerous-upstream-allow-plaintext) scheme=http ;;
  h2) fake_flags=(--cert-dir "$tmp") trust=(--upstream-ca "$tmp/ca.crt") scheme=https ;;
  *) echo "unknown BACKEND $BACKEND (plain, h2)" >&2; exit 1 ;;
esac
"${rest_cpus[@]}" "$bin/fake-apiserver" --listen 127.0.0.1:0 --token "$PROXY_TOKEN" "${fake_flags[@]}" \
  2>"$tmp/fake.log" & pids+=($!)
upstream=$(wait_log "$tmp/fake.log" "listening on" | awk '{print $NF}')

config="" log=warn,paddock::serve=info
[ -n "$WORKERS" ] && config="workers: $WORKERS"
if [ -n "${PLUGINS:-}" ]; then
  log=info
  config+="
audit:
  file: {path: $tmp/audit.log}
  onFull: drop
metrics:
  listen: 127.0.0.1:$(free_port)"
fi
printf '%s\n' "$config" > "$tmp/paddock.yaml"
RUST_LOG=$log "${proxy_cpus[@]}" "$bin/paddock" serve --config "$tmp/paddock.yaml" \
  --upstream "$upstream" --upstream-token-file "$tmp/proxy-token" "${trust[@]}" --listen 127.0.0.1:0 \
  --data-dir "$tmp/paddock" --token-auth-file "$tmp/tokens.csv" --authorization allow-authenticated \
  >/dev/null 2>"$tmp/paddock.log" & pids+=($!)
paddock_pid=$!
paddock_addr=$(wait_log "$tmp/paddock.log" "paddock listening" | sed -E 's/.*addr=([0-9.:]+).*/\1/')

nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
$(nginx_main "$tmp/nginx" "$nginx_workers")
http {
$(nginx_proxy_settings "$tmp/nginx" "$tmp/paddock/tls/tls.crt" "$tmp/paddock/tls/tls.key" "$tmp/ca.crt")
$(nginx_upstream api "${upstream#*://}")
$(nginx_server "$nginx_port" api "$scheme" "access_log off;")
}
CONF
"${proxy_cpus[@]}" nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>"$tmp/nginx/stderr.log" & pids+=($!)
nginx_pid=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/"$nginx_port") 2>/dev/null && break; sleep 0.05; done

# threads TARGET: the /proc/PID/task/TID directories of the proxy's serving threads.
threads() {
  case $1 in
    paddock) grep -l '^paddock-worker' /proc/"$paddock_pid"/task/*/comm | xargs -n1 dirname ;;
    nginx) for p in $(pgrep -P "$nginx_pid"); do echo "/proc/$p"; done ;;
  esac
}
# switches TARGET: "voluntary involuntary" context switches of those threads so far.
switches() {
  local v=0 n=0 t
  for t in $(threads "$1"); do
    v=$((v + $(awk '$1=="voluntary_ctxt_switches:" {print $2}' "$t/status")))
    n=$((n + $(awk '$1=="nonvoluntary_ctxt_switches:" {print $2}' "$t/status")))
  done
  echo "$v $n"
}
declare -A url=([paddock]="https://$paddock_addr$PATH_" [nginx]="https://127.0.0.1:$nginx_port$PATH_")
declare -A comm=([paddock]=paddock-worker- [nginx]=nginx)
declare -A token=([paddock]=$CALLER_TOKEN [nginx]=$PROXY_TOKEN)

echo "perf: wrk -t2 -c64 -d$DURATION, GET $PATH_, $BACKEND backend, $(nproc) CPUs${PIN:+, proxy pinned to CPU 0}, Paddock workers: ${WORKERS:-one per CPU}${PLUGINS:+, Paddock with its plugins}"
for t in "${targets[@]}"; do
  [ -n "${url[$t]:-}" ] || { echo "unknown target $t (paddock, nginx)" >&2; exit 1; }
  "${rest_cpus[@]}" wrk -t2 -c64 -d2s -H "Authorization: Bearer ${token[$t]}" "${url[$t]}" >/dev/null
  read -r v0 n0 < <(switches "$t")
  perf record -q -a -g -F 999 -o "$out/$t.data" -- \
    "${rest_cpus[@]}" wrk -t2 -c64 -d"$DURATION" --latency -H "Authorization: Bearer ${token[$t]}" "${url[$t]}" \
    > "$out/$t.wrk" 2>/dev/null
  read -r v1 n1 < <(switches "$t")
  perf script -i "$out/$t.data" --comm "${comm[$t]}" -F comm,ip,sym 2>/dev/null > "$out/$t.samples"
  python3 - "$t" "$out/$t.wrk" "$out/$t.samples" "$((v1 - v0))" "$((n1 - n0))" <<'PY'
import collections, re, sys
name, wrk, samples_file, voluntary, involuntary = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = open(wrk).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
p50 = re.search(r"\s50%\s+(\S+)", text).group(1)
p99 = re.search(r"\s99%\s+(\S+)", text).group(1)
samples, current = [], None
for line in open(samples_file):
    if not line.strip():
        continue
    if not line[0].isspace():
        if current:
            samples.append(current)
        current = []
        continue
    parts = line.split(None, 1)
    current.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
if current:
    samples.append(current)
kernel = [s for s in samples if s[0][0].startswith("ffffffff")]
user = [s for s in samples if not s[0][0].startswith("ffffffff")]
n = len(samples)
us = n / 999 / requests * 1e6  # samples at 999 Hz -> CPU µs per request
print(f"\n{name}: {rps} req/s, p50 {p50}, p99 {p99}")
print(f"  context switches per request: {voluntary / requests:.3f} voluntary, {involuntary / requests:.3f} involuntary")
print(f"  CPU per request: {us:.2f} µs, kernel {100 * len(kernel) / n:.1f}%, user {100 * len(user) / n:.1f}%")
calls = collections.Counter()
for s in kernel:
    entry = next((f for _, f in s if f.startswith("__x64_sys_")), None)
    soft = any(f == "handle_softirqs" for _, f in s)
    calls[entry[len("__x64_sys_"):] if entry else ("softirq" if soft else "other")] += 1
print("  kernel time by system call:", ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in calls.most_common(6)))
leaves = collections.Counter(s[0][1].replace(" (inlined)", "") for s in user)
print("  hottest user-space symbols (% of its CPU):")
for symbol, count in leaves.most_common(12):
    print(f"    {100 * count / n:5.2f}%  {symbol[:110]}")
PY
done
