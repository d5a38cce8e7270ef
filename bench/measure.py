"""Run a command and measure it: wall time, CPU time and peak memory of its whole process tree.

Peak RSS is the largest *sum* of the resident set sizes of the command and all
its descendants (papermill and its Jupyter kernels, say), sampled every 20 ms
with psutil. CPU time is user + system of the tree, from ``wait4`` rusage, which
counts every descendant that was waited for (kernels included).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RESULT_PREFIX = "BENCH_RESULT "
SAMPLE_S = 0.02


@dataclass
class Measurement:
    """What one command took."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self._procs: dict[int, psutil.Process] = {pid: self.root}

    def _sample(self) -> int:
        try:
            for child in self.root.children(recursive=True):
                self._procs.setdefault(child.pid, child)
        except psutil.Error:
            pass
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                self._procs.pop(pid, None)
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self._sample())
            self.stop.wait(SAMPLE_S)


def run_measured(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 timeout: float | None = None, log: Path | None = None) -> Measurement:
    """Run ``argv`` to completion and measure it; its last ``BENCH_RESULT {json}`` line is parsed."""
    full_env = {**os.environ, **(env or {})}
    log = log or Path(os.devnull)
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        lines: list[str] = []
        assert proc.stdout is not None
        deadline = None if timeout is None else start + timeout
        for line in proc.stdout:
            out.write(line)
            lines.append(line)
            if deadline and time.perf_counter() > deadline:
                proc.kill()
                break
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop.set()
        sampler.join()
    result: dict[str, Any] = {}
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            break
    return Measurement(wall, usage.ru_utime + usage.ru_stime, sampler.peak / 2**20, proc.returncode,
                       result, "".join(lines[-30:]))


def load_average() -> float:
    """The 1-minute load average (to tell whether something else was running)."""
    return os.getloadavg()[0]
