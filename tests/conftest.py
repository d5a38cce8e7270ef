"""Shared fixtures: temporary copies of the demo project, so the repo's data/ is never touched.

Every test also runs under a guard that fails it when it opens a file outside the
repository (see ``read_guard.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from read_guard import GUARD, describe

import medallion_nb as mnb
from medallion_nb import secrets

REPO = Path(__file__).resolve().parents[1]
KESTRA_SCHEMA = REPO / "tests" / "kestra_schema"


@pytest.fixture(autouse=True)
def _secrets_resolved_by_a_test_stay_in_it():
    """A resolved secret is remembered process-wide for redaction; forget a test's after it.

    Otherwise a value one test resolved (``DB_NAME=shop``) is redacted from the messages
    of whichever test runs next in the same worker process.
    """
    with secrets._resolved_lock:
        before = dict(secrets._resolved)
    yield
    with secrets._resolved_lock:
        secrets._resolved.clear()
        secrets._resolved.update(before)


@pytest.fixture(autouse=True)
def _opens_nothing_outside_the_repository(tmp_path_factory: pytest.TempPathFactory):
    """Fail the test that opened files outside the repository (or its setup or teardown did)."""
    GUARD.allow(tmp_path_factory.getbasetemp())
    GUARD.install()
    before = GUARD.take()
    yield
    opened = before + GUARD.take()
    if opened:
        pytest.fail(describe(opened, GUARD.repo), pytrace=False)


def copy_demo_project(dest: Path) -> Path:
    """Copy the demo project's config, notebooks and raw data (not its lake or runs) to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "medallion.yaml", dest / "medallion.yaml")
    shutil.copytree(REPO / "notebooks", dest / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(REPO / "data" / "raw", dest / "data" / "raw")
    return dest


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """A fresh copy of the demo project with no lake yet."""
    return copy_demo_project(tmp_path / "shop")


THREE_LAYERS = """
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebook: notebooks/silver.ipynb
  - name: gold
    notebook: notebooks/gold.ipynb
"""


def write_project(root: Path, config: str, files: dict[str, str] | None = None) -> Path:
    """Write a small project: ``medallion.yaml`` plus any extra files (path -> text)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "medallion.yaml").write_text(config, encoding="utf-8")
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# A bronze and a silver layer sharing an empty notebook: for tests that write and consume tables directly.
TWO_LAYERS = """
name: t
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
"""


@pytest.fixture
def two_layers(tmp_path: Path) -> Path:
    """A project of ``TWO_LAYERS`` with no lake yet."""
    return write_project(tmp_path / "p", TWO_LAYERS, {"nb.ipynb": "{}"})


def consumer(root: Path, name: str = "silver") -> mnb.Lakehouse:
    """A handle for notebook ``name``: what it reads with ``changes()`` is recorded as that notebook's."""
    return mnb.connect(root, notebook=name)


def sorted_rows(rel) -> list[tuple]:
    return sorted(rel.fetchall(), key=repr)


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server on 127.0.0.1 for this test process, stopped at the end (see servers.py)."""
    from servers import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on 127.0.0.1 for this test process, stopped at the end (see servers.py)."""
    from servers import S3Server

    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
