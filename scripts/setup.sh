#!/usr/bin/env bash
# Installs everything the demo and the test suite need, idempotently:
# system packages (as root), pnpm, the workspace's dependencies, moto for the
# AWS tests, a kube-apiserver for the kube tests (built with Go from the module
# proxy and cached; the first build takes minutes), and a build of every
# package. Quick when all is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

APT_PACKAGES=(iproute2 iptables nftables etcd-server etcd-client iperf3 iputils-ping tcpdump python3-venv procps psmisc openssl ethtool curl python3 make g++)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  log "not root: skipping Debian packages (${APT_PACKAGES[*]}); tests that need them say so"
fi

PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  log "installing pnpm $PNPM_VERSION"
  if [ "$(id -u)" = 0 ]; then
    npm install -g --silent "pnpm@$PNPM_VERSION" >/dev/null 2>&1
  else
    npm install -g --silent --prefix "$HOME/.local" "pnpm@$PNPM_VERSION" >/dev/null 2>&1
    export PATH="$HOME/.local/bin:$PATH"
  fi
fi

log "installing workspace dependencies"
pnpm install --frozen-lockfile --reporter=silent

# moto's EC2 server is the AWS test peer (Python, in a virtualenv of its own).
MOTO_VERSION=5.1.22
if [ ! -x .venv/moto/bin/moto_server ] || ! .venv/moto/bin/pip show moto 2>/dev/null | grep -q "^Version: $MOTO_VERSION$"; then
  PY=$(command -v /usr/bin/python3 || command -v python3 || true)
  if [ -n "$PY" ] && "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    log "installing moto[server]==$MOTO_VERSION into .venv/moto"
    "$PY" -m venv .venv/moto
    .venv/moto/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  else
    log "no python3 with venv: the AWS tests will be skipped"
  fi
fi

# A real kube-apiserver for the kube tests, built from the Go module proxy once
# and cached by version outside the repository (minutes the first time).
if [ "${FLANNEL_SKIP_KUBE_APISERVER:-}" = 1 ]; then
  log "FLANNEL_SKIP_KUBE_APISERVER=1: not building kube-apiserver; the kube tests will be skipped"
elif ! bash scripts/build-kube-apiserver.sh; then
  log "kube-apiserver build failed (see above): the kube tests will be skipped"
fi

log "building packages"
pnpm -s build >/dev/null
log "ready"
