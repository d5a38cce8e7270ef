"""medallion.yaml loading and validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medallion_nb import ProjectError, load_project
from medallion_nb.project import find_project_root
from tests.conftest import REPO, write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def test_demo_project_loads_into_typed_objects():
    project = load_project(REPO)
    assert project.name == "shop"
    assert [layer.name for layer in project.layers] == ["bronze", "silver", "gold"]
    assert project.layers[0].notebooks == (REPO / "notebooks" / "bronze.ipynb",)
    assert project.lake == REPO / "data" / "lake"
    orders = project.source("orders")
    assert (orders.mode, orders.keys, orders.date_in_name) == ("append", ("order_id",), True)
    assert project.source("customers").cursor == "updated_at"
    assert project.schedule is not None
    assert project.schedule.cron == "0 6 * * *"


def test_relative_paths_resolve_against_the_project_not_the_cwd(tmp_path: Path, monkeypatch):
    root = write_project(tmp_path / "p", "name: p\nlake: out/lake\nlayers:\n  - name: bronze\n    notebook: b.ipynb\n",
                         {"b.ipynb": NOTEBOOK})
    monkeypatch.chdir(tmp_path)
    project = load_project("p")
    assert project.lake == (root / "out" / "lake").resolve()
    assert project.layers[0].notebooks[0] == (root / "b.ipynb").resolve()


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path):
    root = write_project(tmp_path / "bad", """
name: Bad Name
namespace: Company
colour: blue
layers:
  - name: bronze
    notebook: missing.ipynb
  - name: bronze
    notebook: also.txt
    timeout: 1h
sources:
  orders:
    path: raw/*.csv
    mode: apend
  people:
    path: raw/p.csv
    mode: merge
schedule:
  cron: every day
kestra:
  retries: -1
""")
    with pytest.raises(ProjectError) as info:
        load_project(root)
    text = str(info.value)
    for expected in (
        "name: 'Bad Name' is not a lowercase name",
        "namespace: 'Company' is not a Kestra namespace",
        "colour: unknown key",
        "layers.bronze.notebooks[0]: 'missing.ipynb' does not exist",
        "layers.bronze: duplicate layer name",
        "'also.txt' is not a .ipynb file",
        "layers.bronze.timeout: '1h' is not an ISO-8601 duration",
        "sources.orders.mode: 'apend' is not one of replace, append, merge",
        "sources.people.keys: required when mode is merge",
        "schedule.cron: 'every day' is not a cron expression",
        "kestra.retries: expected a whole number >= 0",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"
    assert str(root / "medallion.yaml") in text
    assert len(info.value.problems) == 12  # a heading plus 11 problems


def test_missing_required_keys_and_wrong_shapes(tmp_path: Path):
    root = write_project(tmp_path / "p", "description: 3\nsources: [a, b]\n")
    with pytest.raises(ProjectError, match=r"name: missing \(required\)") as info:
        load_project(root)
    assert "layers: missing (required)" in str(info.value)
    assert "sources: expected a mapping of source name to settings, got a list" in str(info.value)


def test_invalid_yaml_names_the_file(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: [unclosed\n")
    with pytest.raises(ProjectError, match=r"medallion.yaml: not valid YAML"):
        load_project(root)


def test_empty_file_is_an_error(tmp_path: Path):
    root = write_project(tmp_path / "p", "")
    with pytest.raises(ProjectError, match="is empty"):
        load_project(root)


def test_project_root_is_found_from_a_subfolder(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: p\nlayers:\n  - name: bronze\n    notebook: nb/b.ipynb\n",
                         {"nb/b.ipynb": NOTEBOOK})
    assert find_project_root(root / "nb") == root.resolve()
    assert load_project(root / "nb").root == root.resolve()


def test_no_project_anywhere_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ProjectError, match=r"no medallion\.yaml") as info:
        find_project_root(tmp_path)
    assert "medallion-nb init" in str(info.value)


def test_unknown_layer_and_source_lookups_name_the_known_ones():
    project = load_project(REPO)
    with pytest.raises(ProjectError, match=r"no layer 'platinum' \(layers are: bronze, silver, gold\)"):
        project.layer("platinum")
    with pytest.raises(ProjectError, match="no source 'refunds'"):
        project.source("refunds")


LAYER = "layers:\n  - name: bronze\n    notebook: b.ipynb\n"


def problems_of(tmp_path: Path, text: str) -> str:
    root = write_project(tmp_path / "p", text, {"b.ipynb": NOTEBOOK})
    with pytest.raises(ProjectError) as info:
        load_project(root)
    return str(info.value)


def test_duplicate_keys_anywhere_are_errors_naming_the_line(tmp_path: Path):
    text = problems_of(tmp_path, "name: p\n" + LAYER + """sources:
  orders:
    path: a.csv
  orders:
    path: b.csv
    mode: append
    mode: merge
""")
    assert "line 8: duplicate key 'orders' (first given on line 6)" in text
    assert "line 11: duplicate key 'mode' (first given on line 10)" in text


@pytest.mark.parametrize(("cron", "message"), [
    ("99 25 * * *", "the minute field '99' is out of range or malformed"),
    ("0 25 * * *", "the hour field '25' is out of range or malformed"),
    ("0 6 * * 8", "the day-of-week field '8' is out of range or malformed"),
    ("0 6 * *", "4 field(s); expected 5"),
    ("0 0 6 * * *", "6 field(s); expected 5"),
    ("@sometimes", "nicknames are @yearly"),
])
def test_cron_expressions_are_validated_field_by_field(tmp_path: Path, cron: str, message: str):
    text = problems_of(tmp_path, f"name: p\n{LAYER}schedule:\n  cron: '{cron}'\n")
    assert f"schedule.cron: '{cron}' is not a cron expression ({message}" in text


def test_valid_schedules_load(tmp_path: Path):
    for cron, zone in (("*/15 6-18 * * MON-FRI", "Europe/Berlin"), ("@daily", "UTC"), ("0 6 1 * *", "Asia/Tokyo")):
        root = write_project(tmp_path / cron.replace("/", "_").replace(" ", "_"),
                             f"name: p\n{LAYER}schedule:\n  cron: '{cron}'\n  timezone: {zone}\n",
                             {"b.ipynb": NOTEBOOK})
        assert load_project(root).schedule.timezone == zone


def test_unknown_time_zone_is_refused(tmp_path: Path):
    text = problems_of(tmp_path, f"name: p\n{LAYER}schedule:\n  cron: '0 6 * * *'\n  timezone: Mars/Olympus\n")
    assert "schedule.timezone: 'Mars/Olympus' is not an IANA time zone" in text


@pytest.mark.parametrize("name", ["main", "temp", "system", "information_schema", "pg_catalog", "select", "order"])
def test_reserved_layer_names_are_refused_at_load_time(tmp_path: Path, name: str):
    text = problems_of(tmp_path, f"name: p\nlayers:\n  - name: {name}\n    notebook: b.ipynb\n")
    assert f"layers[0].name: '{name}' is reserved by DuckDB" in text


def test_layer_names_starting_with_underscore_are_refused(tmp_path: Path):
    text = problems_of(tmp_path, "name: p\nlayers:\n  - name: _meta\n    notebook: b.ipynb\n")
    assert "layers[0].name: '_meta' is not a lowercase identifier" in text


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("MEDALLION_THREADS", "abc", "environment variable MEDALLION_THREADS='abc' is not a whole number >= 1"),
    ("MEDALLION_THREADS", "0", "environment variable MEDALLION_THREADS='0' is not a whole number >= 1"),
    ("MEDALLION_MEMORY_LIMIT", "lots", "environment variable MEDALLION_MEMORY_LIMIT='lots' is not a size"),
])
def test_environment_settings_are_named_in_their_errors(tmp_path: Path, monkeypatch, variable: str, value: str,
                                                       message: str):
    import medallion_nb as mnb

    root = write_project(tmp_path / "p", f"name: p\n{LAYER}", {"b.ipynb": NOTEBOOK})
    monkeypatch.setenv(variable, value)
    with pytest.raises(ProjectError, match=re.escape(message)):
        mnb.connect(root)


def test_source_settings_are_validated(tmp_path: Path):
    text = problems_of(tmp_path, "name: p\n" + LAYER + """sources:
  orders:
    path: o.csv
    schema: {id: INTEGR, 'bad name': INTEGER, price: "DECIMAL(12,2)"}
    null_values: 3
    encoding: cp1252
    on_bad_rows: skip
    on_schema_change: merge
    rename: {"Order ID": "order id"}
    options: {types: {a: INTEGER}, nullstr: NA}
  events:
    path: e.parquet
    encoding: latin-1
  orders_rejects:
    path: r.csv
  headless:
    path: h.csv
    header: false
""")
    for expected in (
        "sources.orders.schema.id: 'INTEGR' is not a DuckDB type",
        "sources.orders.schema.bad name: column names are letters, digits and _",
        "sources.orders.null_values: expected a list of strings",
        "sources.orders.encoding: 'cp1252' is not one of utf-8, utf-16, latin-1",
        "sources.orders.on_bad_rows: 'skip' is not one of fail, quarantine",
        "sources.orders.on_schema_change: 'merge' is not one of add_columns, fail",
        "sources.orders.rename.Order ID: 'order id' is not a plain column name",
        "sources.orders.options.types: set by medallion_nb for a fixed-dialect, fully accounted read; "
        "use sources.orders.schema instead",
        "sources.orders.options.nullstr: set by medallion_nb",
        "sources.events: encoding: only for csv sources (this one is parquet)",
        "sources.orders_rejects: clashes with the rejects table of source 'orders'",
        "sources.headless.schema: required when header is false",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"


def test_declared_source_loads_into_typed_settings(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: p\n" + LAYER + """sources:
  orders:
    path: o.csv
    schema: {id: int, price: "decimal(12, 2)", at: timestamp}
    null_values: ["", NA]
    encoding: ISO-8859-1
    delimiter: ";"
    on_bad_rows: quarantine
    rename: {"Order ID": id}
""", {"b.ipynb": NOTEBOOK})
    source = load_project(root).source("orders")
    assert source.schema == (("id", "INTEGER"), ("price", "DECIMAL(12,2)"), ("at", "TIMESTAMP"))
    assert (source.null_values, source.encoding, source.delimiter) == (("", "NA"), "latin-1", ";")
    assert (source.on_bad_rows, source.on_schema_change, source.rejects_table) == ("quarantine", "add_columns",
                                                                                   "orders_rejects")
    assert source.declared_type("PRICE") == "DECIMAL(12,2)"
