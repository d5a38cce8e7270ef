"""The guard that fails a test opening files outside the repository really fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from read_guard import ReadGuard

from tests.conftest import REPO

READS_BESIDE = '''
from pathlib import Path

def test_reads_inside_the_repository():
    assert (Path(__file__).resolve().parents[1] / "data.txt").read_text() == "ok"

def test_reads_a_schema_beside_the_repository():
    assert (Path(__file__).resolve().parents[2] / "beside" / "schema.json").read_text() == "{}"

def test_lists_a_folder_beside_the_repository():
    assert [p.name for p in (Path(__file__).resolve().parents[2] / "beside").iterdir()] == ["schema.json"]
'''


def test_a_suite_that_reads_beside_its_repository_fails_naming_the_file(tmp_path):
    clone = tmp_path / "clone"
    (clone / "tests").mkdir(parents=True)
    for name in ("conftest.py", "read_guard.py"):
        shutil.copy2(REPO / "tests" / name, clone / "tests" / name)
    (clone / "tests" / "test_beside.py").write_text(READS_BESIDE, encoding="utf-8")
    (clone / "data.txt").write_text("ok", encoding="utf-8")
    (clone / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "beside").mkdir()
    (tmp_path / "beside" / "schema.json").write_text("{}", encoding="utf-8")

    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=clone, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "3 passed, 2 errors" in out
    assert "ERROR at teardown of test_reads_a_schema_beside_the_repository" in out
    assert "ERROR at teardown of test_lists_a_folder_beside_the_repository" in out
    schema = (tmp_path / "beside" / "schema.json").resolve()
    assert f"opened outside the repository {clone.resolve()}:\n  {schema}\n" in out
    assert f"  {(tmp_path / 'beside').resolve()}\n" in out


def test_what_is_inside_and_outside(tmp_path):
    repo, tmp = tmp_path / "work" / "repo", tmp_path / "tmp"
    (repo / "tests").mkdir(parents=True)
    (tmp / "leftover").mkdir(parents=True)
    guard = ReadGuard(repo, tmp=str(tmp))
    assert not guard.outside(str(repo / "tests" / "x.json"))
    assert guard.outside(str(tmp_path / "work" / "beside" / "kestra" / "schema.json"))
    assert guard.outside(str(tmp / "leftover" / "file.csv"))  # was there before the session
    assert not guard.outside(str(tmp / "tmpab12cd" / "file.csv"))  # made during the session
    assert not guard.outside(str(Path(sys.prefix) / "lib" / "x.py"))
    assert not guard.outside("/usr/share/zoneinfo/UTC")
    assert not guard.outside(str(Path.home() / ".jupyter" / "jupyter_config.json"))
    assert guard.outside(str(Path.home() / "notes.txt"))
    assert guard.outside("/opt/data/orders.csv")
    guard.allow(tmp / "leftover")
    assert not guard.outside(str(tmp / "leftover" / "file.csv"))
