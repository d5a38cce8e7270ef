#!/usr/bin/env bash
# Install what the browser tests need: Debian's Chromium and the Python Playwright driver.
# Never downloads a browser: Playwright drives /usr/bin/chromium (see tests/test_browser.py).
set -euo pipefail

PYTHON="${PYTHON:-python}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core
fi
"$PYTHON" -m pip install --quiet "playwright>=1.45"
chromium --version
"$PYTHON" -c "import playwright; from importlib.metadata import version; print('playwright', version('playwright'))"
