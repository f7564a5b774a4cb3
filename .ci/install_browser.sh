#!/usr/bin/env bash
# Install Debian's Chromium for the real-browser widget test (tests/browser/).
# Idempotent: does nothing when /usr/bin/chromium is already there. Playwright for Python comes
# from requirements.lock through `make setup`; Playwright's own browser download is never used
# (it needs the network at test time and is not available offline).
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: ERROR: no apt-get; install Chromium by hand and set COURSE_CHROMIUM=/path/to/it" >&2
    exit 1
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install_browser: ERROR: not root and no sudo; install Debian's 'chromium' package by hand" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# fonts-dejavu-core: legible text in the screenshots on a bare machine.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "install_browser: installed $(/usr/bin/chromium --version 2>/dev/null)"
