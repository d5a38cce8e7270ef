"""The lake on object storage, against a real S3-compatible server (moto's, on 127.0.0.1).

The same library calls as on a local lake, checked against a local lake doing the same;
Delta commits and the writer lease under two processes at once; the explorer's sandbox;
snapshots and vacuum; the configuration.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import medallion_nb as mnb
from medallion_nb import LakeError, ProjectError
from medallion_nb.errors import SecretError
from medallion_nb.lease import Lease
from medallion_nb.lock import LockHeldError, WriterLock, commit_guard
from medallion_nb.objectstore import ObjectPath
from medallion_nb.project import load_project
from medallion_nb.snapshots import publish
from medallion_nb.storage.plan import LOCAL_STAGING
from tests.conftest import REPO, write_project

LAYERS = """
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The test S3 server, with the AWS_* variables that point every client at it set for this test."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def s3_project(root: Path, bucket: str, extra: str = "", sources: str = "") -> Path:
    return write_project(root, f"name: s3test\nlake: s3://{bucket}/lake\n{extra}{LAYERS}{sources}", {"nb.ipynb": "{}"})


def local_project(root: Path) -> Path:
    return write_project(root, f"name: localtest\nlake: lake\n{LAYERS}", {"nb.ipynb": "{}"})


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def content(lake, name: str, version: int | None = None) -> list[tuple]:
    return sorted(lake.table(name, version=version).fetchall(), key=repr)


WRITES = [
    ("silver.orders", "SELECT i AS order_id, i % 7 AS shop, (i * 3) % 100 AS amount FROM range(5000) t(i)",
     {}),
    ("silver.orders", "SELECT i AS order_id, 99 AS shop, 1 AS amount FROM range(5000, 5100) t(i)", {"mode": "append"}),
    ("silver.orders", "SELECT i AS order_id, 42 AS shop, 7 AS amount FROM range(0, 10000, 500) t(i)",
     {"mode": "merge", "key": "order_id", "delete": "SELECT 1 AS order_id UNION ALL SELECT 2"}),
    ("silver.orders", "SELECT i AS order_id, 5 AS shop, 5 AS amount FROM range(100, 200) t(i)",
     {"mode": "replace_where", "where": "order_id >= 100 AND order_id < 200"}),
    ("gold.by_shop", "SELECT shop, count(*) AS n, sum(amount) AS total FROM silver.orders GROUP BY shop",
     {"partition_by": "shop"}),
    ("gold.by_shop", "SELECT 42 AS shop, 0::BIGINT AS n, 0::HUGEINT AS total", {"mode": "replace_where"}),
    ("silver.orders", "SELECT 7000 AS order_id, 1 AS shop, 1 AS amount, 'new' AS note", {"mode": "append"}),
]


def test_a_lake_on_s3_reads_and_writes_like_a_local_one(s3, tmp_path, scratch):
    bucket = s3.bucket()
    remote = mnb.connect(s3_project(tmp_path / "remote", bucket), run_id="r1", notebook="nb")
    local = mnb.connect(local_project(tmp_path / "local"), run_id="r1", notebook="nb")
    assert isinstance(remote.project.lake, ObjectPath)
    for name, sql, options in WRITES:
        a = remote.write(name, sql, **options)
        b = local.write(name, sql, **options)
        assert (a.mode, a.rows, a.version, a.total_rows, a.inserted, a.updated, a.deleted) == \
               (b.mode, b.rows, b.version, b.total_rows, b.inserted, b.updated, b.deleted), name
    assert remote.tables() == local.tables() == ["silver.orders", "gold.by_shop"]
    for name in remote.tables():
        assert content(remote, name) == content(local, name), name
        assert remote.count(name) == local.count(name)
        versions = [h["version"] for h in remote.history(name)]
        assert versions == [h["version"] for h in local.history(name)]
        for version in versions:  # time travel
            assert content(remote, name, version) == content(local, name, version), (name, version)
    assert [h["run_id"] for h in remote.history("silver.orders")] == ["r1"] * 5
    # projection and filter push-down: a filter on the partition column reads one partition's files
    assert remote.sql("SELECT total FROM gold.by_shop WHERE shop = 42").fetchall() == [(0,)]
    plan = "\n".join(r[1] for r in remote.sql("EXPLAIN SELECT n FROM gold.by_shop WHERE shop = 3").fetchall())
    assert "shop=3" in plan or "File Filters" in plan or "Filters" in plan

    # changes between versions are the same rows on both
    for lake in (remote, local):
        lake.close()
    remote = mnb.connect(tmp_path / "remote", notebook="reader")
    local = mnb.connect(tmp_path / "local", notebook="reader")
    expected = sorted(local.changes("silver.orders").rows.fetchall())
    assert sorted(remote.changes("silver.orders").rows.fetchall()) == expected
    remote.write("gold.copy", "SELECT count(*) AS n FROM silver.orders")
    remote.write("silver.orders", "SELECT 7001 AS order_id, 1 AS shop, 1 AS amount, 'x' AS note", mode="append")
    remote.close()
    remote = mnb.connect(tmp_path / "remote", notebook="reader")
    change = remote.changes("silver.orders")
    assert change.rows.fetchall() == [(7001, 1, 1, "x")]
    assert not change.full

    # the data is objects under the lake's prefix; nothing is left in staging
    found = keys(s3, bucket, "lake/")
    assert any(k.startswith("lake/silver/orders/_delta_log/") for k in found)
    assert any(k.startswith("lake/gold/by_shop/shop=42/") and k.endswith(".parquet") for k in found)
    assert not [k for k in found if k.startswith("lake/_medallion/staging/")]
    assert not [k for k in found if k.endswith("/")]  # no "directory marker" objects
    assert staging(scratch) == []  # writes staged on local disk, uploaded at commit, staging deleted
    remote.close()


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The system temporary folder of this process (where writes to a lake on S3 stage), empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def staging(folder: Path) -> list[Path]:
    """What writes left in their local staging folders (under ``folder``)."""
    return sorted(p for p in folder.rglob("*") if p.relative_to(folder).parts[0].startswith(LOCAL_STAGING))


def test_staged_rows_on_s3_are_audited_on_local_disk_then_uploaded_and_committed_or_deleted(s3, tmp_path, scratch):
    bucket = s3.bucket()
    lake = mnb.connect(s3_project(tmp_path / "p", bucket))
    lake.write("silver.t", "SELECT 1 AS a")
    lake.write("silver.u", "SELECT 1 AS a, 1 AS b")
    before = keys(s3, bucket, "lake/")
    with lake.stage("silver.t", "SELECT range AS a FROM range(1000)", mode="append") as staged:
        assert staged.rows == 1000
        assert staged.relation.filter("a >= 500").count("*").fetchall() == [(500,)]
        assert keys(s3, bucket, "lake/") == before  # staged on local disk: nothing uploaded before the commit
        assert [p.suffix for p in staging(scratch) if p.is_file()] == [".parquet"] * len(staged.files)
        assert lake.count("silver.t") == 1
    assert keys(s3, bucket, "lake/") == before  # aborted: nothing uploaded
    assert staging(scratch) == []  # and the local staging folder is gone

    # A failing expectation aborts the write: no committed rows, no object, no local file.
    # (append and replace: staged for upload; merge and a new partitioning: staged for delta-rs)
    for options in ({"mode": "append"}, {"mode": "merge", "key": "b"}, {"partition_by": "b"}, {}):
        with pytest.raises(mnb.ExpectationError):
            lake.write("silver.u", "SELECT NULL::INT AS a, 2 AS b", expect={"fail": {"not_null": ["a"]}}, **options)
        assert keys(s3, bucket, "lake/") == before, options
        assert staging(scratch) == [], options
    assert lake.count("silver.u") == 1
    assert [h["version"] for h in lake.history("silver.u")] == [0]

    result = lake.write("silver.t", "SELECT 2 AS a", mode="append", expect={"fail": {"not_null": ["a"]}})
    assert (result.version, result.total_rows) == (1, 2)
    merged = lake.write("silver.t", "SELECT 2 AS a UNION ALL SELECT 3", mode="merge", key="a")  # via delta-rs
    assert (merged.inserted, merged.updated, merged.total_rows) == (1, 1, 3)
    assert staging(scratch) == []
    lake.close()


CHILD_DIES_UPLOADING = textwrap.dedent("""
    import os, signal, sys
    import medallion_nb as mnb
    from medallion_nb.objectstore import ObjectPath
    real, uploaded = ObjectPath.upload, []
    def upload(self, local):
        real(self, local)
        uploaded.append(self)
        if len(uploaded) == 3:  # killed mid-upload: some files are up, the commit never happens
            os.kill(os.getpid(), signal.SIGKILL)
    ObjectPath.upload = upload
    with mnb.connect(sys.argv[1]) as lake:
        lake.write("gold.by_day", "SELECT range % 20 AS day, range AS n FROM range(2000)", partition_by="day")
""")


def test_a_write_killed_while_uploading_leaves_the_table_unchanged_and_vacuum_reclaims_it(s3, tmp_path, scratch):
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    with mnb.connect(project) as lake:
        lake.write("gold.by_day", "SELECT range % 20 AS day, 1 AS n FROM range(40)", partition_by="day")
        committed = keys(s3, bucket, "lake/gold/by_day/")
    proc = subprocess.run([sys.executable, "-c", CHILD_DIES_UPLOADING, str(project)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "TMPDIR": str(scratch)}, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    orphans = sorted(set(keys(s3, bucket, "lake/gold/by_day/")) - set(committed))
    assert 3 <= len(orphans) < 20  # uploads run side by side: some more finished, never all 20 partitions
    assert staging(scratch)  # the dead writer's local staging folder
    with mnb.connect(project) as lake:
        assert lake.sql("SELECT count(*), sum(n) FROM gold.by_day").fetchall() == [(40, 40)]  # no partial write
        assert [h["version"] for h in lake.history("gold.by_day")] == [0]
        removed = lake.vacuum(retain_hours=0)
        assert sorted(f"lake/gold/by_day/{f}" for f in removed["gold.by_day"]) == orphans
        assert keys(s3, bucket, "lake/gold/by_day/") == committed
        # the next write on this machine deletes the dead writer's staging folder, then its own
        assert lake.write("gold.by_day", "SELECT 1 AS day, 2 AS n", mode="append").total_rows == 41
    assert staging(scratch) == []


CHILD_APPEND = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pyarrow as pa
    from deltalake import write_deltalake
    uri, who, rounds, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.01)
    for i in range(rounds):
        write_deltalake(uri, pa.table({"writer": [who], "i": [i]}), mode="append")
""")


def test_delta_commits_on_s3_are_conditional_so_concurrent_appends_all_land(s3, tmp_path):
    """Two processes append to one table at once through delta-rs alone (no lock of ours): nothing is lost."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    bucket = s3.bucket()
    uri = f"s3://{bucket}/raw/t"
    write_deltalake(uri, pa.table({"writer": pa.array([], pa.int64()), "i": pa.array([], pa.int64())}))
    go = tmp_path / "go"
    rounds = 8
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_APPEND, uri, str(who), str(rounds), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in (1, 2)]
    go.touch()
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    table = DeltaTable(uri)
    assert table.version() == 2 * rounds  # every commit its own version: none overwrote another
    rows = sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: (r["writer"], r["i"]))
    assert rows == [{"writer": w, "i": i} for w in (1, 2) for i in range(rounds)]


CHILD_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import medallion_nb as mnb
    project, who, rounds, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.01)
    with mnb.connect(project, run_id=f"writer{who}") as lake:
        for i in range(rounds):
            lake.write("silver.events", f"SELECT {who} AS writer, {i} AS i", mode="append")
            lake.write("silver.latest", f"SELECT {who} AS writer, {i} AS i", mode="merge", key="writer")
        print(lake.ingest())
""")

SOURCES = """
sources:
  feed:
    path: raw/*.csv
    format: csv
    mode: append
"""


def test_two_writers_on_one_s3_lake_lose_and_duplicate_nothing(s3, tmp_path):
    """Two processes write to the same tables and ingest the same new files at once, through the library."""
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket, sources=SOURCES)
    raw = project / "raw"
    raw.mkdir()
    for day in range(6):
        (raw / f"feed_{day}.csv").write_text("id,day\n" + "".join(f"{day * 100 + i},{day}\n" for i in range(50)))
    with mnb.connect(project) as lake:  # a merge into a table created meanwhile is refused: create it first
        lake.write("silver.latest", "SELECT 0 AS writer, -1 AS i")
    go = tmp_path / "go"
    rounds = 6
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_WRITER, str(project), str(who), str(rounds), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for who in (1, 2)]
    go.touch()
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    with mnb.connect(project) as lake:
        events = sorted(lake.sql("SELECT writer, i FROM silver.events").fetchall())
        assert events == [(w, i) for w in (1, 2) for i in range(rounds)]
        latest = sorted(lake.sql("SELECT writer, i FROM silver.latest").fetchall())
        assert latest == [(0, -1), (1, rounds - 1), (2, rounds - 1)]
        # every file ingested by exactly one of the two, every row once
        assert lake.sql("SELECT count(*), count(DISTINCT id) FROM bronze.feed").fetchall() == [(300, 300)]
        assert lake.sql("SELECT count(DISTINCT _source_file) FROM bronze.feed").fetchall() == [(6,)]
    assert not keys(s3, bucket, "lake/_medallion/staging/")


# -- the writer lease -----------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from medallion_nb.lock import WriterLock
    lock = WriterLock(sys.argv[1])
    holder = lock.acquire("held-run", command="test holder")
    print("held", flush=True)
    time.sleep(600)
""")


def test_the_lease_refuses_a_second_writer_and_is_taken_over_when_its_holder_dies(s3, tmp_path):
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(project)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        lock = WriterLock(project)
        with pytest.raises(LockHeldError, match=f"run held-run \\(pid {proc.pid} on {socket.gethostname()}"):
            lock.acquire("second", wait=0)
        lake = mnb.connect(project)
        with pytest.raises(LockHeldError, match="held-run"):
            lake.write("silver.t", "SELECT 1 AS a")  # a write outside a run is refused while a run holds it
        assert not lake.exists("silver.t")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        holder = lock.acquire("second", wait=0)  # its pid is dead on this host: taken over at once
        assert lock.took_over is not None
        assert lock.took_over.run_id == "held-run"
        assert lock.current() == holder
        lock.release()
        assert lock.current() is None
        assert lake.write("silver.t", "SELECT 1 AS a").version == 0
        lake.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def lease_record(run_id: str, *, host: str, expires: float, pid: int = 1) -> bytes:
    return json.dumps({"run_id": run_id, "host": host, "pid": pid, "since": "2026-01-05T06:00:00+00:00",
                       "command": "medallion-nb run", "scope": "run", "token": "t", "ttl": 60,
                       "released": False, "expires": expires}).encode()


def test_a_lease_from_another_machine_holds_until_it_expires(s3, tmp_path):
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    lease = ObjectPath.parse(f"s3://{bucket}/lake") / "_medallion" / "writer.lease"
    lease.write_bytes(lease_record("elsewhere", host="etl-2.example", expires=time.time() + 3600))
    lock = WriterLock(project)
    with pytest.raises(LockHeldError, match=re.escape("run elsewhere (pid 1 on etl-2.example")):
        lock.acquire("mine", wait=0)
    lease.write_bytes(lease_record("elsewhere", host="etl-2.example", expires=time.time() - 1))
    lock.acquire("mine", wait=0)  # expired: taken over
    assert lock.took_over.run_id == "elsewhere"
    lock.release()


def test_the_holder_renews_its_lease_and_a_lease_lost_stops_its_commits(s3, tmp_path):
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    lock = WriterLock(project)
    lock.acquire("renewing", wait=0)
    first = json.loads(lock.lease.path.read_bytes())
    assert first["run_id"] == "renewing"
    assert first["expires"] > time.time()
    time.sleep(0.05)
    assert lock.lease.renew()
    renewed = json.loads(lock.lease.path.read_bytes())
    assert renewed["expires"] > first["expires"]
    assert renewed["token"] == first["token"]
    # Another machine takes the lease over (as if ours had expired): ours is lost, commits stop.
    lock.lease.path.write_bytes(lease_record("thief", host="etl-3.example", expires=time.time() + 3600))
    assert not lock.lease.renew()
    assert "taken over" in lock.lease.lost
    with pytest.raises(LakeError, match=r"taken over by another writer.*nothing was committed"), \
            commit_guard(project):
        pass
    lock.release()  # leaves the thief's lease alone
    assert json.loads(lock.lease.path.read_bytes())["run_id"] == "thief"


def test_of_two_writers_racing_for_a_free_lease_exactly_one_wins(s3, tmp_path):
    bucket = s3.bucket()
    folder = ObjectPath.parse(f"s3://{bucket}/lake") / "_medallion"
    a, b = Lease(folder, ttl=60), Lease(folder, ttl=60)
    first = a.try_acquire({"run_id": "a", "host": "h", "pid": 1})
    second = b.try_acquire({"run_id": "b", "host": "h", "pid": 2})
    assert first == (True, None)
    assert second[0] is False
    assert second[1]["run_id"] == "a"
    # a conditional create loses against an object created in between
    stale = Lease(folder, ttl=60)
    a.release()
    assert stale.try_acquire({"run_id": "c", "host": "h", "pid": 3})[0]
    stale.release()


# -- snapshots, vacuum, export, the explorer -----------------------------------------------

def test_published_snapshots_and_vacuum_on_s3(s3, tmp_path):
    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    with mnb.connect(project, run_id="r1") as lake:
        lake.write("gold.sales", "SELECT range AS i FROM range(10)")
        publish(lake, "r1", {"gold.sales": 0})
        lake.write("gold.sales", "SELECT range AS i FROM range(20)")
        lake.write("gold.sales", "SELECT range AS i FROM range(30)")
    orphan = ObjectPath.parse(f"s3://{bucket}/lake/gold/sales/part-orphan.parquet")
    orphan.write_bytes(b"not committed by anyone")
    (ObjectPath.parse(f"s3://{bucket}/lake/_medallion/staging/gold.sales-dead") / "part-x.parquet").write_bytes(b"x")
    with mnb.connect(project, snapshot="published") as reader:
        assert reader.manifest.run_id == "r1"
        assert reader.sql("SELECT count(*) FROM gold.sales").fetchall() == [(10,)]
    with mnb.connect(project) as lake:
        dry = lake.vacuum(retain_hours=0, dry_run=True)
        assert "part-orphan.parquet" in dry["gold.sales"]
        assert orphan.exists()
        removed = lake.vacuum(retain_hours=0)
        assert removed["gold.sales"] == dry["gold.sales"]
        assert len(removed["gold.sales"]) == 2
        assert removed["_medallion/staging"] == ["gold.sales-dead/part-x.parquet"]
        assert not orphan.exists()
        assert lake.table("gold.sales").count("*").fetchall() == [(30,)]
        assert lake.table("gold.sales", version=0).count("*").fetchall() == [(10,)]  # published: kept
        with pytest.raises(LakeError, match=re.escape("version 1 of gold.sales cannot be read")):
            lake.table("gold.sales", version=1)
        assert lake.vacuum(retain_hours=0) == {"gold.sales": []}
    with mnb.connect(project, snapshot="r1") as reader:
        assert reader.sql("SELECT count(*) FROM gold.sales").fetchall() == [(10,)]


def test_export_and_the_explorer_read_a_lake_on_s3(s3, tmp_path):
    from medallion_nb.export import export_tables
    from medallion_nb.widgets import GoldExplorer
    from medallion_nb.widgets.sandbox import ReadOnlyLake
    from tests.test_widget_queries import CUSTOMERS, SALES

    bucket = s3.bucket()
    project = s3_project(tmp_path / "p", bucket)
    with mnb.connect(project, run_id="r1") as lake:
        lake.write("gold.sales", SALES + " WHERE i < 150")
        lake.write("gold.sales", SALES)
        lake.write("silver.customers", CUSTOMERS)
    result = export_tables(project, tmp_path / "export")
    assert [(t.table, t.rows, t.version) for t in result.tables] == [("gold.sales", 200, 1)]
    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'export' / 'sales.parquet'}'").fetchall() == [(200,)]

    with mnb.connect(project) as lake:
        app = GoldExplorer(lake)
        assert (app.name, app.total_rows) == ("gold.sales", 200)
        app.where_text.value = "country = 'DE' AND units >= 4"
        expected = lake.sql("SELECT count(*) FROM gold.sales WHERE country = 'DE' AND units >= 4").fetchall()[0][0]
        assert app.error is None
        assert app.filtered_rows == expected
        app.where_text.value = "country IN (SELECT column0 FROM read_csv('/etc/passwd'))"
        assert app.error
        assert app.filtered_rows == expected

        # The sandbox: the lake's prefix and nothing else, even for SQL no parser check saw.
        other = ObjectPath.parse(f"s3://{bucket}/elsewhere/secret.csv")
        other.write_bytes(b"a\n1\n")
        sandbox = ReadOnlyLake(lake, timeout=30)
        con = sandbox.con
        assert sandbox.table("gold.sales").aggregate("count(*)").fetchall() == [(200,)]
        assert sandbox.table("gold.sales", version=0).aggregate("count(*)").fetchall() == [(150,)]
        for path in (other.uri, f"s3://{bucket}/lake-other/x.csv", "/etc/passwd"):
            with pytest.raises(duckdb.PermissionException):
                con.sql(f"SELECT * FROM read_csv('{path}')").fetchall()
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute(f"COPY (SELECT 1) TO 's3://{bucket}/lake/gold/sales/evil.csv'")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET allowed_directories = ['/']")
        sandbox.close()
    assert not ObjectPath.parse(f"s3://{bucket}/lake/gold/sales/evil.csv").exists()


# -- configuration ------------------------------------------------------------------------------

def test_storage_settings_come_from_secrets_and_never_from_plain_text(s3, tmp_path, monkeypatch):
    bucket = s3.bucket()
    settings = s3.env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("LAKE_KEY_ID", settings["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("LAKE_SECRET", settings["AWS_SECRET_ACCESS_KEY"])
    storage = "storage:\n  access_key_id: ${LAKE_KEY_ID}\n  secret_access_key: ${LAKE_SECRET}\n  region: us-east-1\n"
    project = s3_project(tmp_path / "p", bucket, extra=storage)
    with mnb.connect(project) as lake:
        lake.write("silver.t", "SELECT 1 AS a")
        assert lake.sql("SELECT a FROM silver.t").fetchall() == [(1,)]
    loaded = load_project(project)
    assert loaded.secret_references() == {"LAKE_KEY_ID": "storage.access_key_id",
                                          "LAKE_SECRET": "storage.secret_access_key"}
    assert settings["AWS_SECRET_ACCESS_KEY"] not in repr(loaded)

    from medallion_nb.kestra import build_flow

    flow = build_flow(loaded)
    assert settings["AWS_SECRET_ACCESS_KEY"] not in json.dumps(flow)
    # every task that opens the lake (layers, publish) gets the lake's credentials from Kestra's secrets
    for task in flow["tasks"]:
        assert task["env"]["LAKE_SECRET"] == "{{ secret('LAKE_SECRET') }}", task["id"]
        assert task["env"]["LAKE_KEY_ID"] == "{{ secret('LAKE_KEY_ID') }}", task["id"]
    assert [t["id"] for t in flow["tasks"]][-1] == "publish"

    monkeypatch.delenv("LAKE_SECRET")
    with pytest.raises(SecretError, match=re.escape("storage.secret_access_key: the environment variable LAKE_SECRET")):
        mnb.connect(project).write("silver.t", "SELECT 2 AS a")


@pytest.mark.parametrize(("config", "message"), [
    ("lake: s3://b/lake\nstorage:\n  secret_access_key: plain-text\n",
     "storage.secret_access_key: is a secret: write a reference such as ${AWS_SECRET_ACCESS_KEY}"),
    ("lake: s3://b/lake\nstorage:\n  colour: blue\n", "storage.colour: unknown key"),
    ("lake: lake\nstorage:\n  region: eu-west-1\n", "storage: applies to a lake on object storage"),
    ("lake: gs://b/lake\n", "lake: 'gs://b/lake' is not on a supported object store"),
    ("lake: s3:///lake\n", "lake: 's3:///lake' names no bucket"),
    ("lake: s3://b/lake\nstorage:\n  region: ${REGION\n", "is not a secret reference"),
    ("lake: s3://b/lake\nsources:\n  feed: {path: 's3://b/raw/*.csv'}\n",
     "sources.feed.path: 's3://b/raw/*.csv': source files are read from the local file system only"),
])
def test_bad_storage_settings_are_refused_naming_the_key(tmp_path, config, message):
    root = write_project(tmp_path / "p", f"name: bad\n{config}{LAYERS}", {"nb.ipynb": "{}"})
    with pytest.raises(ProjectError) as caught:
        load_project(root)
    assert message in str(caught.value)
