"""medallion_nb: the real pipeline — ``medallion-nb run`` of the project's three layer notebooks.

The wrapper only starts the command and reads the per-layer times from the run
record (``<runs>/<run_id>/run.json``); it imports nothing heavy, so what is
measured is the command. Before the ``run`` command existed the notebooks were
driven with papermill directly (``--via papermill``), in the same order and with
the same parameters.

Usage: python bench/contenders/medallion.py PROJECT_DIR OUT_DIR [--via cli|papermill] [-p name=value ...]
Prints one line ``BENCH_RESULT {"layers": {...}, "run_id": ...}`` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LAYERS = ("bronze", "silver", "gold")


def cli_run_available(medallion: str) -> bool:
    """Whether this install has the ``medallion-nb run`` command."""
    return subprocess.run([medallion, "run", "--help"], capture_output=True).returncode == 0


def run_cli(medallion: str, project: Path, run_id: str, params: list[str]) -> dict[str, float]:
    argv = [medallion, "run", "--project", str(project), "--run-id", run_id]
    for p in params:
        argv += ["-p", p]
    done = subprocess.run(argv)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    record = json.loads((project / "runs" / run_id / "run.json").read_text())
    return {layer["name"]: layer["duration_s"] for layer in record["layers"]}


def run_papermill(project: Path, run_id: str, params: list[str]) -> dict[str, float]:
    import papermill

    extra = dict(p.split("=", 1) for p in params)
    out = project / "runs" / run_id
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    for layer in LAYERS:
        start = time.perf_counter()
        papermill.execute_notebook(
            str(project / "notebooks" / f"{layer}.ipynb"), str(out / f"{layer}.ipynb"),
            parameters={"project_dir": str(project), "run_id": run_id, **extra},
            cwd=str(project / "notebooks"), progress_bar=False)
        times[layer] = time.perf_counter() - start
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--via", choices=("cli", "papermill"), default="cli",
                        help="run with `medallion-nb run` (default) or drive the notebooks with papermill")
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    medallion = shutil.which("medallion-nb") or str(Path(sys.executable).parent / "medallion-nb")
    run_id = f"bench-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    times = run_papermill(project, run_id, args.params) if args.via == "papermill" else \
        run_cli(medallion, project, run_id, args.params)
    print("BENCH_RESULT " + json.dumps({"layers": times, "run_id": run_id, "via": args.via}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
