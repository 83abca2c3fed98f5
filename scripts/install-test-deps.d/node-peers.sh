#!/usr/bin/env bash
# Node peers of the tests (tests/peers/package.json, pinned by its package-lock.json): Microsoft's
# Adaptive Cards parser (npm `adaptivecards`) validates the Teams delivery's card
# (tests/deliverers/test_chat_teams.py). Installed with `npm ci` only when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/../../tests/peers"
if ! command -v npm >/dev/null 2>&1; then
  echo "install-test-deps: npm missing (apt-get install -y nodejs npm); the Teams card test will skip" >&2
  exit 0
fi
stamp=node_modules/.installed-from-lock.json
if [ -d node_modules/adaptivecards ] && cmp -s "$stamp" package-lock.json; then
  exit 0
fi
echo "install-test-deps: npm ci in tests/peers"
if ! npm ci --no-audit --no-fund --loglevel=error >/dev/null; then
  echo "install-test-deps: npm ci in tests/peers failed; the Teams card test will skip (fail in CI)" >&2
  exit 0
fi
cp package-lock.json "$stamp"
