#!/usr/bin/env bash
# System packages the test suite needs, from Debian: Chromium for the browser test (driven by
# Python Playwright, never a downloaded browser) and Graphviz's `dot` for `medallion-nb dag --out x.png`.
set -euo pipefail

PYTHON="${PYTHON:-python}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v dot >/dev/null 2>&1; then
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core graphviz
fi
"$PYTHON" -m pip install --quiet "playwright>=1.45"
chromium --version
dot -V
"$PYTHON" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
