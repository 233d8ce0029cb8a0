#!/usr/bin/env bash
# Builds a real kube-apiserver for the kube tests from the official
# k8s.io/kubernetes source, fetched through the Go module proxy, into a cache
# outside the repository keyed by version:
#
#   ${FLANNEL_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flannel-ts}/kube-apiserver-<version>/kube-apiserver
#
# Idempotent: when the cached binary reports the right version this returns at
# once. The first build takes minutes (6-10 on 2 cores); a line of progress is
# printed every FLANNEL_KUBE_PROGRESS_SECONDS (default 30). Without Go the
# script says so and exits 0, and the kube tests skip with that reason.
#
# Environment: KUBE_APISERVER_VERSION (default v1.37.2), FLANNEL_TS_CACHE,
# XDG_CACHE_HOME, FLANNEL_KUBE_PROGRESS_SECONDS, GO (a go binary to use).
set -euo pipefail

VERSION=${KUBE_APISERVER_VERSION:-v1.37.2}
CACHE_ROOT=${FLANNEL_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flannel-ts}
OUT_DIR="$CACHE_ROOT/kube-apiserver-$VERSION"
BIN="$OUT_DIR/kube-apiserver"
PROGRESS_SECONDS=${FLANNEL_KUBE_PROGRESS_SECONDS:-30}

log() { printf '[kube-apiserver] %s\n' "$*"; }
elapsed() {
  local s=$(($(date +%s) - $1))
  printf '%dm%02ds' $((s / 60)) $((s % 60))
}

if [[ ! $VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  log "KUBE_APISERVER_VERSION must look like v1.37.2, got '$VERSION'"
  exit 2
fi
MINOR=${BASH_REMATCH[1]}
STAGING_VERSION="v0.$MINOR.${BASH_REMATCH[2]}"

cached() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "Kubernetes $VERSION"; }

if cached; then
  log "$VERSION is cached at $BIN"
  exit 0
fi

GO=${GO:-}
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then
    GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then
    GO=/usr/local/go/bin/go
  fi
fi
if [ -z "$GO" ]; then
  log "Go is not installed (looked on PATH and in /usr/local/go/bin): cannot build kube-apiserver $VERSION."
  log "Install Go >= 1.26 and run scripts/build-kube-apiserver.sh again; until then the kube tests are skipped."
  exit 0
fi
export PATH="$(dirname "$GO"):$PATH"

mkdir -p "$CACHE_ROOT"
# One build at a time per cache; a second caller waits and then finds it cached.
exec 9>"$CACHE_ROOT/.kube-apiserver-$VERSION.lock"
if ! flock -n 9; then
  log "another build of $VERSION is running; waiting for it"
  flock 9
  if cached; then
    log "$VERSION is cached at $BIN"
    exit 0
  fi
fi

START=$(date +%s)
WORK=$(mktemp -d "$CACHE_ROOT/.build-kube-apiserver-$VERSION.XXXXXX")
TICKER=
cleanup() {
  [ -n "$TICKER" ] && kill "$TICKER" 2>/dev/null || true
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building kube-apiserver $VERSION with $("$GO" version | cut -d' ' -f3) into $BIN"
log "the first build takes several minutes (6-10 on 2 cores, ~2.5 GB RAM); later runs use the cache"

log "downloading k8s.io/kubernetes@$VERSION from the module proxy"
step=$(date +%s)
SRC_DIR=$("$GO" mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$SRC_DIR" ] || [ ! -f "$SRC_DIR/go.mod" ]; then
  log "go mod download did not give a source directory for k8s.io/kubernetes@$VERSION"
  exit 1
fi
cp -r "$SRC_DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
log "source ready ($(elapsed "$step"))"

# The module zip has no staging/src: use the staging modules from the proxy.
cd "$WORK/src"
rm -f go.work go.work.sum
awk -v v="$STAGING_VERSION" '
  /^replace[[:space:]]*\($/ { skip = 1; next }
  skip && /^\)$/ { skip = 0; next }
  skip { next }
  /^replace[[:space:]]+k8s\.io\/[^ ]+[[:space:]]+=>[[:space:]]+\.\/staging\// { next }
  /^[[:space:]]*k8s\.io\/[^ ]+ v0\.0\.0([[:space:]]|$)/ { sub(/ v0\.0\.0/, " " v) }
  { print }
' go.mod >go.mod.new
mv go.mod.new go.mod
if grep -q 'staging/src' go.mod || grep -qE '^[[:space:]]*k8s\.io/[^ ]+ v0\.0\.0([[:space:]]|$)' go.mod; then
  log "go.mod still refers to staging/src after editing; the layout of $VERSION is not the expected one"
  exit 1
fi

TAGS='selinux,notest,grpcnotrace'
X="-X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1"
X="$X -X k8s.io/component-base/version.gitMinor=$MINOR"
X="$X -X k8s.io/client-go/pkg/version.gitVersion=$VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
X="$X -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

log "resolving dependencies"
step=$(date +%s)
if ! TOTAL=$(CGO_ENABLED=0 "$GO" list -mod=mod -tags "$TAGS" -deps ./cmd/kube-apiserver 2>"$WORK/list.log" | wc -l); then
  tail -n 30 "$WORK/list.log" >&2
  log "resolving dependencies failed"
  exit 1
fi
log "dependencies ready: $TOTAL packages ($(elapsed "$step"))"

log "compiling (nice -n 19); progress every ${PROGRESS_SECONDS}s"
step=$(date +%s)
(
  while sleep "$PROGRESS_SECONDS"; do
    done_count=$(grep -c . "$WORK/build.log" 2>/dev/null || true)
    log "compiling: $(elapsed "$step") elapsed, ${done_count:-0} packages compiled of at most $TOTAL"
  done
) &
TICKER=$!
mkdir -p "$WORK/out"
if ! CGO_ENABLED=0 nice -n 19 "$GO" build -v -mod=mod -trimpath -tags "$TAGS" \
  -ldflags "all=$X -s -w" -o "$WORK/out/kube-apiserver" ./cmd/kube-apiserver 2>"$WORK/build.log"; then
  kill "$TICKER" 2>/dev/null || true
  TICKER=
  tail -n 30 "$WORK/build.log" >&2
  log "go build failed after $(elapsed "$START")"
  exit 1
fi
kill "$TICKER" 2>/dev/null || true
TICKER=

got=$("$WORK/out/kube-apiserver" --version 2>/dev/null || true)
if [ "$got" != "Kubernetes $VERSION" ]; then
  log "the new binary reports '$got', expected 'Kubernetes $VERSION'"
  exit 1
fi
mkdir -p "$OUT_DIR"
mv -f "$WORK/out/kube-apiserver" "$BIN.new"
mv -f "$BIN.new" "$BIN"
log "built $got in $(elapsed "$START") (compile $(elapsed "$step")): $BIN"
