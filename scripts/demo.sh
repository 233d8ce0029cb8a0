#!/usr/bin/env bash
# Runs the quick-start demo (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -d "$HOME/.local/bin" ] && export PATH="$HOME/.local/bin:$PATH"
exec pnpm -s --filter @flannel/examples run demo "$@"
