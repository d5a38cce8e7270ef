"""The Hamilton module of a run: one node per source, per notebook and per table.

Which nodes exist is decided by the plan's config (Hamilton's ``@resolve`` at
config time, ``@parameterize`` with ``group(source(...))`` for the edges), so a
project's lineage becomes the DAG that Hamilton executes:

* ``source:<name>``: the raw files of a source, read by the notebook that ingests it;
* ``<notebook path>``: executes the notebook; its inputs are the tables and sources it reads;
* ``<layer>.<table>``: a table, available once the notebook that writes it is done.

Every node takes the ``run`` input, the object doing the work (``runner.run._Run``).
"""

from __future__ import annotations

import os
from typing import Any

from hamilton import registry


def _import_without_extensions() -> Any:
    """Import Hamilton's decorators without loading its dataframe extensions.

    The first import of ``hamilton.function_modifiers`` loads an extension for every
    installed library it knows (pandas, Polars, NumPy, ...), a third of a second that a
    DAG of notebooks never uses. ``disable_autoload`` is Hamilton's switch for that: an
    environment variable, set here for the import only, so kernels and code that import
    Hamilton later in a fresh process are not affected.
    """
    if registry.HAMILTON_AUTOLOAD_ENV in os.environ:
        import hamilton.function_modifiers as modifiers

        return modifiers
    registry.disable_autoload()
    try:
        import hamilton.function_modifiers as modifiers
    finally:
        os.environ.pop(registry.HAMILTON_AUTOLOAD_ENV, None)
    return modifiers


_modifiers = _import_without_extensions()
ResolveAt, parameterize, resolve, tag = (_modifiers.ResolveAt, _modifiers.parameterize, _modifiers.resolve,
                                         _modifiers.tag)

RUN_INPUT = "run"
SOURCES, NOTEBOOKS, TABLES = "plan_sources", "plan_notebooks", "plan_tables"


@resolve(when=ResolveAt.CONFIG_AVAILABLE, decorate_with=lambda plan_sources: parameterize(**plan_sources))
@tag(kind="source")
def source(name: str, run: Any) -> Any:
    """The raw files of source {name}."""
    return run.source_state(name)


@resolve(when=ResolveAt.CONFIG_AVAILABLE, decorate_with=lambda plan_notebooks: parameterize(**plan_notebooks))
@tag(kind="notebook")
def notebook(path: str, inputs: dict[str, Any], run: Any) -> Any:
    """Executes {path} once the tables it reads are written."""
    return run.notebook(path, inputs)


@resolve(when=ResolveAt.CONFIG_AVAILABLE, decorate_with=lambda plan_tables: parameterize(**plan_tables))
@tag(kind="table")
def table(name: str, written_by: dict[str, Any], run: Any) -> Any:
    """Table {name}, as its notebook left it."""
    return run.table_state(name)
