"""Naming rules, each defined once (names.py), and applied the same way everywhere that checks a name."""

from __future__ import annotations

import duckdb
import pytest

from medallion_nb.errors import LakeError, ProjectError, UsageError
from medallion_nb.names import (
    LOAD_MODES,
    WRITE_MODES,
    check_project_name,
    check_run_id,
    parse_table_name,
)
from medallion_nb.project import load_project

LAYERS = ("bronze", "silver", "gold")


def test_a_table_name_is_layer_dot_table():
    assert parse_table_name("silver.orders") == ("silver", "orders")
    assert parse_table_name("silver.Orders_2", LAYERS) == ("silver", "Orders_2")


@pytest.mark.parametrize(("value", "message"), [
    ("orders", r"table name 'orders' must be <layer>\.<table>, e\.g\. silver\.orders"),
    ("SELECT * FROM silver.t", r"table name 'SELECT \* FROM silver\.t' must be <layer>\.<table>"),
    ("platinum.t", r"table 'platinum\.t': 'platinum' is not a layer of this project \(layers: bronze, silver, gold\)"),
    ("silver.2x", r"'2x' is not a valid name"),
    (duckdb.sql("SELECT 1"),
     r"expected a table name \(<layer>\.<table>, e\.g\. silver\.orders\), got a DuckDBPyRelation"),
    (3, r"expected a table name .*, got an int \(3\)"),
    (None, r"expected a table name .*, got None"),
])
def test_what_is_not_a_table_name_is_said_plainly(value, message):
    with pytest.raises(LakeError, match=message):
        parse_table_name(value, LAYERS)


def test_sql_where_a_table_name_belongs_points_at_lake_sql():
    with pytest.raises(LakeError) as info:
        parse_table_name("SELECT * FROM silver.t", LAYERS)
    assert "lake.sql(" in (info.value.hint or "")


@pytest.mark.parametrize("bad", ["", "../escape", "-dash", "a/b", "x" * 129, "with space", 7])
def test_run_ids_are_safe_folder_names(bad):
    with pytest.raises(UsageError, match="is not a safe folder name"):
        check_run_id(bad)
    assert check_run_id("nightly-2026.01_05") == "nightly-2026.01_05"


@pytest.mark.parametrize("name", ["shop", "sales_pipeline", "a-b", "Shop", "2fast", "my shop", "_x", ""])
def test_init_and_medallion_yaml_apply_the_same_project_name_rule(tmp_path, name):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (folder / "medallion.yaml").write_text(f"name: {name!r}\nlayers:\n  - name: bronze\n    notebook: nb.ipynb\n")
    try:
        check_project_name(name)
        init_accepts = True
    except UsageError:
        init_accepts = False
    try:
        load_project(folder)
        config_accepts = True
    except ProjectError:
        config_accepts = False
    assert init_accepts == config_accepts


def test_loading_modes_are_the_write_modes_without_a_where():
    assert set(LOAD_MODES) == set(WRITE_MODES) - {"replace_where"}
