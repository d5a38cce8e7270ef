"""Load and validate ``medallion.yaml`` into typed, frozen objects.

``load_project`` is the only code that reads the config file. Everything below it
gets a :class:`Project`, never a raw dict. Every problem in the file is collected
and reported at once, each naming the key path and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medallion_nb.errors import ProjectError

CONFIG_NAME = "medallion.yaml"
LOAD_MODES = ("replace", "append", "merge")
SOURCE_FORMATS = ("csv", "parquet", "json")
REQUIRED_PARAMETERS = ("project_dir", "run_id", "run_date", "full_refresh")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")
_CRON_FIELDS = (5, 6)
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Source:
    """A raw source that bronze ingests into ``bronze.<name>``."""

    name: str
    path: str
    format: str = "csv"
    mode: str = "append"
    keys: tuple[str, ...] = ()
    cursor: str | None = None
    date_in_name: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Declared:
    """Tables a notebook reads or writes, declared where parsing its code cannot tell (``None``: not declared)."""

    notebook: Path
    reads: tuple[str, ...] | None = None
    writes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Layer:
    """One step of the pipeline: one or more notebooks run together."""

    name: str
    notebooks: tuple[Path, ...]
    timeout: str = "PT1H"
    declared: tuple[Declared, ...] = ()

    def declaration(self, notebook: Path) -> Declared | None:
        """What ``medallion.yaml`` declares about one of the layer's notebooks."""
        return next((d for d in self.declared if d.notebook == notebook), None)


@dataclass(frozen=True)
class Schedule:
    """When Kestra runs the pipeline."""

    cron: str
    timezone: str = "UTC"


@dataclass(frozen=True)
class KestraSettings:
    """How generated Kestra tasks behave."""

    retries: int = 2
    retry_interval: str = "PT1M"
    image: str | None = None
    export: bool = False


@dataclass(frozen=True)
class DuckDBSettings:
    """Resources DuckDB may use in every notebook of the project."""

    memory_limit: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class Project:
    """A medallion project: a folder with a ``medallion.yaml``."""

    root: Path
    name: str
    namespace: str
    lake: Path
    runs: Path
    layers: tuple[Layer, ...]
    parameters: Mapping[str, Scalar]
    sources: tuple[Source, ...]
    schedule: Schedule | None = None
    kestra: KestraSettings = field(default_factory=KestraSettings)
    export_dir: Path | None = None
    description: str = ""
    duckdb: DuckDBSettings = field(default_factory=DuckDBSettings)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name``.

        Raises:
            ProjectError: no such layer.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        known = ", ".join(layer.name for layer in self.layers)
        raise ProjectError(f"{self.config_path}: layers: no layer {name!r} (layers are: {known})")

    def source(self, name: str) -> Source:
        """Return the source called ``name``.

        Raises:
            ProjectError: no such source.
        """
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ProjectError(f"{self.config_path}: sources: no source {name!r} (sources are: {known})")


def find_project_root(start: str | Path = ".") -> Path:
    """Return the nearest folder at or above ``start`` that holds a ``medallion.yaml``.

    Raises:
        ProjectError: no such folder.
    """
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ProjectError(
        f"no {CONFIG_NAME} in {here} or any folder above it",
        hint="pass --project DIR, or create a project with `medallion-nb init NAME`",
    )


def load_project(path: str | Path = ".") -> Project:
    """Read and validate a project's ``medallion.yaml``.

    Args:
        path: the project folder, a folder inside it, or the config file itself.

    Raises:
        ProjectError: the file is missing, not YAML, or invalid; lists every problem.
    """
    path = Path(path)
    if path.is_file():
        config_file = path.resolve()
    elif (path / CONFIG_NAME).is_file():
        config_file = (path / CONFIG_NAME).resolve()
    elif path.exists():
        config_file = find_project_root(path) / CONFIG_NAME
    else:
        raise ProjectError(f"{path}: no such project folder")
    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProjectError(f"{config_file}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ProjectError(f"{config_file}: cannot read: {exc.strerror}") from exc
    return _Validator(config_file).project(raw)


class _Validator:
    """Turns the parsed YAML into a Project, collecting every problem on the way."""

    def __init__(self, config_file: Path) -> None:
        self.file = config_file
        self.root = config_file.parent
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file.name}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.problem(key, f"expected a mapping, got {_kind(value)}")
            return {}
        for name in value:
            if name not in allowed:
                self.problem(f"{key}.{name}" if key else str(name), f"unknown key (allowed: {', '.join(allowed)})")
        for name in required:
            if name not in value:
                self.problem(f"{key}.{name}" if key else name, "missing (required)")
        return value

    def string(self, value: Any, key: str, pattern: re.Pattern | None = None, expected: str = "") -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"expected a non-empty string, got {_kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(key, f"{value!r} is not {expected}")
            return None
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str | None:
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {_kind(value)}")
            return False
        return value

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(key, f"expected a column name or a list of column names, got {_kind(value)}")
            return ()
        return tuple(value)

    def project(self, raw: Any) -> Project:
        top = self.mapping(
            raw,
            "",
            ("name", "description", "namespace", "lake", "runs", "layers", "parameters", "sources",
             "schedule", "kestra", "export", "duckdb"),
            ("name", "layers"),
        ) if raw is not None else self._empty()
        name = None
        if "name" in top:
            name = self.string(top["name"], "name", _PROJECT_NAME,
                               "a lowercase name (letters, digits, _ or -, starting with a letter)")
        namespace = top.get("namespace", f"medallion.{(name or 'project').replace('-', '_')}")
        namespace = self.string(namespace, "namespace", _NAMESPACE,
                                "a Kestra namespace (lowercase letters, digits, '.', '_' or '-')")
        lake = self.path(top.get("lake", "data/lake"), "lake")
        runs = self.path(top.get("runs", "runs"), "runs")
        layers = self.layers(top.get("layers"))
        parameters = self.parameters(top.get("parameters", {}))
        sources = self.sources(top.get("sources", {}))
        schedule = self.schedule(top["schedule"]) if top.get("schedule") is not None else None
        kestra = self.kestra(top.get("kestra", {}))
        export_dir = self.export(top.get("export", {}))
        duckdb_settings = self.duckdb(top.get("duckdb", {}))
        description = top.get("description", "")
        if not isinstance(description, str):
            self.problem("description", f"expected a string, got {_kind(description)}")
        if self.problems:
            raise ProjectError(
                [f"{self.file}: {len(self.problems)} problem(s):", *(f"  - {p}" for p in self.problems)],
            )
        return Project(
            root=self.root, name=name or "", namespace=namespace or "", lake=lake, runs=runs,
            layers=layers, parameters=parameters, sources=sources, schedule=schedule,
            kestra=kestra, export_dir=export_dir, description=description, duckdb=duckdb_settings,
        )

    def _empty(self) -> dict:
        self.problem("(file)", "is empty; expected at least name and layers")
        return {}

    def path(self, value: Any, key: str) -> Path:
        text = self.string(value, key)
        return (self.root / text).resolve() if text else self.root

    def layers(self, raw: Any) -> tuple[Layer, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw:
            self.problem("layers", f"expected a non-empty list of layers, got {_kind(raw)}")
            return ()
        layers, seen = [], set()
        for i, item in enumerate(raw):
            key = f"layers[{i}]"
            spec = self.mapping(item, key, ("name", "notebook", "notebooks", "timeout"), ("name",))
            lname = self.string(spec.get("name"), f"{key}.name", _NAME, "a lowercase identifier") if spec else None
            if lname:
                key = f"layers.{lname}"
                if lname in seen:
                    self.problem(key, "duplicate layer name")
                seen.add(lname)
            books = spec.get("notebooks", spec.get("notebook"))
            if "notebook" in spec and "notebooks" in spec:
                self.problem(key, "give either notebook or notebooks, not both")
            if isinstance(books, str):
                books = [books]
            paths: list[Path] = []
            declared: list[Declared] = []
            if isinstance(books, dict):
                books = [books]
            if not isinstance(books, list) or not books:
                if spec:
                    self.problem(f"{key}.notebooks", f"expected a notebook path or a list of them, got {_kind(books)}")
            else:
                for j, book in enumerate(books):
                    spec_j = None
                    if isinstance(book, dict):
                        spec_j = self.mapping(book, f"{key}.notebooks[{j}]", ("path", "reads", "writes"), ("path",))
                        book = spec_j.get("path")
                    text = self.string(book, f"{key}.notebooks[{j}]")
                    if not text:
                        continue
                    nb = (self.root / text).resolve()
                    if nb.suffix != ".ipynb":
                        self.problem(f"{key}.notebooks[{j}]", f"{text!r} is not a .ipynb file")
                    elif not nb.is_file():
                        self.problem(f"{key}.notebooks[{j}]", f"{text!r} does not exist (looked in {self.root})")
                    paths.append(nb)
                    if spec_j:
                        where = f"{key}.notebooks[{j}]"
                        declared.append(Declared(
                            nb,
                            self.tables(spec_j["reads"], f"{where}.reads") if "reads" in spec_j else None,
                            self.tables(spec_j["writes"], f"{where}.writes") if "writes" in spec_j else None,
                        ))
                if len({p.stem for p in paths}) != len(paths):
                    self.problem(f"{key}.notebooks", "two notebooks share a file name; names must be unique in a layer")
            timeout = spec.get("timeout", "PT1H")
            self.string(timeout, f"{key}.timeout", _DURATION, "an ISO-8601 duration such as PT30M")
            if lname:
                layers.append(Layer(name=lname, notebooks=tuple(paths), timeout=str(timeout), declared=tuple(declared)))
        return tuple(layers)

    def tables(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and _TABLE.match(v) for v in value):
            self.problem(key, f"expected a list of <layer>.<table> names, got {_kind(value)}")
            return ()
        return tuple(value)

    def parameters(self, raw: Any) -> Mapping[str, Scalar]:
        if not isinstance(raw, dict):
            self.problem("parameters", f"expected a mapping of name: value, got {_kind(raw)}")
            return {}
        params: dict[str, Scalar] = {}
        for pname, value in raw.items():
            if not isinstance(pname, str) or not pname.isidentifier():
                self.problem(f"parameters.{pname}", "is not a valid Python identifier")
            elif value is not None and not isinstance(value, str | int | float | bool):
                self.problem(f"parameters.{pname}", f"expected a string, number or boolean, got {_kind(value)}")
            else:
                params[pname] = value
        return params

    def sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, dict):
            self.problem("sources", f"expected a mapping of source name to settings, got {_kind(raw)}")
            return ()
        out = []
        for sname, spec in raw.items():
            key = f"sources.{sname}"
            if not isinstance(sname, str) or not _NAME.match(sname):
                self.problem(key, "source names must be lowercase identifiers (they become bronze table names)")
                continue
            spec = self.mapping(spec, key, ("path", "format", "mode", "keys", "cursor", "date_in_name", "options"),
                                ("path",))
            if not spec:
                continue
            path = self.string(spec.get("path"), f"{key}.path") if "path" in spec else None
            fmt = self.choice(spec.get("format", _guess_format(path)), f"{key}.format", SOURCE_FORMATS)
            mode = self.choice(spec.get("mode", "append"), f"{key}.mode", LOAD_MODES)
            keys = self.names(spec["keys"], f"{key}.keys") if "keys" in spec else ()
            if mode == "merge" and not keys:
                self.problem(f"{key}.keys", "required when mode is merge (the columns that identify a row)")
            cursor = spec.get("cursor")
            if cursor is not None:
                cursor = self.string(cursor, f"{key}.cursor")
            date_in_name = self.boolean(spec.get("date_in_name", False), f"{key}.date_in_name")
            options = spec.get("options", {})
            if not isinstance(options, dict) or not all(
                isinstance(k, str) and k.isidentifier() and _option_value(v) for k, v in options.items()
            ):
                self.problem(f"{key}.options", "expected a mapping of reader option name to a string, number, "
                                               "boolean or a mapping of those (e.g. types: {id: VARCHAR})")
                options = {}
            if path and fmt and mode:
                out.append(Source(sname, path, fmt, mode, keys, cursor, date_in_name, dict(options)))
        return tuple(out)

    def schedule(self, raw: Any) -> Schedule | None:
        spec = self.mapping(raw, "schedule", ("cron", "timezone"), ("cron",))
        cron = self.string(spec.get("cron"), "schedule.cron") if "cron" in spec else None
        if cron and len(cron.split()) not in _CRON_FIELDS and not cron.startswith("@"):
            self.problem("schedule.cron", f"{cron!r} is not a cron expression (5 fields, e.g. '0 6 * * *')")
            cron = None
        timezone = self.string(spec.get("timezone", "UTC"), "schedule.timezone")
        return Schedule(cron, timezone or "UTC") if cron else None

    def kestra(self, raw: Any) -> KestraSettings:
        spec = self.mapping(raw, "kestra", ("retries", "retry_interval", "image", "export"))
        retries = spec.get("retries", 2)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            self.problem("kestra.retries", f"expected a whole number >= 0, got {retries!r}")
            retries = 2
        interval = spec.get("retry_interval", "PT1M")
        self.string(interval, "kestra.retry_interval", _DURATION, "an ISO-8601 duration such as PT1M")
        image = spec.get("image")
        if image is not None:
            image = self.string(image, "kestra.image")
        export = self.boolean(spec.get("export", False), "kestra.export")
        return KestraSettings(retries=retries, retry_interval=str(interval), image=image, export=export)

    def duckdb(self, raw: Any) -> DuckDBSettings:
        spec = self.mapping(raw, "duckdb", ("memory_limit", "threads"))
        limit = spec.get("memory_limit")
        if limit is not None and (not isinstance(limit, str) or not _MEMORY.match(limit.strip())):
            self.problem("duckdb.memory_limit", f"{limit!r} is not a size such as 1GB or 512MB")
            limit = None
        threads = spec.get("threads")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            self.problem("duckdb.threads", f"expected a whole number >= 1, got {threads!r}")
            threads = None
        return DuckDBSettings(memory_limit=limit, threads=threads)

    def export(self, raw: Any) -> Path | None:
        spec = self.mapping(raw, "export", ("dir",))
        return self.path(spec["dir"], "export.dir") if "dir" in spec else None


def _option_value(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _option_value(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)


def _guess_format(path: str | None) -> str:
    if path:
        for fmt, endings in (("parquet", (".parquet",)), ("json", (".json", ".jsonl", ".ndjson"))):
            if path.endswith(endings):
                return fmt
    return "csv"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
