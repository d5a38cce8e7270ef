"""Faults: writers killed at any moment, a full disk, a read-only lake, a folder we may not write.

Every test asserts what must hold whenever the fault struck — the lake opens, every
table is complete at some committed version, the next write succeeds — never how
long anything took.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from tests.conftest import write_project

REPO = Path(__file__).resolve().parents[1]
ROWS = 50_000


def project(root: Path, lake: Path | None = None) -> Path:
    config = "name: faults\nlayers:\n  - {name: silver, notebook: nb.ipynb}\n"
    if lake is not None:
        config += f"lake: {lake}\n"
    return write_project(root, config, {"nb.ipynb": "{}"})


def child(code: str, *prefix: str) -> subprocess.Popen[str]:
    """A Python child running ``code`` with the repository importable (optionally under ``prefix``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MEDALLION_RUN_LOCK", None)
    return subprocess.Popen([*prefix, sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_lake_is_whole(root: Path, expected: dict[str, int]) -> set[str]:
    """The lake opens; every table it lists is complete. Returns the tables it lists."""
    with mnb.connect(root) as lake:
        tables = set(lake.tables())
        for name in tables:
            rows, distinct = lake.sql(f"SELECT count(*), count(DISTINCT id) FROM {name}").fetchall()[0]
            assert (rows, distinct) == (expected[name], expected[name]), name
            assert lake.count(name) == expected[name], name
    return tables


def assert_no_unreferenced_file(root: Path) -> None:
    """After vacuum with no retention, every data file on disk belongs to a current table version."""
    with mnb.connect(root) as lake:
        lake.vacuum(retain_hours=0)
        referenced = {Path(f).resolve() for name in lake.tables() for f in lake.store.snapshot(
            *name.split(".")).files}
        on_disk = {p.resolve() for p in lake.project.lake.rglob("*") if p.is_file()
                   and "_delta_log" not in p.parts and "_medallion" not in p.parts}
        assert on_disk == referenced


WRITER = """
    import medallion_nb as mnb
    with mnb.connect({root!r}) as lake:
        for i in range(40):
            name = f"silver.t{{i % 8}}"
            lake.write(name, "SELECT range AS id, 'x' || range AS v FROM range({rows})")
            lake.write("silver.m", "SELECT range AS id, 'm' || range AS v FROM range({rows})", mode="merge", key="id")
            lake.write("silver.p", "SELECT range AS id, range % 7 AS day FROM range({rows})",
                       mode="replace_where" if i else "replace", partition_by="day" if not i else None)
            print("wrote", i, flush=True)
"""


@pytest.mark.parametrize("seed", range(5))
def test_a_writer_killed_at_any_moment_leaves_a_lake_that_opens(tmp_path: Path, seed: int):
    root = project(tmp_path / "p")
    expected = {**{f"silver.t{i}": ROWS for i in range(8)}, "silver.m": ROWS, "silver.p": ROWS}
    proc = child(WRITER.format(root=str(root), rows=ROWS))
    assert proc.stdout is not None
    proc.stdout.readline()  # it is writing
    # Kill it after a random number of further writes and a random moment inside one.
    rnd = random.Random(seed)
    for _ in range(rnd.randint(0, 3)):
        proc.stdout.readline()
    time.sleep(rnd.uniform(0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_lake_is_whole(root, expected)
    # The next writer finishes every table, and nothing unreferenced remains after vacuum.
    done = child(WRITER.replace("range(40)", "range(1)").format(root=str(root), rows=ROWS))
    out, _ = done.communicate()
    assert done.returncode == 0, out
    assert {"silver.t0", "silver.m", "silver.p"} <= assert_lake_is_whole(root, expected)
    assert_no_unreferenced_file(root)


KILL_AT = """
    import os, signal, sys
    import deltalake, medallion_nb as mnb
    from deltalake import transaction
    from medallion_nb.storage import delta, stage

    point = {point!r}
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "create":        # files staged, the first commit never written
        delta.create_table_with_add_actions = die
    elif point == "commit":      # files staged, a later commit never written
        deltalake.DeltaTable.create_write_transaction = die
    elif point == "merge":       # delta-rs starts merging, dies before its commit
        original = deltalake.DeltaTable.merge
        def merge(self, *args, **kwargs):
            merger = original(self, *args, **kwargs)
            merger.execute = die
            return merger
        deltalake.DeltaTable.merge = merge
    with mnb.connect({root!r}) as lake:
        lake.write("silver.new", "SELECT range AS id FROM range(1000)")
        lake.write("silver.old", "SELECT range AS id FROM range(10, 20)", mode="merge", key="id")
        lake.write("silver.old", "SELECT range AS id FROM range(100, 200)", mode="append")
"""


# Where the writer dies, and the rows silver.old has then: creating silver.new (first write),
# merging into silver.old (second), appending to it (third: the merge is in).
KILLS = {"create": 10, "merge": 10, "commit": 20}


@pytest.mark.parametrize("point", sorted(KILLS))
def test_a_writer_killed_between_staging_and_commit_changes_nothing(tmp_path: Path, point: str):
    root = project(tmp_path / "p")
    with mnb.connect(root) as lake:
        lake.write("silver.old", "SELECT range AS id FROM range(10)")
    proc = child(KILL_AT.format(point=point, root=str(root)))
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    with mnb.connect(root) as lake:
        tables = lake.tables()
        assert "silver.old" in tables
        if point == "create":
            assert tables == ["silver.old"]  # staged files, no version 0: not a table
            assert list((lake.project.lake / "silver" / "new").glob("*.parquet"))  # the orphans are there
        else:
            assert lake.count("silver.new") == 1000
        assert lake.sql("SELECT count(*) FROM silver.old").fetchall() == [(KILLS[point],)]
        lake.write("silver.new", "SELECT range AS id FROM range(1000)")
        lake.write("silver.old", "SELECT range AS id FROM range(10, 20)", mode="merge", key="id")
        assert lake.count("silver.old") == 20
    assert_no_unreferenced_file(root)


CONSUMER = """
    import os, signal
    import medallion_nb as mnb
    with mnb.connect({root!r}, notebook="silver") as lake:
        new = lake.changes("silver.source").rows
        lake.write("silver.a", new, mode="append")
        if {die}:
            os.kill(os.getpid(), signal.SIGKILL)
        lake.write("silver.b", new, mode="append")
"""


def test_a_consumer_killed_between_its_outputs_catches_up_without_duplicates(tmp_path: Path):
    root = project(tmp_path / "p")
    with mnb.connect(root) as lake:
        lake.write("silver.source", "SELECT range AS id FROM range(5)")
    for die in (False, True, False):
        if not die:
            with mnb.connect(root) as lake:
                lake.write("silver.source", f"SELECT {100 + len(lake.history('silver.source'))} AS id",
                           mode="append")
        proc = child(CONSUMER.format(root=str(root), die=die))
        proc.communicate()
    with mnb.connect(root) as lake:
        source = sorted(lake.table("silver.source").fetchall())
        assert sorted(lake.table("silver.a").fetchall()) == source
        assert sorted(lake.table("silver.b").fetchall()) == source


# -- the file system refuses ---------------------------------------------------
def _mount(point: Path, options: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs (needs root to mount; skipped where the test cannot mount one)."""
    point = tmp_path / "disk"
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(point, "size=4m,mode=0755"):
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); a full disk cannot be made otherwise")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\x1b" not in text
    return text.splitlines()[0]


def test_a_full_disk_is_said_first_and_leaves_the_lake_whole(tmp_path: Path, small_disk: Path):
    root = project(tmp_path / "p", small_disk / "lake")
    big = "SELECT range AS id, md5(range::VARCHAR) || md5((range * 7)::VARCHAR) AS v FROM range(400000)"
    with mnb.connect(root) as lake:
        lake.write("silver.small", "SELECT range AS id FROM range(100)")
        with pytest.raises(LakeError) as info:
            lake.write("silver.small", big)
        line = one_line(info.value)
        assert line.startswith(f"disk full: {small_disk / 'lake' / 'silver' / 'small'}"), line
        assert lake.count("silver.small") == 100
        # A new table on a full disk: the lake still opens and does not list it.
        filler = small_disk / "filler"
        for free in range(0, 120_000, 8_000):
            shutil.rmtree(small_disk / "lake" / "silver" / "fresh", ignore_errors=True)
            filler.unlink(missing_ok=True)
            stat = os.statvfs(small_disk)
            filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - free))
            failed: LakeError | None = None
            try:
                lake.write("silver.fresh", "SELECT range AS id FROM range(3000)")
            except LakeError as exc:
                failed = exc
            if failed is not None:
                assert one_line(failed).startswith("disk full: "), one_line(failed)
            with mnb.connect(root) as other:
                assert set(other.tables()) <= {"silver.small", "silver.fresh"}
                if "silver.fresh" in other.tables():
                    assert other.count("silver.fresh") == 3000
        filler.unlink()
    with mnb.connect(root) as lake:
        lake.vacuum(retain_hours=0)
        lake.write("silver.fresh", "SELECT range AS id FROM range(3000)")
        assert lake.count("silver.fresh") == 3000


def test_a_read_only_lake_is_said_first(tmp_path: Path, small_disk: Path):
    root = project(tmp_path / "p", small_disk / "lake")
    with mnb.connect(root) as lake:
        lake.write("silver.t", "SELECT 1 AS id")
        lake.write("silver.t", "SELECT 2 AS id")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with mnb.connect(root) as lake:
            assert lake.table("silver.t").fetchall() == [(2,)]  # reading works
            for attempt in (lambda: lake.write("silver.t", "SELECT 3 AS id", mode="append"),
                            lambda: lake.write("silver.other", "SELECT 3 AS id"),
                            lambda: lake.vacuum(retain_hours=0)):
                with pytest.raises(LakeError) as info:
                    attempt()
                assert one_line(info.value).startswith("read-only file system: "), one_line(info.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    with mnb.connect(root) as lake:
        assert lake.write("silver.t", "SELECT 3 AS id", mode="append").total_rows == 2


def test_a_folder_we_may_not_write_is_said_first(tmp_path: Path):
    root = project(tmp_path / "p")
    with mnb.connect(root) as lake:
        lake.write("silver.t", "SELECT 1 AS id")
    table = root / "data" / "lake" / "silver" / "t"
    code = f"""
        import medallion_nb as mnb
        from medallion_nb import LakeError
        with mnb.connect({str(root)!r}) as lake:
            try:
                lake.write("silver.t", "SELECT 2 AS id", mode="append")
            except LakeError as exc:
                print("ERROR", str(exc).splitlines()[0])
    """
    # Root is never refused a write: drop the capability that lets it ignore permissions.
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search",
              "--inh-caps=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder root may not write")
    for folder in (table, table / "_delta_log"):
        folder.chmod(0o555)
    try:
        proc = child(code, *prefix)
        out, _ = proc.communicate()
    finally:
        for folder in (table, table / "_delta_log"):
            folder.chmod(0o755)
    line = next(x for x in out.splitlines() if x.startswith("ERROR"))
    assert line.startswith(f"ERROR permission denied: {table}"), out
    with mnb.connect(root) as lake:
        assert lake.table("silver.t").fetchall() == [(1,)]
