"""The wheel a generated project's Kestra image installs: built from the source, it runs a new project alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medallion_nb import __version__, connect
from medallion_nb.kestra.compose import wheel_name
from tests.conftest import REPO


def build_wheel(dest: Path, tmp: Path) -> Path:
    """``pip wheel --no-deps -w dest <source>``, from a copy of the source (the checkout stays clean)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "medallion_nb", src / "medallion_nb", ignore=shutil.ignore_patterns("__pycache__"))
    # --no-build-isolation: the suite runs offline, with the locked setuptools.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(dest), str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


@pytest.mark.notebook
def test_the_wheel_runs_a_new_project_and_is_named_as_the_dockerfile_expects(tmp_path):
    wheels = build_wheel(tmp_path / "wheels", tmp_path)
    assert [p.name for p in wheels.iterdir()] == [wheel_name(__version__)]

    # Installing a pure-Python wheel is unpacking it; only this copy of medallion_nb is importable.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheels / wheel_name(__version__)) as wheel:
        wheel.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}

    def python(*args: str, cwd: Path) -> str:
        proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert python("-c", "import medallion_nb; print(medallion_nb.__file__)", cwd=tmp_path).strip() == str(
        site / "medallion_nb" / "__init__.py")
    python("-m", "medallion_nb", "init", "fromwheel", cwd=tmp_path)
    root = tmp_path / "fromwheel"
    assert (root / "kestra" / "wheels" / "README.md").is_file()
    assert f"/opt/medallion-wheels/{wheel_name(__version__)}" in (root / "kestra" / "Dockerfile").read_text()
    python("-m", "medallion_nb", "run", "--run-id", "w1", cwd=root)  # the kernels import the wheel's code too
    with connect(root) as lake:
        assert lake.sql("SELECT count(*) FROM gold.daily_store_sales").fetchall() == [(9,)]
