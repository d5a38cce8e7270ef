"""Explore lake tables in JupyterLab or Voila: ``GoldExplorer(lake)``, ``Dashboard(project)``, ``chart(...)``.

The app is imported on first use, so the pure query builders
(:mod:`medallion_nb.widgets.queries`) load without ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medallion_nb.widgets.queries import FilterError
from medallion_nb.widgets.render import chart

if TYPE_CHECKING:
    from medallion_nb.widgets.dashboard import ChartSpec, Dashboard
    from medallion_nb.widgets.explorer import GoldExplorer

__all__ = ["ChartSpec", "Dashboard", "FilterError", "GoldExplorer", "chart"]


def __getattr__(name: str) -> Any:
    if name == "GoldExplorer":
        from medallion_nb.widgets.explorer import GoldExplorer

        return GoldExplorer
    if name in ("Dashboard", "ChartSpec"):
        from medallion_nb.widgets import dashboard

        return getattr(dashboard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
