#!/usr/bin/env bash
# Prints the path of an official Node binary for each major version given
# (`bash scripts/node-versions.sh 22 24`), one per line. The binaries come from
# the npm registry's `node-linux-<arch>` packages (a whole Node release: bin/node
# and include/node, which native addons build against) and are cached by exact
# version outside the repository:
#   ${FLANNEL_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flannel-ts}/node-v<version>-linux-<arch>/
# Quick when cached; a download prints what it fetches and how long it took on
# stderr. The exact versions are pinned here so every run tests the same ones.
set -euo pipefail

declare -A PINNED=([20]=20.20.2 [22]=22.23.5 [24]=24.22.3)

CACHE_ROOT=${FLANNEL_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flannel-ts}
case "$(uname -m)" in
  x86_64) ARCH=x64 ;;
  aarch64) ARCH=arm64 ;;
  *) echo "node-versions: no official Node package for $(uname -m)" >&2; exit 1 ;;
esac

for major in "$@"; do
  version=${PINNED[$major]:-}
  if [ -z "$version" ]; then
    echo "node-versions: no pinned version for Node $major (known: ${!PINNED[*]})" >&2
    exit 2
  fi
  dir="$CACHE_ROOT/node-v$version-linux-$ARCH"
  if [ ! -x "$dir/bin/node" ]; then
    started=$SECONDS
    echo "[node-versions] fetching node-linux-$ARCH@$version from the npm registry (about 50 MB)" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "node-linux-$ARCH@$version" >/dev/null)
    mkdir -p "$tmp/x"
    tar xzf "$tmp"/node-linux-"$ARCH"-"$version".tgz -C "$tmp/x"
    "$tmp/x/package/bin/node" --version >/dev/null
    mkdir -p "$CACHE_ROOT"
    rm -rf "$dir"
    mv "$tmp/x/package" "$dir"
    rm -rf "$tmp"
    trap - EXIT
    echo "[node-versions] Node $version ready in $((SECONDS - started)) s" >&2
  fi
  echo "$dir/bin/node"
done
