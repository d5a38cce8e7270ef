"""``medallion-nb init``: a new project from the bundled template.

The template (``medallion_nb/templates/project``) is a small working project:
``medallion.yaml``, three layer notebooks, three days of sample sales and a
README. ``init`` copies it into a staging folder next to the target, fills in
the project name, adds the generated Kestra files, checks that the result
loads, and only then renames it into place: a failed ``init`` leaves nothing
behind, and an existing folder is never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

from medallion_nb import __version__
from medallion_nb.errors import ProjectError
from medallion_nb.kestra import kestra_files
from medallion_nb.names import check_project_name
from medallion_nb.project import CONFIG_NAME, load_project

# Files whose text gets $name / $namespace filled in; the rest are copied as they are.
_TEMPLATED = (CONFIG_NAME, "README.md")
_RENAMED = {"gitignore": ".gitignore"}


@dataclass(frozen=True)
class Scaffold:
    """What ``init_project`` created."""

    root: Path
    name: str
    files: tuple[Path, ...]


def template_dir() -> Path:
    """The folder of the project template shipped with the package."""
    return Path(str(files("medallion_nb") / "templates" / "project"))


def init_project(name: str, directory: str | Path | None = None) -> Scaffold:
    """Create a new project called ``name`` in ``directory`` (default: ``./<name>``).

    Raises:
        UsageError: the name is not a valid project name.
        ProjectError: the folder already exists and is not empty.
    """
    check_project_name(name)  # the rule of a project's name in medallion.yaml
    root = Path(directory if directory is not None else name).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ProjectError(
            f"{root} already exists; medallion-nb init never overwrites files",
            hint=f"pick another folder with --dir, or another name (e.g. medallion-nb init {name}2)",
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=root.parent))
    try:
        _copy_template(staging, name)
        project = load_project(staging)
        for path, text in kestra_files(project, version=__version__).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private
        if root.exists():  # an empty folder: fill it instead of replacing it
            for child in staging.iterdir():
                child.rename(root / child.name)
            staging.rmdir()
        else:
            staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    created = tuple(sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()))
    return Scaffold(root=root, name=name, files=created)


def _copy_template(dest: Path, name: str) -> None:
    values = {"name": name, "namespace": "medallion." + name.replace("-", "_")}
    source = template_dir()
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        rel = path.relative_to(source)
        target = dest / rel.parent / _RENAMED.get(rel.name, rel.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() in _TEMPLATED:
            # The name was checked against _NAME above: a plain YAML scalar, safe to substitute.
            text = Template(path.read_text(encoding="utf-8")).substitute(values)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(path, target)
