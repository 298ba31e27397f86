#!/usr/bin/env bash
# The authorized cluster endpoint under load: a real `paddock serve` whose
# store holds TOKENS cluster-scoped tokens and a real `paddock sidecar`
# replicating them. Prints the sidecar's time to a full replica, its RSS,
# token-review latency (p50/p99) and revocation propagation (p50/p99 over
# REVOCATIONS trials). Loopback only. Builds the release binaries itself.
#
#   bash benches/sidecar.sh                    # TOKENS=100000 REVOCATIONS=200 REVIEWS=20000
#   TOKENS=10000 bash benches/sidecar.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p paddock -p paddock-benches --bin paddock --bin sidecar_bench
timeout 900 target/release/sidecar_bench --paddock target/release/paddock \
  --tokens "${TOKENS:-100000}" --revocations "${REVOCATIONS:-200}" --reviews "${REVIEWS:-20000}"
