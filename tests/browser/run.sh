#!/usr/bin/env bash
# Browser test of the operator dashboard: Debian's Chromium, driven by
# playwright-core over CDP, against the real `arc` binary.
#
#   ARC_BIN=target/debug/arc tests/browser/run.sh
#
# Builds nothing: ARC_BIN (default target/debug/arc) must exist.
# CHROMIUM overrides the browser (default /usr/bin/chromium; installed with
# apt-get when missing). ARC_UPDATE_SCREENSHOT=1 copies the screenshot to
# docs/dashboard.png. Needs no standard input.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

ARC_BIN="${ARC_BIN:-$root/target/debug/arc}"
case "$ARC_BIN" in /*) ;; *) ARC_BIN="$root/$ARC_BIN" ;; esac
if [ ! -x "$ARC_BIN" ]; then
  echo "browser test: ARC_BIN=$ARC_BIN is not an executable (build it first: cargo build --bin arc)" >&2
  exit 2
fi
export ARC_BIN

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "browser test: installing Debian's chromium"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends chromium </dev/null; then
    $sudo apt-get update </dev/null
    $sudo apt-get install -y --no-install-recommends chromium </dev/null
  fi
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "browser test: no Chromium at $CHROMIUM" >&2
  exit 2
fi
export CHROMIUM

cd "$here"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser test: node and npm are required" >&2
  exit 2
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "browser test: playwright-core needs Node 20 or newer (have $(node --version))" >&2
  exit 2
fi
npm ci --no-audit --no-fund --loglevel=error </dev/null
exec node dashboard.test.js
