"""medallion_nb: a Jupyter-centric medallion (bronze, silver, gold) toolkit on DuckDB and Delta Lake."""

from importlib.metadata import PackageNotFoundError, version

from medallion_nb.errors import (
    ExpectationError,
    FlowError,
    IngestError,
    LakeError,
    LockHeldError,
    MedallionError,
    NotebookRunError,
    ProjectError,
    QualityError,
    UsageError,
)
from medallion_nb.lakehouse import Lakehouse, connect
from medallion_nb.project import Project, load_project

try:
    __version__ = version("medallion_nb")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ExpectationError",
    "FlowError",
    "IngestError",
    "LakeError",
    "Lakehouse",
    "LockHeldError",
    "MedallionError",
    "NotebookRunError",
    "Project",
    "ProjectError",
    "QualityError",
    "UsageError",
    "__version__",
    "connect",
    "load_project",
]
