"""Live progress: plain lines when not a terminal, one rewritten status line in a terminal (a real pty)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import write_project
from notebook_factory import CONNECT, notebook_text

from medallion_nb.runner import ConsoleProgress
from medallion_nb.runner.record import LayerRecord, NotebookRecord, RunRecord


def record(tmp_path: Path) -> RunRecord:
    nb = NotebookRecord("notebooks/silver.ipynb", "runs/r/silver/silver.ipynb", tmp_path / "w.jsonl")
    return RunRecord("r", "shop", tmp_path, tmp_path / "runs" / "r", {}, [LayerRecord("silver", [nb])])


def test_plain_progress_is_one_line_per_event(tmp_path):
    out, summary = io.StringIO(), io.StringIO()
    progress = ConsoleProgress(out, summary, live=False)
    rec = record(tmp_path)
    nb = rec.layers[0].notebooks[0]
    progress.run_started(rec)
    progress.notebook_started(rec, nb)
    progress.cell_started(rec, nb, 3, 12, "Orders: latest = lake.latest(\"bronze.orders\", key=\"order_id\")", 2.04,
                          4012)
    nb.status, nb.duration_s = "succeeded", 3.2
    progress.notebook_finished(rec, nb)
    rec.layers[0].status, rec.layers[0].duration_s = "succeeded", 3.3
    progress.layer_finished(rec, rec.layers[0])
    rec.status, rec.duration_s = "succeeded", 3.4
    progress.run_finished(rec)
    assert out.getvalue().splitlines() == [
        "run r of shop: 1 notebook (silver)",
        'notebooks/silver.ipynb: cell 3/12 Orders: latest = lake.latest("bronze.orders", key="order_id… '
        "(2.0s, 4,012 rows written)",
        "notebooks/silver.ipynb: ok 3.2s (0 tables, 0 rows)",
        "[1/1] silver ok 3.3s (0 tables, 0 rows)",
    ]
    assert "\r" not in out.getvalue()
    assert summary.getvalue().startswith("run r succeeded in 3.4s")


def test_kestra_or_a_pipe_never_gets_the_live_line(monkeypatch):
    assert ConsoleProgress(io.StringIO()).live is False
    monkeypatch.setenv("MEDALLION_KESTRA_OUTPUTS", "1")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ConsoleProgress(Terminal()).live is False
    monkeypatch.delenv("MEDALLION_KESTRA_OUTPUTS")
    assert ConsoleProgress(Terminal()).live is True


@pytest.mark.notebook
def test_a_terminal_sees_one_status_line_rewritten_in_place(tmp_path):
    root = write_project(tmp_path / "tty", "name: tty\nlayers:\n  - name: bronze\n    notebook: nb/a.ipynb\n", {
        "nb/a.ipynb": notebook_text(CONNECT, 'lake.write("bronze.t", "select range as n from range(7)")',
                                    "import time\ntime.sleep(2)  # long enough for the status line to tick"),
    })
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40 rows, 160 columns
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160"}
    env.pop("MEDALLION_KESTRA_OUTPUTS", None)
    proc = subprocess.Popen([Path(sys.executable).with_name("medallion-nb"), "run", "--run-id", "p1"], cwd=root,
                            stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 300  # only stops a hung test
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=60) == 0, screen.decode(errors="replace")
    finally:
        proc.kill()
        os.close(leader)
    text = screen.decode(errors="replace")
    assert "\r\x1b[K" in text  # the status line is erased and redrawn, not appended
    assert "a.ipynb cell 4/5 A layer: import time" in text  # the running cell, shown in the status line
    assert "7 rows" in text  # rows written so far
    assert "nb/a.ipynb: cell " not in text  # no plain per-cell lines in a terminal
    assert "[1/1] bronze ok" in text
    assert "run p1 succeeded" in text


def test_sample_data_says_what_it_is_writing(tmp_path, capsys):
    from medallion_nb.cli import main

    assert main(["sample-data", "--orders", "500", "--days", "3", "--out", str(tmp_path / "raw")]) == 0
    steps = [line.split(" (")[0] for line in capsys.readouterr().err.splitlines()]
    assert steps == ["sample-data: products: 40", "sample-data: customers: 200",
                     "sample-data: orders: 500 over 3 daily files",
                     f"sample-data: moving the files into {tmp_path / 'raw'}"]


def test_the_notebook_widget_follows_each_notebook_cell_by_cell(tmp_path):
    from medallion_nb.runner import NotebookProgress

    widget = NotebookProgress()
    rec = record(tmp_path)
    nb = rec.layers[0].notebooks[0]
    widget.run_started(rec)
    bar, label = widget.bars["notebooks/silver.ipynb"]
    widget.cell_started(rec, nb, 7, 18, "Orders: latest = lake.latest(...)", 2.5, 1200)
    assert (bar.value, bar.max) == (7, 18)
    assert "cell 7/18" in label.value
    assert "1,200 rows written" in label.value
    nb.status = "failed"
    widget.notebook_finished(rec, nb)
    assert (bar.value, bar.bar_style) == (18, "danger")
    rec.status, rec.duration_s = "failed", 3.0
    widget.run_finished(rec)
    assert "failed in 3.0s" in widget.title.value
