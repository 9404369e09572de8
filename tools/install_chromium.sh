#!/usr/bin/env bash
# Install Chromium from the system's packages (Debian: chromium) for the web app's browser tests
# (tests/test_app.py, driven by Playwright). Returns at once when a Chromium is there already:
# $MASK2FORMER_CHROMIUM, else chromium or chromium-browser on PATH.
#
#   bash tools/install_chromium.sh           # install it (as root, or with sudo), else fail
#   bash tools/install_chromium.sh --check   # only say whether it is there (exit 1 if not)
set -euo pipefail

say() { echo "[install_chromium] $*"; }

find_chromium() {
  if [[ -n "${MASK2FORMER_CHROMIUM:-}" && -x "${MASK2FORMER_CHROMIUM}" ]]; then
    echo "$MASK2FORMER_CHROMIUM"
    return 0
  fi
  command -v chromium || command -v chromium-browser
}

if path="$(find_chromium)"; then
  say "found $path ($("$path" --version 2>/dev/null || echo "version unknown"))"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  say "Chromium is not installed: install it with 'sudo apt-get install chromium' (Debian) or" \
      "'sudo apt-get install chromium-browser' (Ubuntu), or set MASK2FORMER_CHROMIUM to its path"
  exit 1
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  say "Chromium is not installed and this user cannot install system packages: run" \
      "'sudo apt-get install chromium' (Debian), or set MASK2FORMER_CHROMIUM to a Chromium"
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  say "Chromium is not installed and there is no apt-get here: install Chromium with the" \
      "system's package manager, or set MASK2FORMER_CHROMIUM to its path"
  exit 1
fi

say "installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
# (${as_root[@]+...}: an empty array under set -u fails on bash before 4.4.)
run_as_root() { ${as_root[@]+"${as_root[@]}"} "$@"; }
# Debian names the package chromium; Ubuntu chromium-browser.
if ! { run_as_root apt-get update -qq && { run_as_root apt-get install -y -qq chromium \
       || run_as_root apt-get install -y -qq chromium-browser; }; }; then
  say "apt-get could not install chromium (see above): the web app's browser tests need it"
  exit 1
fi
path="$(find_chromium)" || { say "chromium was installed but is not on PATH"; exit 1; }
say "installed $path ($("$path" --version 2>/dev/null || echo "version unknown"))"
