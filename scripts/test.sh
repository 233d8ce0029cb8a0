#!/usr/bin/env bash
# Runs the whole test suite: setup, lint, format check, typecheck, tests.
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
echo '[test] vitest'
pnpm -s test "$@"
