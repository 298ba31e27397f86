# What every benchmark script shares (sourced): a temporary directory $tmp,
# removed at exit together with every process whose pid is in $pids, and
# the helpers to wait for a process's log line and to find a free port.

tmp=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# wait_log FILE PATTERN [SECONDS]: prints the first line of FILE matching
# PATTERN, waiting up to SECONDS (default 10); fails with FILE's content
# when it never comes (the process died, or is slower than that).
wait_log() {
  local deadline=$((SECONDS + ${3:-10}))
  while [ "$SECONDS" -le "$deadline" ]; do
    if grep -q "$2" "$1" 2>/dev/null; then grep -m1 "$2" "$1"; return; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

# free_port: a TCP port on 127.0.0.1 nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
