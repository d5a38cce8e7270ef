"""The hostile file catalogue: every kind of bad file, with both on_bad_rows settings.

Each test asserts the exact outcome, that ``connect()`` still opens the lake, and
that no row was lost: per file, rows loaded + rows rejected = data lines, where the
data lines are counted here independently (non-blank lines after the header).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import IngestError
from tests.conftest import write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
HEADER = "id,item,qty\n"
BOTH = pytest.mark.parametrize("on_bad_rows", ["fail", "quarantine"])


def config(on_bad_rows: str, extra: str = "") -> str:
    return f"""
name: h
layers: [{{name: bronze, notebook: nb.ipynb}}]
sources:
  orders:
    path: raw/orders_*.csv
    mode: append
    schema: {{id: INTEGER, item: VARCHAR, qty: INTEGER}}
    null_values: ["", "NA"]
    on_bad_rows: {on_bad_rows}
{extra}"""


def rows(start: int, n: int) -> str:
    return "".join(f"{i},item {i},{i % 7 + 1}\n" for i in range(start, start + n))


def make(tmp_path: Path, on_bad_rows: str, files: dict[str, str | bytes], extra: str = "") -> Path:
    root = write_project(tmp_path / "p", config(on_bad_rows, extra), {"nb.ipynb": NOTEBOOK})
    for name, content in files.items():
        path = root / "raw" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def data_lines(path: Path) -> int:
    """Counted the plain way, independently of the library."""
    return max(sum(1 for line in path.read_bytes().split(b"\n") if line.strip(b"\r")) - 1, 0)


def ingest(root: Path, run_id: str = "r1", **kwargs):
    with mnb.connect(root, run_id=run_id) as lake:
        (result,) = lake.ingest(**kwargs)
    return result


def lake_opens(root: Path) -> dict[str, int]:
    """connect() works and every table reads; returns the row count of each."""
    with mnb.connect(root) as lake:
        return {name: lake.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in lake.tables()}


def assert_accounted(root: Path, result) -> None:
    """Per file, loaded + rejected = data lines; the tables hold exactly those rows."""
    assert result.files, "no per-file accounting"
    for f in result.files:
        assert f.loaded + f.rejected == f.lines == data_lines(root / f.file), f
    counts = lake_opens(root)
    assert counts.get("bronze.orders", 0) >= sum(f.loaded for f in result.files)
    if result.rejects_table:
        with mnb.connect(root) as lake:
            per_file = dict(lake.sql(f"SELECT _source_file, count(*) FROM {result.rejects_table} GROUP BY 1")
                            .fetchall())
        assert per_file == {f.file: f.rejected for f in result.files if f.rejected}


def rejects(root: Path) -> list[tuple]:
    with mnb.connect(root) as lake:
        return lake.sql("SELECT _source_file, line, column_name, error_type, raw_line FROM bronze.orders_rejects "
                        "ORDER BY _source_file, line").fetchall()


# -- unterminated quote: first, middle and last of several files ---------------------
@BOTH
@pytest.mark.parametrize("bad", [0, 2, 4])
def test_unterminated_quote(tmp_path: Path, on_bad_rows: str, bad: int):
    files = {f"orders_2026-01-0{d + 1}.csv": HEADER + rows(d * 1000, 300) for d in range(5)}
    name = f"orders_2026-01-0{bad + 1}.csv"
    lines = files[name].splitlines(keepends=True)
    lines[101] = f'{bad * 1000 + 100},"broken item,3\n'  # physical line 102
    files[name] = "".join(lines)
    root = make(tmp_path, on_bad_rows, files)
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=rf"^source orders: raw/{name} line 102 \(column item\): Value with "
                                              r"unterminated quote found.; nothing from this batch was loaded\n") as e:
            ingest(root)
        assert len(str(e.value).splitlines()) <= 3
        assert lake_opens(root) == {}
        return
    result = ingest(root)
    assert result.rows == 5 * 300 - 1
    assert result.rejected == 1
    assert rejects(root) == [(f"raw/{name}", 102, "item", "UNQUOTED VALUE", f'{bad * 1000 + 100},"broken item,3')]
    assert_accounted(root, result)
    with mnb.connect(root) as lake:
        # Every other row of the bad file loaded, including all those after the broken line.
        got = lake.sql(f"SELECT count(*), max(id) FROM bronze.orders WHERE _source_file = 'raw/{name}'").fetchall()
        assert got == [(299, bad * 1000 + 299)]


@BOTH
def test_two_unterminated_quotes_in_one_file_with_a_quoted_field_between(tmp_path: Path, on_bad_rows: str):
    lines = (HEADER + rows(0, 300)).splitlines(keepends=True)
    lines[50] = '49,"open,1\n'
    lines[120] = '119,"a, quoted item",2\n'
    lines[200] = '199,"open again,1\n'
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": "".join(lines)})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=r"orders_2026-01-01.csv line 51 \(column item, qty\): Value with unt"):
            ingest(root)
        return
    result = ingest(root)
    assert [(r[1], r[3]) for r in rejects(root)] == [(51, "UNQUOTED VALUE"), (201, "UNQUOTED VALUE")]
    assert result.rows == 298
    assert_accounted(root, result)
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT item FROM bronze.orders WHERE id = 119").fetchall() == [("a, quoted item",)]


# -- wrong column count -------------------------------------------------------------
@BOTH
@pytest.mark.parametrize(("line", "kind", "column", "message"), [
    ("5,item 5,1,surplus", "TOO MANY COLUMNS", None, "Expected Number of Columns: 3 Found: 4"),
    ("5,item 5", "MISSING COLUMNS", "qty", "Expected Number of Columns: 3 Found: 2"),
])
def test_wrong_column_count(tmp_path: Path, on_bad_rows: str, line: str, kind: str, column: str | None,
                            message: str):
    text = HEADER + rows(0, 5) + line + "\n" + rows(6, 10)
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": text, "orders_2026-01-02.csv": HEADER + rows(100, 5)})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=rf"raw/orders_2026-01-01.csv line 7.*: {message}; nothing"):
            ingest(root)
        assert lake_opens(root) == {}
        return
    result = ingest(root)
    assert rejects(root) == [("raw/orders_2026-01-01.csv", 7, column, kind, line)]
    assert result.rows == 20
    assert_accounted(root, result)


# -- a value that does not cast to its declared type ------------------------------------
@BOTH
def test_non_numeric_value_in_a_typed_column(tmp_path: Path, on_bad_rows: str):
    text = HEADER + rows(0, 3) + "3,item 3,late\n4,item 4,NA\n5,,\n" + rows(6, 3)
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": text})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=r"line 5 \(column qty\): Error when converting column \"qty\". "
                                              r"Could not convert string \"late\" to 'INTEGER'"):
            ingest(root)
        return
    result = ingest(root)
    assert rejects(root) == [("raw/orders_2026-01-01.csv", 5, "qty", "CAST", "3,item 3,late")]
    with mnb.connect(root) as lake:
        typed = lake.table("bronze.orders").project("id, item, qty")
        assert [str(t) for t in typed.types] == ["INTEGER", "VARCHAR", "INTEGER"]
        # Null markers are NULLs, not errors.
        assert typed.filter("id IN (4, 5)").order("id").fetchall() == [(4, "item 4", None), (5, None, None)]
    assert_accounted(root, result)


# -- duplicated rows ----------------------------------------------------------------
@BOTH
def test_duplicated_rows_are_kept_as_delivered(tmp_path: Path, on_bad_rows: str):
    text = HEADER + rows(0, 3) + rows(1, 1) * 2
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": text})
    result = ingest(root)
    assert result.rows == 5
    assert result.rejected == 0
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT count(*) FROM bronze.orders WHERE id = 1").fetchall() == [(3,)]
    assert_accounted(root, result)


# -- extra and missing columns ------------------------------------------------------------
@BOTH
def test_extra_column_is_added_and_older_rows_get_null(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 3)})
    ingest(root)
    (root / "raw/orders_2026-01-02.csv").write_text("qty,id,colour,item\n2,10,red,item 10\n")  # reordered too
    result = ingest(root, run_id="r2")
    assert "raw/orders_2026-01-02.csv: new column(s) colour added (NULL in earlier rows)" in result.notes
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT id, item, qty, colour FROM bronze.orders ORDER BY id").fetchall() == [
            (0, "item 0", 1, None), (1, "item 1", 2, None), (2, "item 2", 3, None), (10, "item 10", 2, "red")]
    assert_accounted(root, result)


@BOTH
def test_missing_column_is_null(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 2),
                                         "orders_2026-01-02.csv": "item,id\nitem 7,7\n"})
    result = ingest(root)
    assert "raw/orders_2026-01-02.csv: column(s) qty missing, read as NULL" in result.notes
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT id, item, qty FROM bronze.orders ORDER BY id").fetchall() == [
            (0, "item 0", 1), (1, "item 1", 2), (7, "item 7", None)]
    assert_accounted(root, result)


@BOTH
def test_on_schema_change_fail_names_the_file_and_column(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 2),
                                         "orders_2026-01-02.csv": "id,item,qty,colour\n5,x,1,red\n"},
                extra="    on_schema_change: fail\n")
    with pytest.raises(IngestError, match=r"^source orders: raw/orders_2026-01-02.csv: new column\(s\) colour; "
                                          r"nothing from this batch was loaded"):
        ingest(root)
    assert lake_opens(root) == {}


# -- empty and header-only files ------------------------------------------------------------
@BOTH
@pytest.mark.parametrize(("content", "note"), [
    ("", "empty file (0 bytes): nothing loaded"),
    ("id,item,qty,surprise\n", "header only, no data lines: nothing loaded"),
])
def test_empty_and_header_only_files_load_nothing_and_keep_the_schema(tmp_path: Path, on_bad_rows: str,
                                                                      content: str, note: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 2)})
    ingest(root)
    with mnb.connect(root) as lake:
        schema = lake.info("bronze.orders")["columns"]
    (root / "raw/orders_2026-01-02.csv").write_text(content)
    result = ingest(root, run_id="r2")
    assert [(f.file, f.lines, f.loaded, f.rejected, f.note) for f in result.files] == [
        ("raw/orders_2026-01-02.csv", 0, 0, 0, note)]
    with mnb.connect(root) as lake:
        assert lake.info("bronze.orders")["columns"] == schema
        assert lake.count("bronze.orders") == 2
    assert ingest(root, run_id="r3").new_files == ()  # recorded: not read again


@BOTH
def test_only_empty_files_create_the_declared_table_empty(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": ""})
    result = ingest(root)
    assert result.files[0].note == "empty file (0 bytes): nothing loaded"
    assert lake_opens(root)["bronze.orders"] == 0
    with mnb.connect(root) as lake:
        assert lake.table("bronze.orders").columns[:3] == ["id", "item", "qty"]


# -- encodings ----------------------------------------------------------------------------
LATIN1 = HEADER.encode() + "1,café crème,2\n2,plain,3\n".encode("latin-1")


@BOTH
def test_latin1_bytes_read_as_utf8(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": LATIN1, "orders_2026-01-02.csv": HEADER + rows(9, 1)})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=r"orders_2026-01-01.csv line 2 \(column item\): Invalid unicode"):
            ingest(root)
        return
    result = ingest(root)
    assert rejects(root) == [("raw/orders_2026-01-01.csv", 2, "item", "INVALID ENCODING", "1,caf\\xe9 cr\\xe8me,2")]
    assert result.rows == 2
    assert_accounted(root, result)


@BOTH
def test_latin1_bytes_with_encoding_latin1(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": LATIN1}, extra="    encoding: latin-1\n")
    result = ingest(root)
    assert result.rejected == 0
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT item FROM bronze.orders ORDER BY id").fetchall() == [("café crème",), ("plain",)]
    assert_accounted(root, result)


# -- files that are not CSV at all -----------------------------------------------------------
@BOTH
@pytest.mark.parametrize(("content", "reason"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\nmore\x00binary\n", "not a text file"),
    (b'{"id": 1, "item": "x"}\n{"id": 2, "item": "y"}\n', "is not a plain name"),
    (b"<html>\n<body>oops</body>\n</html>\n", "is not a plain name"),
    (b"name,email\nann,ann@example.com\n", "has none of the source's columns"),
])
def test_a_file_that_is_not_csv(tmp_path: Path, on_bad_rows: str, content: bytes, reason: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 3),
                                         "orders_2026-01-02.csv": content,
                                         "orders_2026-01-03.csv": HEADER + rows(10, 3)})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=rf"^source orders: raw/orders_2026-01-02.csv: .*{reason}"):
            ingest(root)
        assert lake_opens(root) == {}
        return
    result = ingest(root)
    assert result.rows == 6  # the good files load
    bad = next(f for f in result.files if f.file.endswith("02.csv"))
    assert reason in bad.note
    assert bad.loaded == 0
    assert {r[3] for r in rejects(root)} == {"UNREADABLE FILE"}
    assert_accounted(root, result)


# -- a file deleted after ingestion ------------------------------------------------------------
@BOTH
def test_a_file_deleted_after_ingestion_is_reported_and_rebuild_removes_its_rows(tmp_path: Path, on_bad_rows: str):
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": HEADER + rows(0, 3),
                                         "orders_2026-01-02.csv": HEADER + rows(10, 2)})
    assert_accounted(root, ingest(root))
    (root / "raw/orders_2026-01-01.csv").unlink()
    result = ingest(root, run_id="r2")
    (warning,) = result.warnings
    assert warning.startswith("1 file(s) ingested earlier no longer exist, their rows are still in bronze.orders: "
                              "raw/orders_2026-01-01.csv;")
    assert lake_opens(root)["bronze.orders"] == 5
    rebuilt = ingest(root, run_id="r3", rebuild=["orders"])
    assert rebuilt.warnings == ()
    assert lake_opens(root)["bronze.orders"] == 2
    assert_accounted(root, rebuilt)


# -- legitimate multi-line values are not a false alarm ------------------------------------------
@BOTH
def test_quoted_values_spanning_lines_are_one_record(tmp_path: Path, on_bad_rows: str):
    text = HEADER + '1,"two\nlines",2\n2,"three\r\nlines\nhere",3\n3,x,late\n'
    root = make(tmp_path, on_bad_rows, {"orders_2026-01-01.csv": text})
    if on_bad_rows == "fail":
        with pytest.raises(IngestError, match=r"line 7 \(column qty\)"):
            ingest(root)
        return
    result = ingest(root)
    assert (result.files[0].lines, result.files[0].loaded, result.files[0].rejected) == (3, 2, 1)
    assert [r[1] for r in rejects(root)] == [7]
    with mnb.connect(root) as lake:
        assert lake.sql("SELECT item FROM bronze.orders ORDER BY id").fetchall() == [("two\nlines",),
                                                                                     ("three\r\nlines\nhere",)]
