"""What every hand-written contender script shares: run its three layers in order, timed.

The scripts run as plain files (``python bench/contenders/<name>.py PROJECT OUT``), so this
module is imported from the script's own folder, not as a package.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Step = Callable[[Path, Path], None]


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
