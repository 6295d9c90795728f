#!/usr/bin/env bash
# Installs everything the tests need, then runs every suite:
#   1. formatting and lints (cargo fmt, cargo clippy -D warnings);
#   2. unit and integration tests (cargo test: one in-process hub per test,
#      plus the real `arc` binary for lifecycle tests), then clippy on the
#      Windows code paths with a cross toolchain;
#   3. the interop suite: the reference Python code (megastructure-arc
#      0.1.1, from PyPI) and the official MCP SDK, in a venv under target/,
#      against our binary; with it, real MCP clients of both protocol eras
#      (the Python SDK 2.x in a second venv, the TypeScript SDK 1.x and the
#      2026-era TypeScript client 2.x from npm, in tests/mcp-clients);
#   4. the browser test: the dashboard in Debian's Chromium (installed with
#      apt-get when missing), driven by playwright-core from npm.
# Works on a fresh machine with Rust, Python 3 and Node 20+; needs no
# standard input.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }

# Installs a Debian package without prompts (refreshing the lists once if
# the first try fails).
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "$@" </dev/null >/dev/null 2>&1 ||
    { $sudo apt-get update </dev/null >/dev/null 2>&1 &&
      $sudo apt-get install -y --no-install-recommends "$@" </dev/null >/dev/null 2>&1; }
}

# The Windows standard library for rustup and MinGW (SQLite is C).
windows_tools() {
  rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 || return 1
  command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64-posix
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# The wake recipes of docs/WAKE.md drive a real tmux.
command -v tmux >/dev/null || apt_install tmux
cargo test --workspace --locked --all-targets

step "windows: clippy on the cfg(windows) code (x86_64-pc-windows-gnu)"
# CI runs Linux, but Windows users run the hub too: type-check and lint
# the Windows paths (process spawning, signals) with a cross toolchain.
# Needs rustup's Windows std and MinGW (for SQLite's C code); if they
# cannot be installed here, say so and go on.
if windows_tools; then
  CARGO_TARGET_DIR=target/windows cargo clippy --locked --target x86_64-pc-windows-gnu \
    --workspace --all-targets -- -D warnings
else
  echo "SKIPPED: could not install the Windows target or MinGW on this machine"
fi

step "dependency tree (normal edges)"
cargo tree -e normal --locked --depth 1

step "interop: reference Python client against our hub"
VENV=target/interop-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "megastructure-arc==0.1.1" "mcp==1.30.0"
# The Python SDK 2.x cannot share a venv with 1.x: a venv of its own.
MCP2_VENV=target/mcp2-venv
if [ ! -x "$MCP2_VENV/bin/python" ]; then
  python3 -m venv "$MCP2_VENV"
fi
"$MCP2_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==2.3.0"
# The TypeScript clients, pinned in tests/mcp-clients/package-lock.json
# (@modelcontextprotocol/client 2.x needs Node 20+).
(cd tests/mcp-clients && npm ci --no-audit --no-fund --loglevel=error </dev/null)
cargo build --locked --bin arc
ARC_BIN="$PWD/target/debug/arc" "$VENV/bin/python" -m unittest discover \
  -s tests/interop -p 'test_*.py' -v

step "browser: the dashboard in headless Chromium"
ARC_BIN="$PWD/target/debug/arc" tests/browser/run.sh

step "all suites passed"
