"""medallion.yaml loading and validation."""

from __future__ import annotations

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
