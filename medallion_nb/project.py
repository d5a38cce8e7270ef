"""Load and validate ``medallion.yaml`` into typed, frozen objects.

``load_project`` is the only code that reads the config file. Everything below it
gets a :class:`Project`, never a raw dict. Every problem in the file is collected
and reported at once, each naming the key path and what was expected.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medallion_nb import secrets
from medallion_nb.checkspec import expect_problems
from medallion_nb.errors import LakeError, ProjectError
from medallion_nb.names import NAME, PROJECT_NAME, PROJECT_NAME_RULE, RESERVED_LAYERS, TABLE_NAME
from medallion_nb.objectstore import OPTIONS, SECRET_OPTIONS, ObjectPath, is_uri
from medallion_nb.sources import Source, SourceChecks
from medallion_nb.validation import DURATION, DURATION_RULE, UniqueKeyLoader, cron_problem, is_sql_keyword, kind

CONFIG_NAME = "medallion.yaml"
REQUIRED_PARAMETERS = ("project_dir", "run_id", "run_date", "full_refresh")
MEMORY_LIMIT_ENV = "MEDALLION_MEMORY_LIMIT"
THREADS_ENV = "MEDALLION_THREADS"

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)

Scalar = str | int | float | bool | None


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
    # A local folder, or a location on object storage (lake: s3://bucket/prefix).
    lake: Path | ObjectPath
    runs: Path
    layers: tuple[Layer, ...]
    # A parameter whose value is a ${NAME} reference is a SecretText: never a notebook parameter.
    parameters: Mapping[str, Scalar | secrets.SecretText]
    sources: tuple[Source, ...]
    schedule: Schedule | None = None
    kestra: KestraSettings = field(default_factory=KestraSettings)
    export_dir: Path | None = None
    description: str = ""
    duckdb: DuckDBSettings = field(default_factory=DuckDBSettings)
    # Expectations declared per table ("silver.orders" -> {action: checks}), applied to every write of it.
    expectations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def export_folder(self) -> Path:
        """Where ``medallion-nb export`` writes by default: ``export.dir``, else ``<project>/exports``."""
        return self.export_dir or self.root / "exports"

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

    def secret_references(self) -> dict[str, str]:
        """``{environment variable: config key}`` of every ``${NAME}`` this project reads."""
        values = [*self.parameters.values(), *(v for s in self.sources for v in vars(s).values())]
        if isinstance(self.lake, ObjectPath):
            values += [v for _, v in self.lake.settings.options]
        return secrets.references(values)


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
        loader = UniqueKeyLoader(config_file.read_text(encoding="utf-8"))
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ProjectError(f"{config_file}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ProjectError(f"{config_file}: cannot read: {exc.strerror}") from exc
    validator = _Validator(config_file)
    for line, key, first in loader.duplicates:
        validator.problem(f"line {line}", f"duplicate key {key!r} (first given on line {first}); "
                                          "YAML would silently keep only the last one")
    return validator.project(raw)


def duckdb_settings(project: Project, memory_limit: str | None = None, threads: int | None = None) -> DuckDBSettings:
    """DuckDB resources for a connection: arguments, then the environment, then ``medallion.yaml``.

    Raises:
        ProjectError: an environment setting has a bad value (the variable is named).
    """
    env_limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if env_limit and not _MEMORY.match(env_limit):
        raise ProjectError(f"environment variable {MEMORY_LIMIT_ENV}={env_limit!r} is not a size such as 1GB "
                           "or 512MB", hint=f"fix or unset {MEMORY_LIMIT_ENV}")
    env_threads = os.environ.get(THREADS_ENV, "").strip()
    if env_threads and (not env_threads.isdigit() or int(env_threads) < 1):
        raise ProjectError(f"environment variable {THREADS_ENV}={env_threads!r} is not a whole number >= 1",
                           hint=f"fix or unset {THREADS_ENV}")
    return DuckDBSettings(
        memory_limit=memory_limit or env_limit or project.duckdb.memory_limit,
        threads=threads or (int(env_threads) if env_threads else None) or project.duckdb.threads,
    )


class _Validator(SourceChecks):
    """Turns the parsed YAML into a Project, collecting every problem on the way."""


    def project(self, raw: Any) -> Project:
        top = self.mapping(
            raw,
            "",
            ("name", "description", "namespace", "lake", "storage", "runs", "layers", "parameters", "sources",
             "schedule", "kestra", "export", "duckdb", "expectations"),
            ("name", "layers"),
        ) if raw is not None else self._empty()
        name = None
        if "name" in top:
            name = self.string(top["name"], "name", PROJECT_NAME, f"a lowercase name ({PROJECT_NAME_RULE})")
        namespace = top.get("namespace", f"medallion.{(name or 'project').replace('-', '_')}")
        namespace = self.string(namespace, "namespace", _NAMESPACE,
                                "a Kestra namespace (lowercase letters, digits, '.', '_' or '-')")
        lake = self.lake(top.get("lake", "data/lake"), top.get("storage"))
        runs = self.path(top.get("runs", "runs"), "runs")
        layers = self.layers(top.get("layers"))
        parameters = self.parameters(top.get("parameters", {}))
        sources = self.sources(top.get("sources", {}))
        schedule = self.schedule(top["schedule"]) if top.get("schedule") is not None else None
        kestra = self.kestra(top.get("kestra", {}))
        export_dir = self.export(top.get("export", {}))
        duckdb_settings = self.duckdb(top.get("duckdb", {}))
        expectations = self.expectations(top.get("expectations", {}), layers)
        description = top.get("description", "")
        if not isinstance(description, str):
            self.problem("description", f"expected a string, got {kind(description)}")
        self.stray_references(raw)
        if self.problems:
            raise ProjectError(
                [f"{self.file}: {len(self.problems)} problem(s):", *(f"  - {p}" for p in self.problems)],
            )
        return Project(
            root=self.root, name=name or "", namespace=namespace or "", lake=lake, runs=runs,
            layers=layers, parameters=parameters, sources=sources, schedule=schedule,
            kestra=kestra, export_dir=export_dir, description=description, duckdb=duckdb_settings,
            expectations=expectations,
        )

    def _empty(self) -> dict:
        self.problem("(file)", "is empty; expected at least name and layers")
        return {}

    def lake(self, value: Any, storage: Any) -> Path | ObjectPath:
        text = self.string(value, "lake")
        if not text or not is_uri(text):
            if storage is not None:
                self.problem("storage", "applies to a lake on object storage (lake: s3://bucket/prefix); "
                                        "this lake is a local folder")
            return (self.root / text).resolve() if text else self.root
        options: dict[str, Any] = {}
        if storage is not None:
            spec = self.mapping(storage, "storage", tuple(OPTIONS))
            for key, raw in spec.items():
                if key not in OPTIONS:
                    continue
                secret = secrets.parse(raw, f"storage.{key}")
                if key in SECRET_OPTIONS and secret is None:
                    self.problem(f"storage.{key}", "is a secret: write a reference such as "
                                                   f"${{{OPTIONS[key]}}} and set that environment variable")
                elif isinstance(raw, bool) and key == "allow_http":
                    options[key] = "true" if raw else "false"
                elif secret is None and not isinstance(raw, str):
                    self.problem(f"storage.{key}", f"expected a string, got {kind(raw)}")
                else:
                    options[key] = secret if secret is not None else raw
        try:
            return ObjectPath.parse(text.rstrip("/"), options)
        except LakeError as exc:
            self.problem("lake", exc.message)
            return self.root

    def path(self, value: Any, key: str) -> Path:
        text = self.string(value, key)
        return (self.root / text).resolve() if text else self.root

    def layers(self, raw: Any) -> tuple[Layer, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw:
            self.problem("layers", f"expected a non-empty list of layers, got {kind(raw)}")
            return ()
        layers, seen = [], set()
        for i, item in enumerate(raw):
            key = f"layers[{i}]"
            spec = self.mapping(item, key, ("name", "notebook", "notebooks", "timeout"), ("name",))
            lname = self.string(spec.get("name"), f"{key}.name", NAME, "a lowercase identifier") if spec else None
            if lname and (lname in RESERVED_LAYERS or is_sql_keyword(lname)):
                self.problem(f"{key}.name", f"{lname!r} is reserved by DuckDB (a layer is a schema; reserved: "
                                            f"{', '.join(RESERVED_LAYERS)}, SQL keywords and names starting "
                                            "with _); choose another name")
                lname = None
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
                    self.problem(f"{key}.notebooks", f"expected a notebook path or a list of them, got {kind(books)}")
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
            self.string(timeout, f"{key}.timeout", DURATION, DURATION_RULE)
            if lname:
                layers.append(Layer(name=lname, notebooks=tuple(paths), timeout=str(timeout), declared=tuple(declared)))
        return tuple(layers)

    def tables(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and TABLE_NAME.match(v) for v in value):
            self.problem(key, f"expected a list of <layer>.<table> names, got {kind(value)}")
            return ()
        return tuple(value)

    def parameters(self, raw: Any) -> Mapping[str, Scalar | secrets.SecretText]:
        if not isinstance(raw, dict):
            self.problem("parameters", f"expected a mapping of name: value, got {kind(raw)}")
            return {}
        params: dict[str, Scalar | secrets.SecretText] = {}
        for pname, value in raw.items():
            key = f"parameters.{pname}"
            secret = secrets.parse(value, key)
            if not isinstance(pname, str) or not pname.isidentifier():
                self.problem(key, "is not a valid Python identifier")
            elif value is not None and not isinstance(value, str | int | float | bool):
                self.problem(key, f"expected a string, number or boolean, got {kind(value)}")
            elif secret is not None and pname in REQUIRED_PARAMETERS:
                self.problem(key, "is set by the runner and cannot be a secret")
            elif secret is not None and not secret.is_whole:
                self.problem(key, f"{value!r}: a secret parameter is one reference as the whole value, "
                                  "e.g. ${API_TOKEN}")
            else:
                params[pname] = secret if secret is not None else value
        return params

    # Where ${NAME} is resolved; anywhere else it would be taken literally.
    SECRET_KEYS = (re.compile(r"^parameters\.[^.]+$"), re.compile(r"^sources\.[^.]+\.url$"),
                   re.compile(r"^storage\.[^.]+$"))

    def stray_references(self, node: Any, key: str = "") -> None:
        """Report ``${...}`` where it would not be resolved, and malformed references anywhere."""
        if isinstance(node, dict):
            for name, value in node.items():
                self.stray_references(value, f"{key}.{name}" if key else str(name))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.stray_references(value, f"{key}[{i}]")
        elif isinstance(node, str):
            bad = secrets.malformed(node)
            if bad:
                self.problem(key, f"{bad!r} is not a secret reference; write ${{NAME}} (letters, digits and _)")
            elif secrets.parse(node, key) and not any(p.match(key) for p in self.SECRET_KEYS):
                self.problem(key, "secret references (${NAME}) are resolved only in parameters, "
                                  "sources.<name>.url and storage; here the text would be taken literally")


    def schedule(self, raw: Any) -> Schedule | None:
        spec = self.mapping(raw, "schedule", ("cron", "timezone"), ("cron",))
        cron = self.string(spec.get("cron"), "schedule.cron") if "cron" in spec else None
        if cron:
            problem = cron_problem(cron)
            if problem:
                self.problem("schedule.cron", f"{cron!r} is not a cron expression ({problem})")
                cron = None
        timezone = self.string(spec.get("timezone", "UTC"), "schedule.timezone")
        if timezone:
            try:
                zoneinfo.ZoneInfo(timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.problem("schedule.timezone", f"{timezone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)")
                timezone = None
        return Schedule(cron, timezone) if cron and timezone else None

    def kestra(self, raw: Any) -> KestraSettings:
        spec = self.mapping(raw, "kestra", ("retries", "retry_interval", "image", "export"))
        retries = spec.get("retries", 2)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            self.problem("kestra.retries", f"expected a whole number >= 0, got {retries!r}")
            retries = 2
        interval = spec.get("retry_interval", "PT1M")
        self.string(interval, "kestra.retry_interval", DURATION, DURATION_RULE)
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

    def expectations(self, raw: Any, layers: tuple[Layer, ...]) -> Mapping[str, Mapping[str, Any]]:
        if not isinstance(raw, dict):
            self.problem("expectations", f"expected a mapping of <layer>.<table> to expectations, got {kind(raw)}")
            return {}
        known = [layer.name for layer in layers]
        for table, expect in raw.items():
            key = f"expectations.{table}"
            if not isinstance(table, str) or not TABLE_NAME.match(table):
                self.problem(key, "expected a table name <layer>.<table>")
            elif known and table.partition(".")[0] not in known:
                self.problem(key, f"no layer {table.partition('.')[0]!r} (layers are: {', '.join(known)})")
            for problem in expect_problems(expect):
                self.problem(key, problem)
        return {str(table): expect for table, expect in raw.items()}
