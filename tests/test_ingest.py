"""Bronze ingestion: new-file detection, cursors, merge sources, lineage, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import IngestError, UsageError
from tests.conftest import write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
CONFIG = """
name: t
layers:
  - {name: bronze, notebook: nb.ipynb}
sources:
  events:
    path: raw/events/events_*.csv
    mode: append
    date_in_name: true
  people:
    path: raw/people/*.csv
    mode: merge
    keys: [person_id]
    cursor: updated_at
  prices:
    path: raw/prices.csv
    mode: replace
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p", CONFIG, {
        "nb.ipynb": NOTEBOOK,
        "raw/events/events_2026-01-01.csv": "id,kind\n1,a\n2,b\n",
        "raw/events/events_2026-01-02.csv": "id,kind\n3,a\n",
        "raw/people/people_1.csv": "person_id,tier,updated_at\n"
                                   "1,bronze,2026-01-01 00:00:00\n2,gold,2026-01-01 00:00:00\n",
        "raw/prices.csv": "sku,price\nA,1.50\n",
    })


def ingest(root: Path, run_id: str = "r1", **kwargs):
    with mnb.connect(root, run_id=run_id) as lake:
        report = lake.ingest(**kwargs)
        return {r.source: r for r in report}


def query(root: Path, sql: str) -> list[tuple]:
    with mnb.connect(root) as lake:
        return lake.sql(sql).fetchall()


def test_first_run_loads_everything_with_lineage(root: Path):
    results = ingest(root)
    assert results["events"].rows == 3
    assert results["events"].new_files == ("raw/events/events_2026-01-01.csv", "raw/events/events_2026-01-02.csv")
    assert query(root, "SELECT id, kind, _source_file, _run_id FROM bronze.events ORDER BY id") == [
        ("1", "a", "raw/events/events_2026-01-01.csv", "r1"),
        ("2", "b", "raw/events/events_2026-01-01.csv", "r1"),
        ("3", "a", "raw/events/events_2026-01-02.csv", "r1"),
    ]
    assert query(root, "SELECT count(DISTINCT _ingested_at) FROM bronze.events") == [(1,)]


def test_rerunning_ingests_nothing_twice(root: Path):
    ingest(root)
    again = ingest(root, run_id="r2")
    assert all(r.rows == 0 and not r.new_files for r in again.values())
    assert query(root, "SELECT count(*) FROM bronze.events") == [(3,)]


def test_only_new_files_are_read(root: Path):
    ingest(root)
    (root / "raw/events/events_2026-01-03.csv").write_text("id,kind\n4,c\n5,c\n")
    results = ingest(root, run_id="r2")
    assert results["events"].new_files == ("raw/events/events_2026-01-03.csv",)
    assert results["events"].rows == 2
    assert query(root, "SELECT _run_id, count(*) FROM bronze.events GROUP BY 1 ORDER BY 1") == [("r1", 3), ("r2", 2)]


def test_run_date_holds_back_files_that_have_not_landed(root: Path):
    first = ingest(root, run_date="2026-01-01")
    assert first["events"].new_files == ("raw/events/events_2026-01-01.csv",)
    assert first["events"].not_yet_due == ("raw/events/events_2026-01-02.csv",)
    second = ingest(root, run_date="2026-01-02")
    assert second["events"].new_files == ("raw/events/events_2026-01-02.csv",)
    assert query(root, "SELECT count(*) FROM bronze.events") == [(3,)]


def test_bad_run_date_is_named(root: Path):
    with pytest.raises(UsageError, match=r"run_date: '2026-13-01' is not an ISO date"):
        ingest(root, run_date="2026-13-01")


def test_merge_source_updates_by_key_and_keeps_the_latest_cursor(root: Path):
    ingest(root)
    (root / "raw/people/people_2.csv").write_text(
        "person_id,tier,updated_at\n1,silver,2026-01-05 00:00:00\n1,gold,2026-01-06 00:00:00\n"
        "2,bronze,2025-12-01 00:00:00\n3,bronze,2026-01-05 00:00:00\n")
    results = ingest(root, run_id="r2")
    assert results["people"].new_files == ("raw/people/people_2.csv",)
    # person 1 -> the latest row of the batch; person 2's row is older than the cursor and ignored.
    assert query(root, "SELECT person_id, tier, _run_id FROM bronze.people ORDER BY person_id") == [
        ("1", "gold", "r2"), ("2", "gold", "r1"), ("3", "bronze", "r2")]


def test_replace_source_reloads_only_when_its_files_change(root: Path):
    ingest(root)
    assert ingest(root)["prices"].rows == 0
    (root / "raw/prices.csv").write_text("sku,price\nA,1.75\nB,2.00\n")
    assert ingest(root)["prices"].rows == 2
    assert query(root, "SELECT * EXCLUDE (_ingested_at, _source_file, _run_id) FROM bronze.prices ORDER BY sku") == [
        ("A", "1.75"), ("B", "2.00")]


def test_a_changed_append_file_is_a_warning_not_a_duplicate(root: Path):
    ingest(root)
    (root / "raw/events/events_2026-01-01.csv").write_text("id,kind\n1,a\n2,b\n9,z\n")
    results = ingest(root, run_id="r2")
    (warning,) = results["events"].warnings
    assert warning.startswith("1 file(s) changed after they were ingested and were not read again")
    assert "raw/events/events_2026-01-01.csv (16 -> 20 bytes)" in warning
    assert "rebuild=['events']" in warning
    assert "--rebuild-source events" in warning
    assert query(root, "SELECT count(*) FROM bronze.events") == [(3,)]
    # Rebuilding the source reads the new content once.
    rebuilt = ingest(root, run_id="r3", rebuild="events")
    assert rebuilt["events"].warnings == ()
    assert query(root, "SELECT id FROM bronze.events ORDER BY id") == [("1",), ("2",), ("3",), ("9",)]


def test_full_refresh_rebuilds_from_all_files(root: Path):
    ingest(root)
    (root / "raw/events/events_2026-01-01.csv").write_text("id,kind\n1,a\n")
    results = ingest(root, full_refresh=True)
    assert results["events"].rows == 2
    assert query(root, "SELECT id FROM bronze.events ORDER BY id") == [("1",), ("3",)]


def test_state_is_committed_with_the_data(root: Path):
    """The list of ingested files lives in the Delta commit that added the rows."""
    ingest(root)
    with mnb.connect(root) as lake:
        commit = next(lake.store.raw_history("bronze", "events"))
    assert '"raw/events/events_2026-01-01.csv"' in commit["medallion.ingest_state"]


def test_missing_files_and_unreadable_files_name_the_source(root: Path):
    for f in (root / "raw/events").iterdir():
        f.unlink()
    with pytest.raises(IngestError, match=r"source events: no files match 'raw/events/events_\*.csv'"):
        ingest(root)


def test_key_column_missing_from_files_is_named(tmp_path: Path):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  people: {path: p.csv, mode: merge, keys: [id]}
""", {"nb.ipynb": NOTEBOOK, "p.csv": "person,tier\n1,a\n"})
    with pytest.raises(IngestError, match=r"source people: column 'id' .* is not in the files; "
                                          r"columns are: person, tier"):
        ingest(root)


def test_malformed_csv_names_the_file_and_loads_nothing(tmp_path: Path):
    lines = ["a,b", *(f"{i},{i}" for i in range(50))]
    lines[26] = "25,25,oops"
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  broken: {path: b.csv}
""", {"nb.ipynb": NOTEBOOK, "b.csv": "\n".join(lines) + "\n"})
    with pytest.raises(IngestError, match=r"^source broken: b.csv line 27: Expected Number of Columns: 2 Found: 3; "
                                          r"nothing from this batch was loaded\n  hint: .*on_bad_rows: quarantine"):
        ingest(root)
    with mnb.connect(root) as lake:
        assert not lake.exists("bronze.broken")


def test_reader_options_are_passed_to_duckdb(tmp_path: Path):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  typed: {path: t.csv.gz, delimiter: ";", schema: {a: DOUBLE}, options: {max_line_size: 100000}}
""", {"nb.ipynb": NOTEBOOK})
    (root / "t.csv.gz").write_bytes(gzip.compress(b"a;b\n1;x\n"))
    ingest(root)
    with mnb.connect(root) as lake:
        assert [str(t) for t in lake.table("bronze.typed").project("a, b").types] == ["DOUBLE", "VARCHAR"]
        assert lake.table("bronze.typed").project("a, b").fetchall() == [(1.0, "x")]


def test_no_file_can_bring_the_lake_into_a_state_connect_cannot_open(tmp_path: Path):
    """Throw every awkward file at ingestion, run after run; connect() and every table must keep working."""
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}, {name: silver, notebook: nb.ipynb}]
sources:
  plain: {path: raw/plain_*.csv}
  loose: {path: raw/loose_*.csv, on_bad_rows: quarantine}
  snapshot: {path: raw/snapshot.csv, mode: replace, on_bad_rows: quarantine}
""", {"nb.ipynb": NOTEBOOK})
    raw = root / "raw"
    raw.mkdir()
    hostile = [
        b"",                                   # 0 bytes
        b"a,b\n",                              # header only
        b"a,A\n1,2\n",                         # names equal but for case
        b"a,\n1,2\n",                          # an empty name
        b"a b,c\n1,2\n",                       # a name with a space
        b"a,_source_file\n1,2\n",              # a lineage column
        b'"a,b\n1,2\n',                        # an unterminated quote in the header
        b"\x00\x01\x02\n\x03",                 # binary
        b"a,b\n1,2,3,4,5\n\n\n",               # too many columns, blank lines
        b"a,b\n" + b"9" * 100_000 + b",1\n",   # a very long value
        "ä,b\n1,2\n".encode("latin-1"),        # a header in the wrong encoding
        b"select,from\n1,2\n",                 # SQL keywords as names
        b"a,b\r\n1,2\r\n3,4\n",                # mixed line ends
    ]
    with mnb.connect(root) as lake:
        lake.write("silver.loose", "SELECT 1 AS x")
    errors = []
    for i, content in enumerate(hostile):
        for prefix in ("plain", "loose"):
            (raw / f"{prefix}_{i:02d}.csv").write_bytes(content)
        (raw / "snapshot.csv").write_bytes(content)
        with mnb.connect(root, run_id=f"r{i}") as lake:
            for source in ("plain", "loose", "snapshot"):
                try:
                    lake.ingest(source)
                except IngestError as exc:
                    errors.append(str(exc))
                    (raw / f"{source}_{i:02d}.csv").unlink(missing_ok=True)  # the operator removes the bad file
            with pytest.raises(mnb.LakeError, match="differ only in case"):
                lake.write("silver.Loose", "SELECT 2 AS x")
        with mnb.connect(root) as lake:
            for name in lake.tables():
                lake.sql(f"SELECT * FROM {name}").fetchall()
            assert lake.sql("SELECT x FROM silver.loose").fetchall() == [(1,)]
    assert errors, "the plain (on_bad_rows: fail) source refused nothing"
    assert all(len(e.splitlines()) <= 3 for e in errors), errors
    assert all(e.startswith("source plain: raw/plain_") for e in errors), errors


def test_a_retry_after_a_crash_between_the_rejects_and_the_data_commit_does_not_double_rejects(tmp_path: Path,
                                                                                             monkeypatch):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  items: {path: "i_*.csv", schema: {n: INTEGER}, on_bad_rows: quarantine}
""", {"nb.ipynb": NOTEBOOK, "i_1.csv": "n\n1\nx\n2\n"})
    from medallion_nb.storage import Staged

    real_commit = Staged.commit

    def crash_on_data(self, *args, **kwargs):
        if self.table == "bronze.items":
            raise mnb.LakeError("disk full")
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(Staged, "commit", crash_on_data)
    with pytest.raises(IngestError, match="disk full"):
        ingest(root)
    assert query(root, "SELECT line FROM bronze.items_rejects") == [(3,)]  # committed before the crash
    monkeypatch.setattr(Staged, "commit", real_commit)
    assert ingest(root, run_id="r2")["items"].rejected == 1
    assert query(root, "SELECT line, raw_line, _run_id FROM bronze.items_rejects") == [(3, "x", "r2")]
    assert query(root, "SELECT n FROM bronze.items ORDER BY n") == [(1,), (2,)]


def test_typed_merge_source_with_a_timestamp_cursor(tmp_path: Path):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  people:
    path: "p_*.csv"
    mode: merge
    keys: [id]
    cursor: updated_at
    schema: {id: INTEGER, updated_at: TIMESTAMP}
""", {"nb.ipynb": NOTEBOOK, "p_1.csv": "id,tier,updated_at\n1,a,2026-01-01 00:00:00\n2,b,2026-01-01 00:00:00\n"})
    ingest(root)
    (root / "p_2.csv").write_text("id,tier,updated_at\n1,c,2026-01-05 00:00:00\n2,z,2025-12-01 00:00:00\n")
    ingest(root, run_id="r2")
    rows = query(root, "SELECT id, tier, CAST(updated_at AS VARCHAR) FROM bronze.people ORDER BY id")
    assert rows == [(1, "c", "2026-01-05 00:00:00"), (2, "b", "2026-01-01 00:00:00")]


def test_changing_a_declared_type_asks_for_a_rebuild(tmp_path: Path):
    config = """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  items: {path: "i_*.csv", schema: {n: %s}}
"""
    root = write_project(tmp_path / "q", config % "VARCHAR", {"nb.ipynb": NOTEBOOK, "i_1.csv": "n\n1\n"})
    ingest(root)
    (root / "medallion.yaml").write_text(config % "INTEGER")
    (root / "i_2.csv").write_text("n\n2\n")
    with pytest.raises(IngestError, match=r"column n is VARCHAR in bronze.items but medallion.yaml declares INTEGER"):
        ingest(root)
    ingest(root, rebuild=["items"])
    assert query(root, "SELECT n FROM bronze.items ORDER BY n") == [(1,), (2,)]


def test_ingest_is_recorded_in_the_write_log_per_file(root: Path, tmp_path: Path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MEDALLION_WRITE_LOG", str(log))
    ingest(root)
    from medallion_nb.reporting import read_write_log

    entries = [e for e in read_write_log(log) if e.get("kind") == "ingest"]
    events = next(e for e in entries if e["source"] == "events")
    assert events["files"] == [
        {"file": "raw/events/events_2026-01-01.csv", "lines": 2, "loaded": 2, "rejected": 0},
        {"file": "raw/events/events_2026-01-02.csv", "lines": 1, "loaded": 1, "rejected": 0},
    ]
    assert (events["rows"], events["rejected"], events["run_id"]) == (3, 0, "r1")


def test_rename_and_normalize_names_give_plain_column_names(tmp_path: Path):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  renamed: {path: r.csv, rename: {"Order ID": order_id, "Unit Price (EUR)": price}, schema: {price: DOUBLE}}
  normalized: {path: n.csv, normalize_names: true, rename: {"2nd Address": address_2}}
""", {"nb.ipynb": NOTEBOOK, "r.csv": 'Order ID,Unit Price (EUR),note\nA1,2.5,x\n',
      "n.csv": "Order ID, Unit Price (EUR) ,2nd Address,1st Line\nA1,2.5,here,there\n"})
    ingest(root)
    assert query(root, "SELECT order_id, price, note FROM bronze.renamed") == [("A1", 2.5, "x")]
    with mnb.connect(root) as lake:
        assert lake.table("bronze.normalized").columns[:4] == ["order_id", "unit_price_eur", "address_2", "_1st_line"]


def test_headerless_files_take_their_columns_from_the_schema(tmp_path: Path):
    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  rows: {path: "r_*.txt", format: csv, header: false, delimiter: "|", schema: {id: INTEGER, name: VARCHAR}}
""", {"nb.ipynb": NOTEBOOK, "r_1.txt": "1|a\n2|b\n", "r_2.txt": "3|c\n"})
    result = ingest(root)["rows"]
    assert [(f.lines, f.loaded) for f in result.files] == [(2, 2), (1, 1)]
    assert query(root, "SELECT id, name FROM bronze.rows ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


def test_parquet_and_json_sources_still_load_with_per_file_counts(tmp_path: Path):
    import duckdb

    root = write_project(tmp_path / "q", """
name: q
layers: [{name: bronze, notebook: nb.ipynb}]
sources:
  events: {path: "e_*.parquet"}
  docs: {path: "d_*.json", mode: merge, keys: [id]}
""", {"nb.ipynb": NOTEBOOK, "d_1.json": '[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]',
      "d_2.json": '[{"id": 2, "v": "c"}]'})
    for i, n in ((1, 3), (2, 2)):
        duckdb.sql(f"COPY (SELECT range AS id, 'x' || range AS v FROM range({n})) TO '{root}/e_{i}.parquet'")
    results = ingest(root)
    assert [(f.file, f.loaded) for f in results["events"].files] == [("e_1.parquet", 3), ("e_2.parquet", 2)]
    assert query(root, "SELECT count(*) FROM bronze.events") == [(5,)]
    assert query(root, "SELECT id, v, _source_file FROM bronze.docs ORDER BY id") == [
        (1, "a", "d_1.json"), (2, "c", "d_2.json")]
