#!/usr/bin/env bash
# Installs the npm packages of one peer folder (its package.json) into its node_modules.
# Usage: perf/peers/npm-install.sh DIR. Idempotent: a second run changes nothing.
set -euo pipefail
dir=$1
command -v node >/dev/null || { echo "node is needed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "node $(node --version) is too old; 18 or newer is needed" >&2
  exit 1
fi
cd "$dir"
npm install --no-audit --no-fund --omit=dev --loglevel=error
