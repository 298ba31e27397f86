#!/usr/bin/env bash
# The one command that installs what Paddock's tests need and runs all of them:
# formatting, lints, unit tests, doc tests and the integration tests that
# start real components (kubectl, headless Chromium for the GitHub browser
# flow; slapd, Samba, etcd as their providers land; oidc-provider from npm
# for the OpenID Connect tests). Run from anywhere; needs
# root (or sudo) only to install missing Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests start for real: slapd (the OpenLDAP
# tests start their own on random loopback ports) and a Samba AD DC (the
# Active Directory test provisions one and runs it in its own network
# namespace with unshare/nsenter from util-linux and ip from iproute2), and
# headless Chromium with its WebDriver for the browser sign-in tests, etcd
# (the store suite and the replica tests start their own members), and
# protoc with the well-known types (libprotobuf-dev: google/protobuf/*.proto),
# to check the etcd API's descriptor set that builds use instead of protoc.
packages=(slapd ldap-utils samba samba-ad-dc samba-ad-provision iproute2 procps
  chromium chromium-driver etcd-server protobuf-compiler libprotobuf-dev)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing ${missing[*]}"
  # Keep postinst scripts from starting system daemons (a slapd on port
  # 389 is not wanted): a policy-rc.d that denies, only while installing.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then
    $sudo rm -f /usr/sbin/policy-rc.d
  fi
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is not installed: install it (Debian package 'kubectl' from the Kubernetes or Google Cloud apt repository, or a kubectl binary on PATH)" >&2
  exit 1
fi

# The real OpenID provider of the OIDC tests: npm oidc-provider, pinned in
# tests/oidc/package-lock.json. Node.js and npm come from Debian when missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing nodejs npm"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "==> npm ci (tests/oidc)"
  (cd tests/oidc && npm ci --no-audit --no-fund)
fi

echo "==> cargo fmt"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> build"
cargo build --workspace --all-targets
# The build above took etcd's API from the descriptor set committed in
# proxy-core/etcd-proto (no protoc needed to build): check it is what the real
# protoc makes of the etcd client's .proto files.
echo "==> etcd descriptor set (proxy-core/etcd-proto)"
proxy-core/etcd-proto/protoc --check
# The cargo-fuzz crate is outside the workspace (own lock file and target/):
# check it builds, which also builds proxy-core without default features.
echo "==> fuzz targets (proxy-core/fuzz)"
(cd proxy-core/fuzz && cargo check)
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
echo "==> library docs"
RUSTDOCFLAGS="-D warnings" cargo doc -p proxy-core -p policy --no-deps
echo "==> doc tests"
cargo test --workspace --doc
