#!/usr/bin/env bash
# The browser tests: installs the pinned npm packages (playwright-core, axe-core) when either is
# missing (npm ci), builds the server, and runs the tests in headless Chromium (Debian's
# /usr/bin/chromium; never a downloaded browser).
# Screenshots go to $SCREENSHOT_DIR (default: a fresh temp dir, printed at the start).
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "Chromium is missing: apt-get install -y chromium" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  npm ci --no-audit --no-fund
fi
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  (cd ../.. && cargo build --bin switchboard)
fi
node --test
