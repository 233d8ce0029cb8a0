#!/usr/bin/env bash
# Runs the whole test suite: setup, lint, format check, typecheck, tests on the
# machine's Node (all four layers), then the build, the unit and integration
# layers (the packaged-consumer test among them) on Node 22 and 24, and a line
# saying which Node versions passed. Arguments go to the first vitest run
# (e.g. a file filter); with arguments the other Node versions are not run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -d "$HOME/.local/bin" ] && export PATH="$HOME/.local/bin:$PATH"
echo '[test] lint'
pnpm -s lint
echo '[test] format'
pnpm -s format:check >/dev/null
echo '[test] typecheck'
pnpm -s typecheck
echo '[test] README examples'
pnpm -s exec tsx test/readme-examples.ts
echo "[test] vitest on Node $(node --version)"
pnpm -s test "$@"
passed=("$(node --version)")

if [ $# -eq 0 ] && [ "${FLANNEL_TEST_NODE_VERSIONS-22 24}" != "" ]; then
  for major in ${FLANNEL_TEST_NODE_VERSIONS-22 24}; do
    node_bin=$(bash scripts/node-versions.sh "$major")
    version=$("$node_bin" --version)
    started=$SECONDS
    echo "[test] Node $version: build, udp addon from source, unit and integration layers"
    PATH="$(dirname "$node_bin"):$PATH" bash -c '
      set -euo pipefail
      pnpm -s build >/dev/null
      pnpm -s --filter @flannel/backend-udp run build:native >/dev/null
      pnpm -s exec vitest run --project unit --project integration
    '
    echo "[test] Node $version passed in $((SECONDS - started)) s"
    passed+=("$version")
  done
  # Leave the build as the machine's own Node makes it.
  pnpm -s build >/dev/null
  pnpm -s --filter @flannel/backend-udp run build:native >/dev/null
fi
echo "[test] passed on Node ${passed[*]}"
