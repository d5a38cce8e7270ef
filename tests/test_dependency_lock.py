"""The dependency lock (requirements/dev.txt) agrees with pyproject.toml and with the environment the suite runs in.

Three rules together make a stale or hand-edited lock fail here:

* every requirement of pyproject.toml (dependencies, the ``dev`` extra, the build
  backend) is pinned, and every pin of that package satisfies the range;
* the pins that apply to this interpreter and platform are exactly the packages
  pyproject.toml needs here, followed through the installed packages' own
  requirements: nothing missing, nothing left over;
* every pin carries hashes, and every pin that applies here is the version
  installed (the suite runs in an environment installed from the lock, and a pin
  edited by hand no longer matches the hashes pip checked, nor what is installed).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

LOCK = REPO / "requirements" / "dev.txt"
PYPROJECT = REPO / "pyproject.toml"
DEVELOPMENT_DOC = REPO / "docs" / "development.md"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]
    line: int

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def parse_lock(text: str) -> tuple[list[Pin], list[str]]:
    """The pins of a hash-pinned requirements file, and the lines that are not plain pins."""
    pins: list[Pin] = []
    problems: list[str] = []
    logical, start = "", 0
    for number, raw in enumerate([*text.splitlines(), ""], start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical = (logical + line).strip()
        if not logical:
            continue
        words = logical.split(" --hash=")
        spec, hashes = words[0].strip(), tuple(h.strip() for h in words[1:])
        logical = ""
        if spec.startswith("-"):
            problems.append(f"line {start}: option {spec!r}: the lock must name packages from PyPI only")
            continue
        try:
            req = Requirement(spec)
        except ValueError as err:
            problems.append(f"line {start}: {spec!r} is not a requirement: {err}")
            continue
        (op_version, *more) = list(req.specifier) or [None]
        if req.url or more or op_version is None or op_version.operator != "==" or "*" in op_version.version:
            problems.append(f"line {start}: {spec!r} is not pinned to one version with ==")
            continue
        if not hashes or not all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes):
            problems.append(f"line {start}: {req.name}=={op_version.version} has no sha256 hashes")
        pins.append(Pin(canonicalize_name(req.name), op_version.version, req.marker, hashes, start))
    return pins, problems


def project_requirements(pyproject: dict) -> list[tuple[str, Requirement]]:
    """(where, requirement) for the dependencies, the dev extra and the build backend."""
    reqs = [("dependencies", Requirement(r)) for r in pyproject["project"]["dependencies"]]
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    reqs += [("optional-dependencies.dev", Requirement(r)) for r in dev]
    reqs += [("build-system.requires", Requirement(r)) for r in pyproject["build-system"]["requires"]]
    return [(where, req) for where, req in reqs if req.marker is None or req.marker.evaluate({"extra": "dev"})]


def needed_here(roots: Iterable[Requirement], requires: Callable[[str], list[str] | None]) -> dict[str, str]:
    """Every package ``roots`` need on this interpreter, following installed metadata: name -> needed by."""
    needed: dict[str, str] = {}
    queue = [(req, "pyproject.toml") for req in roots]
    seen_extras: dict[str, set[str]] = {}
    while queue:
        req, parent = queue.pop()
        name = canonicalize_name(req.name)
        extras = {canonicalize_name(e) for e in req.extras}
        if name in seen_extras and extras <= seen_extras[name]:
            continue
        needed.setdefault(name, parent)
        seen_extras.setdefault(name, set()).update(extras)
        for text in requires(name) or []:
            child = Requirement(text)
            active = ["", *sorted(seen_extras[name])]
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in active):
                queue.append((child, name))
    return needed


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_requires(name: str) -> list[str] | None:
    try:
        return metadata.requires(name)
    except metadata.PackageNotFoundError:
        return None


def lock_problems(pyproject: dict, lock_text: str, *,
                  installed: Callable[[str], str | None] = installed_version,
                  requires: Callable[[str], list[str] | None] = installed_requires) -> list[str]:
    """Every way the lock disagrees with pyproject.toml or with the installed environment."""
    pins, problems = parse_lock(lock_text)
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    for where, req in project_requirements(pyproject):
        name = canonicalize_name(req.name)
        if name not in by_name:
            problems.append(f"pyproject.toml {where}: {req} is not pinned in the lock")
        for pin in by_name.get(name, []):
            if not req.specifier.contains(Version(pin.version), prereleases=True):
                problems.append(f"line {pin.line}: {name}=={pin.version} is outside pyproject.toml {where}: {req}")
    here = {pin.name: pin for pin in pins if pin.applies()}
    needed = needed_here([req for _, req in project_requirements(pyproject)], requires)
    for name in sorted(needed.keys() - here.keys()):
        problems.append(f"{name} (needed by {needed[name]}) is not pinned for this platform")
    for name in sorted(here.keys() - needed.keys() - {canonicalize_name(pyproject["project"]["name"])}):
        problems.append(f"line {here[name].line}: {name}=={here[name].version} is pinned but nothing in "
                        "pyproject.toml needs it")
    for name, pin in sorted(here.items()):
        got = installed(name)
        if got != pin.version:
            problems.append(f"line {pin.line}: {name}=={pin.version} is pinned but {got or 'nothing'} is installed")
    return problems


def header_command() -> str:
    """The command the lock's header says wrote it."""
    header = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    commands = [line.removeprefix("#").strip() for line in header if "uv pip compile" in line]
    assert commands, f"{LOCK} does not start with the uv pip compile command that wrote it"
    return commands[0]


def documented_command() -> str:
    """The refresh command docs/development.md shows (one line starting with ``uv pip compile``)."""
    lines = [line.strip() for line in DEVELOPMENT_DOC.read_text(encoding="utf-8").splitlines()
             if line.strip().startswith("uv pip compile")]
    assert len(lines) == 1, f"docs/development.md should show one refresh command, not {len(lines)}"
    return lines[0]


# -- the real files ---------------------------------------------------------------------

def test_the_lock_agrees_with_pyproject_and_the_installed_environment():
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    problems = lock_problems(pyproject, LOCK.read_text(encoding="utf-8"))
    hint = ("\nRefresh the lock with the command in docs/development.md, then install from it: "
            "pip install --require-hashes -r requirements/dev.txt")
    assert not problems, "\n".join(problems) + hint


def test_the_lock_was_written_by_the_documented_command_from_pypi_only():
    documented = documented_command()
    assert " --index-url https://pypi.org/simple " in documented
    assert " --generate-hashes " in documented
    assert documented.endswith(" -o requirements/dev.txt")
    # uv leaves --quiet and the index out of the header it writes
    expected = documented.replace(" --quiet", "").replace(" --index-url https://pypi.org/simple", "")
    assert header_command() == expected, "the lock's header names another command than docs/development.md"
    text = LOCK.read_text(encoding="utf-8")
    assert "file://" not in text
    assert not re.search(r"(?m)^\s*--(extra-)?index-url|^\s*--find-links|^\s*-e\s", text)


# -- the checks catch what they should ------------------------------------------------------

def real_inputs() -> tuple[dict, str]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8")), LOCK.read_text(encoding="utf-8")


def test_a_pin_changed_by_hand_is_caught():
    pyproject, lock = real_inputs()
    pinned = re.search(r"(?m)^duckdb==(\S+)", lock)
    assert pinned is not None
    edited = lock.replace(f"duckdb=={pinned.group(1)}", "duckdb==2.0.0")
    problems = lock_problems(pyproject, edited)
    assert any(p.endswith(f"duckdb==2.0.0 is pinned but {pinned.group(1)} is installed") for p in problems)


def test_a_dependency_added_to_pyproject_without_refreshing_the_lock_is_caught():
    pyproject, lock = real_inputs()
    pyproject["project"]["dependencies"].append("sqlglot>=25")
    problems = lock_problems(pyproject, lock)
    assert "pyproject.toml dependencies: sqlglot>=25 is not pinned in the lock" in problems


def test_a_range_narrowed_in_pyproject_is_caught():
    pyproject, lock = real_inputs()
    pyproject["project"]["dependencies"] = [
        "duckdb<1.5" if d.startswith("duckdb") else d for d in pyproject["project"]["dependencies"]]
    problems = lock_problems(pyproject, lock)
    assert any(re.search(r"duckdb==\S+ is outside pyproject.toml dependencies: duckdb<1.5", p) for p in problems)


def test_a_dependency_dropped_from_pyproject_leaves_pins_that_are_caught():
    pyproject, lock = real_inputs()
    pyproject["project"]["optional-dependencies"]["dev"] = [
        d for d in pyproject["project"]["optional-dependencies"]["dev"] if not d.startswith("polars")]
    problems = lock_problems(pyproject, lock)
    assert any(re.search(r"polars==\S+ is pinned but nothing in pyproject.toml needs it", p) for p in problems)


@pytest.mark.parametrize(("line", "expected"), [
    ("duckdb>=2.0", "is not pinned to one version with =="),
    ("duckdb==2.0.1", "duckdb==2.0.1 has no sha256 hashes"),
    ("--extra-index-url file:///opt/pypi/simple", "the lock must name packages from PyPI only"),
    ("duckdb @ https://example.org/duckdb.whl", "is not pinned to one version with =="),
])
def test_lines_that_are_not_hashed_pins_are_caught(line, expected):
    _, problems = parse_lock(f"# a comment\n{line}\n")
    assert len(problems) == 1
    assert expected in problems[0]
    assert problems[0].startswith("line 2: ")


def test_the_lock_parser_reads_markers_and_continued_lines():
    pins, problems = parse_lock(
        "# header\n"
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n"
        f"    --hash=sha256:{'a' * 64} \\\n"
        f"    --hash=sha256:{'b' * 64}\n"
        "    # via pandas\n"
        f"colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:{'c' * 64}\n")
    assert problems == []
    assert [(p.name, p.version, p.line, len(p.hashes)) for p in pins] == [("numpy", "2.4.6", 2, 2),
                                                                         ("colorama", "0.4.6", 6, 1)]
    assert str(pins[0].marker) == 'python_full_version < "3.12"'
