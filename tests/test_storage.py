"""The write path: DuckDB writes the Parquet, one Delta commit publishes it (stage -> audit -> commit).

Tables written this way must read back exactly like tables written by delta-rs'
own writer, through delta-rs, Polars and DuckDB, types included; their file
statistics must bound every file; and the incremental modes (partitions,
replace_where, merge with delete) must touch only what they say.
"""

from __future__ import annotations

import json
from pathlib import Path

import deltalake
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from medallion_nb.storage.stats import file_stats, parse_column_path
from tests.conftest import write_project

CONFIG = """
name: t
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""
# Every kind of column a notebook produces, with nulls in each.
ALL_TYPES = """
SELECT range AS id,
       CASE WHEN range % 7 = 0 THEN NULL ELSE 'text ' || range || ' é' END AS s,
       CASE WHEN range % 5 = 0 THEN NULL ELSE (range * 1.25)::DECIMAL(12, 2) END AS d,
       (range * 1000000000000.123)::DECIMAL(38, 6) AS big_d,
       TIMESTAMPTZ '2024-01-02 03:04:05.123456+02' + range * INTERVAL 1 SECOND AS tz,
       CASE WHEN range % 3 = 0 THEN NULL ELSE TIMESTAMP '2024-01-02 03:04:05.123456' + range * INTERVAL 1 MINUTE
            END AS ts,
       DATE '2024-01-01' + (range % 400)::INT AS dt,
       CASE WHEN range % 11 = 0 THEN 'NaN'::DOUBLE ELSE range / 3.0 END AS f,
       range::FLOAT AS f4,
       (range % 2 = 0) AS b,
       (range % 100)::TINYINT AS ti,
       {'a': range, 'b': [1, 2], 'c': CASE WHEN range % 2 = 0 THEN NULL ELSE 'q' END} AS st,
       CASE WHEN range % 4 = 0 THEN NULL ELSE [range, NULL] END AS l,
       MAP {'k': range} AS m,
       'bytes'::BLOB AS bl
FROM range(2000)
"""


@pytest.fixture
def lake(tmp_path: Path):
    root = write_project(tmp_path / "p", CONFIG, {"nb.ipynb": "{}"})
    with mnb.connect(root, run_id="r1", notebook="nb") as handle:
        yield handle


def folder(lake, name: str) -> Path:
    layer, table = name.split(".")
    return lake.project.lake / layer / table


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def test_duckdb_written_tables_read_back_like_delta_rs_written_ones(lake):
    new = lake.write("silver.new", ALL_TYPES)
    assert (new.rows, new.total_rows) == (2000, 2000)
    # The same rows through delta-rs' own writer, the way tables were written before.
    rel = lake.storable(lake.relation(ALL_TYPES), "silver.old")
    lake.store.write_arrow("silver", "old", rel.to_arrow_reader(1000), mode="replace")
    ours = deltalake.DeltaTable(str(folder(lake, "silver.new")))
    theirs = deltalake.DeltaTable(str(folder(lake, "silver.old")))
    assert ours.schema().to_arrow() == theirs.schema().to_arrow()
    assert ours.protocol() == theirs.protocol()  # timestampNtz declared the same way
    a, b = by_id(ours.to_pyarrow_table()), by_id(theirs.to_pyarrow_table())
    assert a.schema == b.schema
    assert a.drop_columns(["f"]).equals(b.drop_columns(["f"]))
    assert a.column("f").cast(pa.string()).equals(b.column("f").cast(pa.string()))  # NaN != NaN otherwise
    assert pl.read_delta(str(folder(lake, "silver.new"))).sort("id").equals(
        pl.read_delta(str(folder(lake, "silver.old"))).sort("id"), null_equal=True)
    lake.refresh()
    assert lake.table("silver.new").types == lake.table("silver.old").types
    assert lake.sql("SELECT * FROM silver.new EXCEPT ALL SELECT * FROM silver.old").fetchall() == []
    assert str(lake.table("silver.new").types[lake.table("silver.new").columns.index("tz")]) == \
        "TIMESTAMP WITH TIME ZONE"


def test_no_row_is_encoded_twice_the_files_are_duckdbs(lake):
    lake.write("silver.t", "SELECT range AS id FROM range(10)")
    files = list(folder(lake, "silver.t").glob("*.parquet"))
    assert files
    assert all(f.name.startswith("part-") for f in files)
    meta = pq.read_metadata(files[0])
    assert "DuckDB" in meta.created_by


def test_file_statistics_bound_every_file(lake):
    lake.write("silver.stats", ALL_TYPES + " UNION ALL " + ALL_TYPES.replace("range(2000)", "range(5000, 9000)"))
    table = deltalake.DeltaTable(str(folder(lake, "silver.stats")))
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert actions
    for action in actions:
        path = str(folder(lake, "silver.stats") / action["path"])
        real = lake.sql(f"""SELECT count(*), min(id), max(id), min(s), max(s), min(d), max(d), min(dt), max(dt),
                                   min(tz), max(tz), min(ts), max(ts), count(*) - count(s), min(st.a), max(st.a)
                            FROM read_parquet('{path}')""").fetchall()[0]
        rows, lo_id, hi_id, lo_s, hi_s, lo_d, hi_d, lo_dt, hi_dt, lo_tz, hi_tz, lo_ts, hi_ts, null_s, lo_a, hi_a = real
        assert action["num_records"] == rows
        assert (action["min.id"], action["max.id"]) == (lo_id, hi_id)
        assert (action["min.dt"], action["max.dt"]) == (lo_dt, hi_dt)
        assert (action["min.st.a"], action["max.st.a"]) == (lo_a, hi_a)
        assert action["null_count.s"] == null_s
        assert action["min.s"] <= lo_s
        assert action["max.s"] >= hi_s
        assert float(action["min.d"]) == float(lo_d)
        assert float(action["max.d"]) == float(hi_d)
        # Timestamps are kept to the millisecond: bounds rounded outwards, so they still hold.
        assert action["min.tz"] <= lo_tz <= hi_tz <= action["max.tz"]
        assert action["min.ts"] <= lo_ts <= hi_ts <= action["max.ts"]
        assert action.get("min.f") is None  # the file holds NaN: no float bounds
        assert action.get("min.bl") is None
        assert action.get("min.l") is None


def test_statistics_are_left_out_when_not_certain():
    schema = pa.schema([("f", pa.float64()), ("s", pa.string()), ("d", pa.decimal128(38, 10)),
                        ("t", pa.timestamp("us", "UTC")), ("n", pa.timestamp("us")), ("part", pa.int64())])
    columns = {
        '"f"': {"min": "1.5", "max": "inf", "null_count": "0", "has_nan": "false", "nan_count": "0"},
        '"s"': {"min": "a" * 40, "max": "b" * 40, "min_is_exact": "true", "max_is_exact": "true", "null_count": "2"},
        '"d"': {"min": "1234567890123456789.0123456789", "max": "2.5000000000", "null_count": "0"},
        '"t"': {"min": "2024-01-02 03:04:05.123456+00", "max": "2024-01-02 03:04:05.123456+00", "null_count": "0"},
        '"n"': {"min": "2024-01-02 03:04:05", "max": "infinity", "null_count": "0"},
    }
    stats = json.loads(file_stats(7, columns, schema, ("part",)))
    assert stats["numRecords"] == 7
    assert stats["minValues"]["f"] == 1.5
    assert "f" not in stats["maxValues"]
    assert stats["minValues"]["s"] == "a" * 32
    assert "s" not in stats["maxValues"]
    assert "d" not in stats["minValues"]
    assert stats["maxValues"]["d"] == 2.5
    assert (stats["minValues"]["t"], stats["maxValues"]["t"]) == ("2024-01-02T03:04:05.123Z",
                                                                  "2024-01-02T03:04:05.124Z")
    assert stats["minValues"]["n"] == "2024-01-02 03:04:05.000"
    assert "n" not in stats["maxValues"]
    assert "part" not in stats["nullCount"]
    assert stats["nullCount"]["s"] == 2
    assert parse_column_path('"st"."a ""b"""') == ("st", 'a "b"')


def test_readers_that_skip_files_by_statistics_get_every_matching_row(lake):
    for start in range(0, 4000, 1000):  # several files with distinct ranges
        lake.write("gold.skip", ALL_TYPES.replace("range(2000)", f"range({start}, {start + 1000})"),
                   mode="append" if start else "replace")
    path = str(folder(lake, "gold.skip"))
    expected = lake.sql("SELECT id FROM gold.skip WHERE id BETWEEN 1500 AND 2500 AND dt >= DATE '2024-02-01' "
                        "ORDER BY id").fetchall()
    got = (pl.scan_delta(path).filter((pl.col("id") >= 1500) & (pl.col("id") <= 2500)
                                      & (pl.col("dt") >= pl.date(2024, 2, 1)))
           .select("id").sort("id").collect())
    assert [(v,) for v in got["id"].to_list()] == expected
    table = deltalake.DeltaTable(path).to_pyarrow_table(filters=[("id", ">=", 1500), ("id", "<=", 2500)])
    assert table.num_rows == 1001


def test_stage_then_audit_then_commit_or_abort(lake):
    lake.write("silver.orders", "SELECT 1 AS id, 10 AS amount")
    with lake.stage("silver.orders", "SELECT range AS id, range * 10 AS amount FROM range(5)") as staged:
        assert staged.rows == 5
        assert staged.relation.aggregate("sum(amount)").fetchall() == [(100,)]
        assert lake.sql("SELECT count(*) FROM silver.orders").fetchall() == [(1,)]  # nothing visible yet
        files = [f.path for f in staged.files]
        assert all(p.exists() for p in files)
    assert not any(p.exists() for p in files)  # leaving the block without a commit aborts
    assert lake.history("silver.orders")[0]["version"] == 0
    staged = lake.stage("silver.orders", "SELECT 2 AS id, 20 AS amount", mode="append")
    result = staged.commit({"medallion.checked": "yes"})
    assert (result.version, result.total_rows) == (1, 2)
    with pytest.raises(LakeError, match="already committed or aborted"):
        staged.commit()
    with pytest.raises(LakeError, match="gone"):
        _ = staged.relation
    assert lake.store.raw_history("silver", "orders").__next__()["medallion.checked"] == "yes"


def test_partitioned_tables_replace_only_the_partitions_in_the_new_rows(lake):
    rows = ("SELECT range AS id, DATE '2026-01-01' + (range % 3)::INT AS day, "
            "CASE WHEN range % 4 = 0 THEN NULL ELSE 'k/' || (range % 2) || ' é%' END AS k FROM range(12)")
    lake.write("gold.daily", rows, partition_by=["day", "k"])
    path = folder(lake, "gold.daily")
    assert {p.name.split("=")[0] for p in path.iterdir() if "=" in p.name} == {"day"}
    assert pl.read_delta(str(path)).sort("id").select("id", "day", "k").rows() == \
        lake.sql(rows + " ORDER BY id").fetchall()
    assert deltalake.DeltaTable(str(path)).metadata().partition_columns == ["day", "k"]
    untouched = {f for f in lake.store.snapshot("gold", "daily").files if "day=2026-01-03" in f}
    # Without where: the partitions present in the new rows, (2026-01-02, null) here, are replaced.
    result = lake.write("gold.daily", "SELECT 100 AS id, DATE '2026-01-02' AS day, NULL AS k",
                        mode="replace_where")
    assert result.total_rows == 12  # row 4 replaced by row 100
    assert lake.sql("SELECT id FROM gold.daily WHERE k IS NULL ORDER BY id").fetchall() == [(0,), (8,), (100,)]
    # With where on the partition columns: whole partitions go, no file is rewritten.
    result = lake.write("gold.daily", "SELECT 200 AS id, DATE '2026-01-02' AS day, 'x' AS k", mode="replace_where",
                        where="day = DATE '2026-01-02'")
    assert result.total_rows == 9
    assert lake.sql("SELECT id, k FROM gold.daily WHERE day = DATE '2026-01-02'").fetchall() == [(200, "x")]
    assert untouched <= set(lake.store.snapshot("gold", "daily").files)
    assert sorted(deltalake.DeltaTable(str(path)).to_pyarrow_table().column("id").to_pylist()) == \
        sorted(r[0] for r in lake.sql("SELECT id FROM gold.daily").fetchall())


def test_replace_where_rewrites_only_files_holding_matching_rows(lake):
    for day in range(3):
        lake.write("silver.f", f"SELECT range AS id, {day} AS day FROM range({day * 10}, {day * 10 + 10})",
                   mode="append" if day else "replace")
    before = lake.store.snapshot("silver", "f")
    result = lake.write("silver.f", "SELECT 12 AS id, 1 AS day", mode="replace_where", where="day = 1 AND id < 15")
    after = lake.store.snapshot("silver", "f")
    assert result.total_rows == 26
    assert lake.sql("SELECT id FROM silver.f WHERE day = 1 ORDER BY id").fetchall() == \
        [(12,)] + [(i,) for i in range(15, 20)]
    kept = set(before.files) & set(after.files)
    assert len(kept) == 2  # the files of days 0 and 2 were not rewritten
    with pytest.raises(LakeError, match=r"1 of the new rows do not match where='day = 2'"):
        lake.write("silver.f", "SELECT 5 AS id, 3 AS day", mode="replace_where", where="day = 2")
    with pytest.raises(LakeError, match="replace_where needs where"):
        lake.write("silver.f", "SELECT 5 AS id, 3 AS day", mode="replace_where")
    with pytest.raises(LakeError, match=r"where=\.\.\. goes with mode='replace_where'"):
        lake.write("silver.f", "SELECT 5 AS id, 3 AS day", where="day = 3")


def test_merge_deletes_keys_and_upserts_in_one_commit(lake):
    lake.write("silver.c", "SELECT range AS id, 'a' AS v FROM range(5)", mode="merge", key="id")
    result = lake.write("silver.c", "SELECT range AS id, 'b' AS v FROM range(3, 7)", mode="merge", key="id",
                        delete="SELECT * FROM (VALUES (0), (3), (NULL)) t(id)")
    assert (result.inserted, result.updated, result.deleted, result.version) == (2, 2, 1, 1)
    assert lake.sql("SELECT * FROM silver.c ORDER BY id").fetchall() == [
        (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b"), (6, "b")]  # 3 is upserted, so not deleted
    with pytest.raises(LakeError, match=r"delete=\.\.\. has no column id"):
        lake.write("silver.c", "SELECT 1 AS id, 'x' AS v", mode="merge", key="id", delete="SELECT 1 AS other")
    with pytest.raises(LakeError, match=r"delete=\.\.\. goes with mode='merge'"):
        lake.write("silver.c", "SELECT 1 AS id, 'x' AS v", delete="SELECT 1 AS id")


def test_write_split_merge_moves_a_redelivered_row_between_the_two_tables(lake):
    rules = {"quantity not positive": "qty <= 0"}
    first = "SELECT * FROM (VALUES (1, 5), (2, -1), (3, 2)) t(id, qty)"
    lake.write_split(first, rules, good="silver.lines", bad="silver.quarantine", mode="merge", key="id")
    # Order 2 is re-delivered with a fix, order 3 goes bad.
    again = lake.write_split("SELECT * FROM (VALUES (2, 4), (3, 0)) t(id, qty)", rules, good="silver.lines",
                             bad="silver.quarantine", mode="merge", key="id")
    assert lake.sql("SELECT id, qty FROM silver.lines ORDER BY id").fetchall() == [(1, 5), (2, 4)]
    assert lake.sql("SELECT id, qty FROM silver.quarantine ORDER BY id").fetchall() == [(3, 0)]
    assert (again.good.deleted, again.bad.deleted) == (1, 1)
    with pytest.raises(LakeError, match="key nope must be in both"):
        lake.write_split(first, rules, good="silver.lines", bad="silver.quarantine", mode="merge", key="nope")


def test_append_casts_to_the_table_and_adds_new_columns(lake):
    lake.write("bronze.a", "SELECT 1::BIGINT AS id, 1.5::DOUBLE AS x")
    lake.write("bronze.a", "SELECT 2::INTEGER AS id", mode="append")  # narrower type, missing column
    assert [str(t) for t in lake.table("bronze.a").types] == ["BIGINT", "DOUBLE"]
    lake.write("bronze.a", "SELECT 3 AS id, 2.5 AS x, 'new' AS extra", mode="append")  # schema evolution
    assert lake.sql("SELECT id, x, extra FROM bronze.a ORDER BY id").fetchall() == [
        (1, 1.5, None), (2, None, None), (3, 2.5, "new")]
    assert not list((lake.project.lake / "_medallion" / "staging").glob("*"))  # staging cleaned up


def test_replace_can_change_partitioning_and_other_modes_cannot(lake):
    lake.write("gold.p", "SELECT range AS id, range % 2 AS k FROM range(4)", partition_by="k")
    with pytest.raises(LakeError, match=r"partitioned by \(k\), not \(id\)"):
        lake.write("gold.p", "SELECT 9 AS id, 1 AS k", mode="append", partition_by="id")
    lake.write("gold.p", "SELECT range AS id, range % 2 AS k FROM range(6)", partition_by=[])
    assert deltalake.DeltaTable(str(folder(lake, "gold.p"))).metadata().partition_columns == []
    assert lake.count("gold.p") == 6
    lake.write("gold.p", "SELECT 1 AS id, 0 AS k")  # a plain replace keeps the table unpartitioned
    assert deltalake.DeltaTable(str(folder(lake, "gold.p"))).metadata().partition_columns == []
    with pytest.raises(LakeError, match=r"cannot partition by x \(DOUBLE\)"):
        lake.write("gold.q", "SELECT 1.5::DOUBLE AS x, 1 AS y", partition_by="x")
    with pytest.raises(LakeError, match="partition column nope is not a column"):
        lake.write("gold.q", "SELECT 1 AS x", partition_by="nope")


def test_a_failing_query_leaves_no_file_behind(lake):
    lake.write("silver.safe", "SELECT range AS id FROM range(10)")
    before = sorted(p.name for p in folder(lake, "silver.safe").rglob("*.parquet"))
    failing = ("SELECT CAST(CASE WHEN range < 1500000 THEN range::VARCHAR ELSE 'oops' END AS BIGINT) AS id "
               "FROM range(2000000)")
    with pytest.raises(LakeError, match=r"write to silver.safe \(replace\) failed; the table is unchanged"):
        lake.write("silver.safe", failing)
    assert sorted(p.name for p in folder(lake, "silver.safe").rglob("*.parquet")) == before


def test_a_half_created_table_is_invisible_and_the_next_write_finishes_it(lake):
    lake.write("gold.ok", "SELECT 1 AS a")
    log = folder(lake, "gold.broken") / "_delta_log"
    log.mkdir(parents=True)
    (log / "_commit_0a1b2c.json.tmp").write_text('{"commitInfo":', encoding="utf-8")  # cut short
    (folder(lake, "gold.empty") / "_delta_log").mkdir(parents=True)
    (folder(lake, "gold.nolog")).mkdir(parents=True)
    (folder(lake, "gold.nolog") / "part-x.parquet").write_bytes(b"PAR1 half a file")
    with mnb.connect(lake.project.root) as other:
        assert other.tables() == ["gold.ok"]
        assert not other.exists("gold.broken")
        with pytest.raises(LakeError, match=r"table gold\.broken does not exist"):
            other.table("gold.broken")
        other.write("gold.broken", "SELECT 2 AS b")
        assert other.sql("SELECT b FROM gold.broken").fetchall() == [(2,)]
        assert [p.name for p in log.iterdir()] == ["00000000000000000000.json"]
        removed = other.vacuum(retain_hours=0)
        assert removed["gold.empty"] == []
        assert removed["gold.nolog"] == ["part-x.parquet"]
        assert not folder(lake, "gold.nolog").exists()
        assert not folder(lake, "gold.empty").exists()


def test_vacuum_reclaims_orphans_and_staging_files_but_not_what_is_published(lake):
    for i in range(3):
        lake.write("gold.v", f"SELECT {i} AS v")
    path = folder(lake, "gold.v")
    (path / "part-orphan.parquet").write_bytes(b"interrupted write")
    (path / "part-00000-x-c000.snappy.parquet#1").write_bytes(b"object store staging")
    (path / "_delta_log" / "_commit_dead.json.tmp").write_text("{", encoding="utf-8")
    staging = lake.project.lake / "_medallion" / "staging" / "gold.x-dead"
    staging.mkdir(parents=True)
    (staging / "part-1.parquet").write_bytes(b"x")
    # The published snapshot still points at version 0.
    meta = lake.project.lake / "_medallion"
    (meta / "published.json").write_text(json.dumps({"run_id": "r0", "published_at": "2020-01-01T00:00:00+00:00",
                                                     "tables": {"gold.v": 0}}), encoding="utf-8")
    assert lake.vacuum(retain_hours=1) == {"gold.v": []}  # all of it younger than an hour
    removed = lake.vacuum(retain_hours=0)
    assert sorted(removed["gold.v"]) == sorted(["_delta_log/_commit_dead.json.tmp",
                                                "part-00000-x-c000.snappy.parquet#1", "part-orphan.parquet",
                                                *[Path(f).name for f in lake.store.snapshot("gold", "v", 1).files]])
    assert removed["_medallion/staging"] == ["gold.x-dead/part-1.parquet"]
    assert lake.table("gold.v", version=0).fetchall() == [(0,)]  # published: kept
    with pytest.raises(LakeError, match=r"version 1 of gold.v cannot be read: 1 of its 1 data file\(s\) are gone"):
        lake.table("gold.v", version=1)
    assert lake.table("gold.v").fetchall() == [(2,)]
    assert next(h["version"] for h in lake.history("gold.v")) == 2  # vacuum commits nothing


def test_a_reader_whose_files_were_vacuumed_by_another_process_gets_the_new_version(lake):
    lake.write("gold.r", "SELECT 1 AS v")
    with mnb.connect(lake.project.root) as other:
        other.write("gold.r", "SELECT 2 AS v")
        other.vacuum(retain_hours=0)
    assert lake.table("gold.r").fetchall() == [(2,)]


def test_a_relation_of_another_duckdb_connection_can_be_written(lake):
    import duckdb

    other = duckdb.connect()
    rel = other.sql("SELECT range AS id FROM range(3)")
    assert lake.write("silver.foreign", rel).rows == 3
    assert lake.sql("SELECT sum(id) FROM silver.foreign").fetchall() == [(3,)]
    other.close()
