"""Published snapshots: publish, read by run, time travel, vacuum protection, readers racing writers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from medallion_nb.snapshots import (
    manifests,
    publish,
    published,
    referenced_files,
    retained_versions,
    run_manifest,
)
from tests.conftest import write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
CONFIG = """
name: t
layers:
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p", CONFIG, {"nb.ipynb": NOTEBOOK})


def value(lake, table: str) -> list:
    return [row[0] for row in lake.sql(f"SELECT v FROM {table} ORDER BY v").fetchall()]


def run(root: Path, run_id: str, v: int, *, tables=("silver.a", "gold.b")) -> dict[str, int]:
    """What a successful run does: write its tables, then publish their versions."""
    with mnb.connect(root, run_id=run_id) as lake:
        versions = {t: lake.write(t, f"SELECT {v} AS v").version for t in tables}
    publish(root, run_id, versions)
    return versions


def test_a_published_snapshot_stays_put_while_the_lake_moves_on(root: Path):
    run(root, "run-1", 1)
    with mnb.connect(root) as lake:
        lake.write("silver.a", "SELECT 99 AS v")   # a later commit, not published
        lake.write("silver.new", "SELECT 5 AS v")  # a table no run has published
    with mnb.connect(root, snapshot="published") as lake:
        assert lake.manifest.run_id == "run-1"
        assert lake.snapshot_note is None
        assert value(lake, "silver.a") == [1]
        assert lake.table("silver.a").fetchall() == [(1,)]
        assert lake.count("silver.a") == 1
        assert lake.info("silver.a")["version"] == 0
        assert lake.tables() == ["silver.a", "gold.b"]
        assert not lake.exists("silver.new")
        with pytest.raises(LakeError, match=r"table silver.new is not in the snapshot of run run-1"):
            lake.table("silver.new")
        assert "snapshot of run run-1" in repr(lake)
    with mnb.connect(root) as lake:  # the default is still the latest commits
        assert value(lake, "silver.a") == [99]
        assert "silver.new" in lake.tables()


def test_manifests_on_disk_and_time_travel_by_run(root: Path):
    run(root, "run-1", 1)
    run(root, "run-2", 2, tables=("gold.b",))  # a run of one layer keeps the rest as published
    manifest = published(root)
    assert manifest.run_id == "run-2"
    assert dict(manifest.tables) == {"gold.b": 1, "silver.a": 0}
    assert manifest.produced == ("gold.b",)
    on_disk = json.loads((root / "data/lake/_medallion/published.json").read_text())
    assert on_disk == json.loads((root / "data/lake/_medallion/runs/run-2.json").read_text())
    assert on_disk["tables"] == {"gold.b": 1, "silver.a": 0}
    assert run_manifest(root, "run-1").tables == {"gold.b": 0, "silver.a": 0}
    assert [m.run_id for m in manifests(root)] in (["run-2", "run-1"], ["run-1", "run-2"])
    with mnb.connect(root, snapshot="run-1") as lake:
        assert (value(lake, "silver.a"), value(lake, "gold.b")) == ([1], [1])
    with mnb.connect(root, snapshot="published") as lake:
        assert (value(lake, "silver.a"), value(lake, "gold.b")) == ([1], [2])
    # Without keep_others the snapshot is exactly what was published.
    assert dict(publish(root, "run-3", {"gold.b": 0}, keep_others=False).tables) == {"gold.b": 0}


def test_unknown_runs_and_an_empty_lake_are_explained(root: Path):
    with mnb.connect(root, snapshot="published") as lake:
        assert lake.manifest is None
        assert lake.snapshot_note == "nothing is published yet: showing the latest commits"
        assert lake.tables() == []
    with pytest.raises(LakeError, match=r"no published run 'run-9' in .* \(no run has been published yet\)"):
        mnb.connect(root, snapshot="run-9")
    run(root, "run-1", 1)
    with pytest.raises(LakeError, match=r"no published run 'run-9' .*\(recent published runs: run-1\)"):
        mnb.connect(root, snapshot="run-9")
    with pytest.raises(LakeError, match="neither 'published' nor a run id"):
        mnb.connect(root, snapshot="../etc")


def test_a_snapshot_handle_cannot_write(root: Path):
    run(root, "run-1", 1)
    with mnb.connect(root, snapshot="published") as lake, \
            pytest.raises(LakeError, match=r"write to silver.a: this handle reads the snapshot 'published'"):
        lake.write("silver.a", "SELECT 2 AS v")
    assert published(root).tables["silver.a"] == 0


def test_publish_refuses_what_does_not_exist(root: Path):
    run(root, "run-1", 1)
    with pytest.raises(LakeError, match=r"cannot publish run run-2: silver.a has no version 7"):
        publish(root, "run-2", {"silver.a": 7})
    with pytest.raises(LakeError, match=r"'silver' is not a table name"):
        publish(root, "run-2", {"silver": 0})
    with pytest.raises(LakeError, match=r"version '0' of silver.a is not a table version"):
        publish(root, "run-2", {"silver.a": "0"})
    with pytest.raises(LakeError, match=r"cannot publish run 'a/b'"):
        publish(root, "a/b", {"silver.a": 0})
    with pytest.raises(LakeError, match=r"cannot publish run 'published'"):
        publish(root, "published", {"silver.a": 0})
    assert published(root).run_id == "run-1"


def test_vacuum_keeps_what_published_snapshots_reference(root: Path):
    run(root, "run-1", 1)
    run(root, "run-2", 2)
    with mnb.connect(root) as lake:
        lake.write("silver.a", "SELECT 3 AS v")  # not published
    later = datetime.now(UTC) + timedelta(hours=2)
    # One hour of retention, two hours from now: only the current snapshot must stay readable.
    assert retained_versions(root, 1, now=later) == {"silver.a": {1}, "gold.b": {1}}
    assert retained_versions(root, 24, now=later) == {"silver.a": {0, 1}, "gold.b": {0, 1}}
    files = referenced_files(root, 1, now=later)
    with mnb.connect(root) as lake:
        expected = {f.removeprefix("file://") for f in lake.store.snapshot("silver", "a", 1).files}
    assert files["silver.a"] == expected
    assert all(Path(f).is_file() for f in files["silver.a"])


def test_a_vacuumed_snapshot_is_a_clear_error(root: Path):
    run(root, "run-1", 1)
    run(root, "run-2", 2)
    with mnb.connect(root) as lake:
        lake.vacuum(retain_hours=0)  # deletes what only version 0 (run-1's snapshot) needs
    with pytest.raises(LakeError) as info:
        mnb.connect(root, snapshot="run-1")
    message = str(info.value)
    assert "the snapshot of run run-1: table silver.a version 0 can no longer be read: 1 of its 1 data files " \
           "were removed, most likely by vacuum" in message
    assert "IOException" not in message
    with mnb.connect(root, snapshot="published") as lake:
        assert value(lake, "silver.a") == [2]


# A writer that runs rounds: both tables get the round's value, then the round is published.
# Every third round fails after its first write, as a run that dies half way: nothing is published.
WRITER = """
import sys
import medallion_nb as mnb
from medallion_nb.snapshots import publish
root, rounds = sys.argv[1], int(sys.argv[2])
for k in range(1, rounds + 1):
    with mnb.connect(root, run_id=f"run-{k}") as lake:
        a = lake.write("silver.a", f"SELECT {k} AS v FROM range(3)")
        if k % 3 == 0:
            continue
        b = lake.write("gold.b", f"SELECT {k} AS v")
    publish(root, f"run-{k}", {"silver.a": a.version, "gold.b": b.version})
print("done", flush=True)
"""


def test_readers_of_the_published_snapshot_never_see_a_mix(root: Path):
    run(root, "run-0", 0)
    rounds = 12
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(rounds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple] = []
    try:
        while True:
            finished = writer.poll() is not None
            with mnb.connect(root, snapshot="published") as lake:
                a = lake.sql("SELECT min(v), max(v), count(*) FROM silver.a").fetchall()[0]
                b = lake.sql("SELECT v FROM gold.b").fetchall()
                seen.append((lake.manifest.run_id, a, b))
            if finished:
                break
    finally:
        if writer.poll() is None:
            writer.kill()
        _, err = writer.communicate()
    assert writer.returncode == 0, err
    published_values = {0} | {k for k in range(1, rounds + 1) if k % 3}
    for run_id, (low, high, count), b in seen:
        k = int(run_id.removeprefix("run-"))
        assert k in published_values, f"read an unpublished run {run_id}"
        assert (low, high, count) == (k, k, 3 if k else 1), f"silver.a of {run_id} is not whole: {low, high, count}"
        assert b == [(k,)], f"gold.b does not match silver.a in the snapshot of {run_id}"
    assert seen[-1][0] == f"run-{rounds - 1}"
