#!/usr/bin/env bash
# The authorized cluster endpoint under load: a real `paddock serve` whose
# store holds TOKENS cluster-scoped tokens and a real `paddock sidecar`
# replicating them. Prints the sidecar's time to a full replica, its RSS,
# token-review latency (p50/p99), and the propagation (p50/p99) of token
# revocations (REVOCATIONS trials) and of users disabled and enabled again
# (CHANGES each), each beside the change's own round trip as its baseline.
# STORE=etcd runs the center on a one-member etcd (etcd-server installed)
# and also measures group changes committed to it. Loopback only. Builds
# the release binaries itself.
#
#   bash benches/sidecar.sh                    # TOKENS=100000 REVOCATIONS=200 REVIEWS=20000 CHANGES=100
#   TOKENS=10000 STORE=etcd bash benches/sidecar.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p paddock -p paddock-benches --bin paddock --bin sidecar_bench
timeout 900 target/release/sidecar_bench --paddock target/release/paddock \
  --tokens "${TOKENS:-100000}" --revocations "${REVOCATIONS:-200}" --reviews "${REVIEWS:-20000}" \
  --changes "${CHANGES:-100}" --store "${STORE:-embedded}"
