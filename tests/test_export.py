"""`medallion-nb export`: gold tables as Parquet + CSV snapshots with a manifest, swapped in whole."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from medallion_nb import MedallionError, connect, load_project
from medallion_nb.cli import main
from medallion_nb.export import export_tables, read_manifest
from tests.conftest import THREE_LAYERS, write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
LAYERS = THREE_LAYERS


def make_project(tmp_path: Path, extra: str = "", layers: str = LAYERS) -> Path:
    books = {f"notebooks/{n}.ipynb": NOTEBOOK for n in ("bronze", "silver", "gold")}
    return write_project(tmp_path / "shop", f"name: shop\nlayers:{layers}{extra}", books)


def write_gold(root: Path, run_id: str = "r1", days: int = 3) -> None:
    with connect(root, run_id=run_id) as lake:
        lake.write("silver.sales", f"""
            SELECT d::DATE AS day, (i % 3) AS store, CAST(i * 1.5 AS DECIMAL(10,2)) AS revenue, 'note, "quoted"' AS note
            FROM range({days * 10}) t(i), (SELECT DATE '2026-01-01' + (i // 10)::INT AS d) x
        """)
        lake.write("gold.daily", "SELECT day, sum(revenue) AS revenue, count(*) AS sales FROM silver.sales "
                                 "GROUP BY day ORDER BY day")
        lake.write("gold.by_store", "SELECT store, sum(revenue) AS revenue FROM silver.sales GROUP BY store")


def rows(sql: str) -> list[tuple]:
    return sorted(duckdb.sql(sql).fetchall())


def test_export_writes_parquet_csv_and_manifest(tmp_path):
    root = make_project(tmp_path)
    write_gold(root)
    result = export_tables(root)
    out = root / "exports"
    assert result.out == out == load_project(root).export_folder
    assert sorted(p.name for p in out.iterdir()) == [
        "by_store.csv", "by_store.parquet", "daily.csv", "daily.parquet", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["project"] == "shop"
    assert manifest["layer"] == "gold"
    assert manifest["exported_at"].endswith("+00:00")
    tables = {t["table"]: t for t in manifest["tables"]}
    assert set(tables) == {"gold.daily", "gold.by_store"}
    assert tables["gold.daily"]["rows"] == 3
    assert tables["gold.by_store"]["rows"] == 3
    assert tables["gold.daily"]["run_id"] == "r1"
    assert tables["gold.daily"]["version"] == 0
    assert tables["gold.daily"]["written_at"].startswith("20")
    assert tables["gold.daily"]["files"] == {"parquet": "daily.parquet", "csv": "daily.csv"}
    with connect(root) as lake:
        expected = sorted(lake.table("gold.daily").fetchall())
    assert rows(f"SELECT * FROM read_parquet('{out / 'daily.parquet'}')") == expected
    assert rows(f"SELECT day, revenue, sales FROM read_csv('{out / 'daily.csv'}', header=true, "
                "columns={'day': 'DATE', 'revenue': 'DECIMAL(38,2)', 'sales': 'BIGINT'})") == expected
    assert "exported 2 gold table(s)" in str(result)


def test_csv_quotes_awkward_text(tmp_path):
    root = make_project(tmp_path)
    with connect(root, run_id="r1") as lake:
        lake.write("gold.notes", "SELECT 1 AS id, 'a, \"b\"\nc' AS note")
    export_tables(root)
    assert rows(f"SELECT * FROM read_csv('{root / 'exports' / 'notes.csv'}', header=true)") == [(1, 'a, "b"\nc')]


def test_reexport_replaces_the_folder_and_records_the_new_version(tmp_path):
    root = make_project(tmp_path)
    write_gold(root, "r1", days=3)
    export_tables(root)
    write_gold(root, "r2", days=5)
    export_tables(root)
    manifest = read_manifest(root / "exports")
    daily = next(t for t in manifest["tables"] if t["table"] == "gold.daily")
    assert (daily["rows"], daily["version"], daily["run_id"]) == (5, 1, "r2")
    assert rows(f"SELECT count(*) FROM read_parquet('{root / 'exports' / 'daily.parquet'}')") == [(5,)]
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging or old folders left


def test_failed_export_keeps_the_previous_one(tmp_path):
    root = make_project(tmp_path)
    write_gold(root)
    export_tables(root)
    before = {p.name: p.read_bytes() for p in (root / "exports").iterdir()}
    for data_file in (root / "data" / "lake" / "gold" / "daily").glob("*.parquet"):
        data = bytearray(data_file.read_bytes())
        footer = int.from_bytes(data[-8:-4], "little")
        data[4:len(data) - footer - 8] = b"\xff" * (len(data) - footer - 12)  # data pages garbled, footer intact
        data_file.write_bytes(bytes(data))
    with pytest.raises(MedallionError, match=r"gold\.daily"):
        export_tables(root)
    assert {p.name: p.read_bytes() for p in (root / "exports").iterdir()} == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_export_dir_from_config_and_out_option(tmp_path):
    root = make_project(tmp_path, "export:\n  dir: bi/gold\n")
    write_gold(root)
    assert export_tables(root).out == root / "bi" / "gold"
    assert (root / "bi" / "gold" / "manifest.json").is_file()
    other = tmp_path / "elsewhere" / "snap"
    assert export_tables(root, other).out == other
    assert (other / "daily.parquet").is_file()


def test_refuses_a_folder_with_other_files(tmp_path):
    root = make_project(tmp_path)
    write_gold(root)
    precious = root / "exports" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("mine", encoding="utf-8")
    with pytest.raises(MedallionError, match="already holds files that are not an earlier export"):
        export_tables(root)
    assert precious.read_text(encoding="utf-8") == "mine"
    with pytest.raises(MedallionError, match="is a file"):
        export_tables(root, precious)


def test_nothing_to_export(tmp_path):
    root = make_project(tmp_path)
    with pytest.raises(MedallionError, match="layer gold of shop has no tables yet") as err:
        export_tables(root)
    assert "medallion-nb run" in str(err.value)
    assert not (root / "exports").exists()


def test_layer_choice(tmp_path):
    layers = ("\n  - name: raw\n    notebook: notebooks/bronze.ipynb"
              "\n  - name: marts\n    notebook: notebooks/gold.ipynb\n")
    root = make_project(tmp_path, layers=layers)
    with connect(root, run_id="r1") as lake:
        lake.write("raw.a", "SELECT 1 AS x")
        lake.write("marts.b", "SELECT 2 AS y")
    assert export_tables(root).layer == "marts"  # no gold layer: the last one
    assert export_tables(root, tmp_path / "raw", layer="raw").tables[0].table == "raw.a"


def test_cli_export(tmp_path, capsys):
    root = make_project(tmp_path)
    write_gold(root)
    assert main(["export", "--project", str(root), "--out", str(tmp_path / "bi")]) == 0
    out = capsys.readouterr().out
    assert "gold.daily: 3 rows" in out
    assert (tmp_path / "bi" / "manifest.json").is_file()
    assert main(["export", "--project", str(root), "--layer", "nope"]) == 2
    assert "no layer 'nope'" in capsys.readouterr().err
    empty = make_project(tmp_path / "empty")
    assert main(["export", "--project", str(empty)]) == 1
    assert "has no tables yet" in capsys.readouterr().err
