"""The contenders: the same bronze -> silver -> gold logic, each written the way its users write it.

Each contender is a script run in its own process (so its memory and time are
its own); :data:`CONTENDERS` says how to start it and where it leaves gold.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
PYTHON = sys.executable
OPENMEDALLION_VENV = BENCH / ".venv-openmedallion"


@dataclass(frozen=True)
class Contender:
    """How to run one contender and find its gold tables."""

    name: str
    label: str
    argv: Callable[[Path, Path], list[str]]  # (project dir, output dir) -> command
    gold: Callable[[Path, Path, str], str]  # (project dir, output dir, table) -> DuckDB table expression
    available: Callable[[], str | None] = lambda: None  # None if it can run, else why not


def _parquet_gold(project: Path, out: Path, table: str) -> str:
    from gold import parquet_scan

    return parquet_scan([out / "gold" / f"{table}.parquet"])


def _delta_gold(project: Path, out: Path, table: str) -> str:
    from gold import delta_scan

    return delta_scan(project / "data" / "lake" / "gold" / table)


def _script(name: str) -> Callable[[Path, Path], list[str]]:
    return lambda project, out: [PYTHON, str(BENCH / "contenders" / f"{name}.py"), str(project), str(out)]


def _medallion_argv(project: Path, out: Path) -> list[str]:
    return [PYTHON, str(BENCH / "contenders" / "medallion.py"), str(project), str(out)]


def _openmedallion_argv(project: Path, out: Path) -> list[str]:
    return [str(OPENMEDALLION_VENV / "bin" / "python"), str(BENCH / "contenders" / "openmedallion_nb.py"),
            str(project), str(out)]


def _openmedallion_available() -> str | None:
    python = OPENMEDALLION_VENV / "bin" / "python"
    if not python.exists():
        return f"no virtualenv at {OPENMEDALLION_VENV} (see bench/README.md)"
    found = subprocess.run([str(python), "-c", "import openmedallion"], capture_output=True)
    return None if found.returncode == 0 else "openmedallion is not installed in its virtualenv"


def _module_available(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        import importlib.util

        return None if importlib.util.find_spec(module) else f"python package {module} is not installed"
    return check


def _medallion_available() -> str | None:
    return None if shutil.which("medallion-nb") or (Path(PYTHON).parent / "medallion-nb").exists() \
        else "the medallion-nb command is not installed"


CONTENDERS: dict[str, Contender] = {c.name: c for c in (
    Contender("medallion", "medallion_nb (notebooks)", _medallion_argv, _delta_gold, _medallion_available),
    Contender("duckdb_raw", "raw DuckDB SQL", _script("duckdb_raw"), _parquet_gold),
    Contender("polars_nb", "Polars", _script("polars_nb"), _parquet_gold, _module_available("polars")),
    Contender("pandas_nb", "pandas", _script("pandas_nb"), _parquet_gold, _module_available("pandas")),
    Contender("openmedallion_nb", "openmedallion (dlt + Polars)", _openmedallion_argv, _parquet_gold,
              _openmedallion_available),
)}
