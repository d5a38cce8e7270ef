#!/usr/bin/env bash
# System packages the test suite needs, from Debian: Chromium for the browser test (driven by
# Python Playwright, never a downloaded browser) and Graphviz's `dot` for `medallion-nb dag --out x.png`.
# PostgreSQL (Debian's postgresql package) for the database-source tests, which start a private server.
# Python packages (Playwright included) come from the lock, requirements/dev.txt, not from here.
set -euo pipefail

PYTHON="${PYTHON:-python}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

have_postgres() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
if ! command -v chromium >/dev/null 2>&1 || ! command -v dot >/dev/null 2>&1 || ! have_postgres; then
    # The tests start their own private PostgreSQL: no system-wide cluster is needed.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/medallion-tests.conf >/dev/null
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core graphviz postgresql
fi
if ! "$PYTHON" -c "import playwright" 2>/dev/null; then
    echo "error: Playwright is not installed in $("$PYTHON" -c 'import sys; print(sys.prefix)')." >&2
    echo "  install the locked environment first: pip install --require-hashes -r requirements/dev.txt" >&2
    exit 1
fi
chromium --version
dot -V
ls /usr/lib/postgresql/*/bin/initdb
"$PYTHON" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
