"""Kestra integration: the flow that runs a project's notebooks, and a compose file to run Kestra locally.

``build_flow`` and ``build_compose`` are pure (project -> dict); ``render_yaml``
turns the dicts into YAML; the CLI writes the files.
"""

from medallion_nb.kestra.compose import build_compose, dockerfile_lines, has_package_source
from medallion_nb.kestra.files import default_out_dir, kestra_files
from medallion_nb.kestra.flow import build_flow, flow_file_name, run_date_expression
from medallion_nb.kestra.render import render_flow, render_yaml

__all__ = [
    "build_compose",
    "build_flow",
    "default_out_dir",
    "dockerfile_lines",
    "flow_file_name",
    "has_package_source",
    "kestra_files",
    "render_flow",
    "render_yaml",
    "run_date_expression",
]
