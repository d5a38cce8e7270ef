"""How ``medallion-nb dashboard`` starts Voila: the command line, its environment and the address to open.

Pure, so the command is tested without starting a server; the CLI runs it.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from medallion_nb.project import Project

DASHBOARD_NOTEBOOK = Path(__file__).parent / "dashboard.ipynb"  # used when the project has none of its own
PROJECT_NOTEBOOK = Path("notebooks") / "dashboard.ipynb"
PROJECT_ENV = "MEDALLION_PROJECT"


@dataclass(frozen=True)
class DashboardServer:
    """What to run: ``argv`` in ``cwd`` with ``env`` added; people open ``url``."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    url: str
    notebook: Path


def dashboard_server(project: Project, *, port: int = 8866, token: str | None = None,
                     notebook: Path | None = None) -> DashboardServer:
    """Voila serving the project's dashboard notebook on 127.0.0.1 behind a token.

    The notebook is ``notebook``, else ``notebooks/dashboard.ipynb`` in the project, else the
    packaged one; it finds the project through ``$MEDALLION_PROJECT``. Voila hides code cells
    and shows tracebacks to nobody.
    """
    chosen = Path(notebook) if notebook else (project.root / PROJECT_NOTEBOOK)
    if not chosen.is_file():
        chosen = DASHBOARD_NOTEBOOK
    chosen = chosen.resolve()
    token = token or secrets.token_urlsafe(24)
    argv = [sys.executable, "-m", "voila", chosen.name, "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
            "--Voila.port_retries=0", f"--Voila.token={token}", "--show_tracebacks=False",
            "--VoilaConfiguration.strip_sources=True"]
    return DashboardServer(argv=argv, cwd=chosen.parent, env={PROJECT_ENV: str(project.root)},
                           url=f"http://127.0.0.1:{port}/?token={token}", notebook=chosen)
