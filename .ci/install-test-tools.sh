#!/usr/bin/env bash
# System packages the test suite needs, from Debian: Chromium for the browser test (driven by
# Python Playwright, never a downloaded browser) and Graphviz's `dot` for `medallion-nb dag --out x.png`.
# Python packages (Playwright included) come from the lock, requirements/dev.txt, not from here.
set -euo pipefail

PYTHON="${PYTHON:-python}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v dot >/dev/null 2>&1; then
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core graphviz
fi
if ! "$PYTHON" -c "import playwright" 2>/dev/null; then
    echo "error: Playwright is not installed in $("$PYTHON" -c 'import sys; print(sys.prefix)')." >&2
    echo "  install the locked environment first: pip install --require-hashes -r requirements/dev.txt" >&2
    exit 1
fi
chromium --version
dot -V
"$PYTHON" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
