"""What every hand-written contender script shares: run its three layers in order, timed.

The scripts run as plain files (``python bench/contenders/<name>.py PROJECT OUT``), so this
module is imported from the script's own folder, not as a package.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Step = Callable[[Path, Path], None]


def arguments(doc: str, argv: list[str] | None = None, *, memory_limit: bool = False) -> argparse.Namespace:
    """The contender scripts' command line: ``PROJECT OUT`` (and ``--memory-limit`` where supported)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("out", type=Path)
    if memory_limit:
        parser.add_argument("--memory-limit")
    return parser.parse_args(argv)


def run_layers(steps: Sequence[tuple[str, Step]], first_source: Path, out: Path) -> int:
    """Run ``(layer, step)`` pairs; each step reads the previous layer's folder and writes its own.

    Prints the ``BENCH_RESULT`` line the harness reads, with each layer's wall time.
    """
    times, source = {}, first_source
    for layer, step in steps:
        target = out / layer
        target.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        step(source, target)
        times[layer] = time.perf_counter() - start
        source = target
    print("BENCH_RESULT " + json.dumps({"layers": times}), flush=True)
    return 0
